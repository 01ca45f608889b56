"""Actions through a live agent's API (real etcd, real agents): the CLI and the API edit the
same records through the same layer, a rolling restart restarts every instance, each action is
one audit event."""

from __future__ import annotations

import httpx
import pytest

from corral.lab.loopback import NODES, Cluster
from corral.records import MaintenanceRecord
from corral.store import Keys
from tests.agent.test_cluster import corral
from tests.api.conftest import make_token

pytestmark = pytest.mark.etcd
KEYS = Keys("agenttest")


def post(c: Cluster, node: str, name: str, body: object, token: str) -> httpx.Response:
    url = f"http://{NODES[node]}:{c.http_port}/v1/actions/{name}"
    return httpx.post(url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60)


async def test_the_api_and_the_cli_act_on_the_same_records(served: Cluster) -> None:
    ops = await make_token(served, "olga", "operator")
    r = post(served, "n3", "maintenance", {"state": "on", "instance": "web@n1"}, ops)
    assert r.status_code == 200, r.text
    store = served.etcd.store()
    try:
        kv = await store.get(KEYS.admin("maintenance"))
        assert kv is not None
        assert MaintenanceRecord.parse(kv.value) == MaintenanceRecord(instances=("web@n1",))
        done = corral(served, "maintenance", "off", "--instance", "web@n1")
        assert done.returncode == 0, done.stderr
        kv = await store.get(KEYS.admin("maintenance"))
        assert kv is not None and MaintenanceRecord.parse(kv.value) == MaintenanceRecord()
        pids = {n: served.service_pid(n, "web") for n in NODES}
        r = post(served, "n2", "restart", {"name": "web", "rolling": True, "timeout": 30}, ops)
        assert r.status_code == 200 and r.json()["result"] == ["n1", "n2", "n3"], r.text
        assert all(served.service_pid(n, "web") not in (None, pids[n]) for n in NODES)
        events = (await store.range(KEYS.event_prefix())).kvs
        audits = [kv.value.decode() for kv in events if b'"kind":"audit"' in kv.value]
        assert sum("olga (operator, token)" in a for a in audits) == 2
        assert sum("maintenance off: web@n1" in a for a in audits) == 1  # the CLI's
    finally:
        await store.close()
