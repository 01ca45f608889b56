"""Actions through the API of a cluster whose etcd requires certificates and enforces corral's
roles (the agents hold the CA bundle and turn etcd's auth on): the API writes the operators'
records as ``api:<node>`` (etcd's operator role), never as the agent (refused for ``admin/``)
nor as root; the API itself serves HTTPS with the node's certificate (``api.tls``). An
operator's token puts a resource in maintenance, a viewer's is refused (403),
a call without a token is refused (401), an admin's spec push is refused by etcd (the API's
identity is an operator's), and every authenticated call is one audit event."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from corral.auth import AuditEvent, Role, tokens
from corral.lab.loopback import NODES, Cluster
from corral.pki import read_cert
from corral.records import MaintenanceRecord
from corral.store import EtcdStore, Keys
from tests.agent.test_cluster import until
from tests.agent.test_cluster_tls import logs

pytestmark = pytest.mark.etcd
KEYS = Keys("agenttest")


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[Cluster]:
    c = Cluster(tmp_path, tls=True)
    plain = f"api: {{port: {c.http_port}}}"
    c.spec_file.write_text(c.spec_file.read_text().replace(plain, plain[:-1] + ", tls: true}"))
    try:
        await c.start()
        await until(lambda: len(c.serving(c.api_port)) == 1, "api on 1 node")
        await until(lambda: "auth enabled" in logs(c), "an agent enables etcd auth")
        yield c
    finally:
        await c.stop()


def root_store(c: Cluster) -> EtcdStore:
    assert c.client_tls is not None  # CN root: the lab's own identity
    return EtcdStore(c.etcd.endpoints, tls=c.client_tls)


async def maintained(store: EtcdStore) -> tuple[str, ...]:
    kv = await store.get(KEYS.admin("maintenance"))
    record = MaintenanceRecord.parse(kv.value) if kv is not None else None
    assert record is not None
    return record.resources


def health(url: str) -> httpx.Response:
    """A GET with the system's CAs (not the cluster's)."""
    return httpx.get(url, timeout=5)


def post(c: Cluster, name: str, body: object, token: str | None) -> httpx.Response:
    """Over HTTPS (``api.tls``), the agent's certificate checked against the cluster's CA."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = f"https://{NODES['n2']}:{c.http_port}/v1/actions/{name}"
    ca = ssl.create_default_context(cafile=str(c.base / "ca" / "ca.crt"))
    return httpx.post(url, json=body, headers=headers, timeout=30, verify=ca)


async def test_api_actions_under_etcd_rbac(secured: Cluster) -> None:
    c = secured
    api_cert = read_cert(c.state_dir("n2") / "tls" / "api.crt")
    assert "CN=api:n2" in api_cert.subject.rfc4514_string()
    with pytest.raises(httpx.HTTPError):  # plain http to the HTTPS API: no answer
        health(f"http://{NODES['n2']}:{c.http_port}/v1/health")
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):  # not our CA
        health(f"https://{NODES['n2']}:{c.http_port}/v1/health")
    store = root_store(c)
    try:
        made: dict[Role, str] = {}
        people: tuple[tuple[str, Role], ...] = (("olga", "operator"), ("vic", "viewer"),
                                                ("ada", "admin"))  # fmt: skip
        for name, role in people:
            made[role], _ = await tokens.create(store, KEYS, name, role, by="root", now=0.0)
        on = {"state": "on", "resource": "web"}
        r = post(c, "maintenance", on, made["operator"])
        assert r.status_code == 200, r.text
        assert await maintained(store) == ("web",)
        r = post(c, "maintenance", {"state": "off", "resource": "web"}, made["viewer"])
        assert r.status_code == 403 and "needs operator" in r.json()["reason"], r.text
        r = post(c, "maintenance", {"state": "off", "resource": "web"}, None)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", r.text
        spec_text = c.spec_file.read_text()
        r = post(c, "spec-push", {"spec_text": spec_text}, made["admin"])
        assert r.status_code == 403 and "refused by the store" in r.json()["reason"], r.text
        assert await maintained(store) == ("web",)  # the refusals changed nothing
        events = (await store.range(KEYS.event_prefix())).kvs
    finally:
        await store.close()
    found = [e for kv in events if (e := AuditEvent.parse(kv.value)) and e.kind == "audit"]
    seen = sorted((e.who, e.role, e.via, e.action, e.result) for e in found)
    assert seen == [
        ("ada", "admin", "token", "spec push: api", "refused"),
        ("olga", "operator", "token", "maintenance on: web", "ok"),
        ("vic", "viewer", "token", "maintenance", "refused"),
    ], seen
    assert "permission denied" not in logs(c).lower()  # the agents' own writes all pass
