"""Every CLI command that talks to a cluster, driven against live agents (real etcd, real
agents on loopback, one cluster for the module), with its effect read back through an agent's
API: the CLI and the API act on the same records through one action layer; every JSON view of
the CLI carries its ``schema``; maintenance shows on every row it covers, with who set it and
when, in the CLI (text and JSON) and the API (status, nodes, resources)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from corral.cli.main import cli
from corral.lab.loopback import NODES, Cluster
from corral.records import BansRecord, MaintenanceRecord, MovesRecord, StandbyRecord
from corral.records.view import SCHEMAS
from corral.store import Keys
from tests.agent.test_cluster import until
from tests.api.conftest import SHARED, make_token
from tests.api.live import get, health, holders
from tests.api.test_actions import CLI_TO_API

pytestmark = [pytest.mark.etcd, SHARED]
KEYS = Keys("agenttest")
NO_SPEC = ("spec push",)  # takes the spec file as its argument


async def run(c: Cluster, *argv: str) -> Result:
    """``corral ARGV --spec ... --etcd ...`` in process (a thread: the CLI runs its own loop)."""
    args = [*argv, *(() if argv[:2] == ("spec", "push") else ("--spec", str(c.spec_file)))]
    done = await asyncio.to_thread(CliRunner().invoke, cli, [*args, "--etcd", c.etcd_arg])
    assert done.exit_code == 0, (argv, done.output, done.exception)
    return done


async def offline(*argv: str) -> Result:
    done = await asyncio.to_thread(CliRunner().invoke, cli, list(argv))
    assert done.exit_code == 0, (argv, done.output)
    return done


async def record(c: Cluster, name: str) -> bytes:
    store = c.etcd.store()
    try:
        kv = await store.get(KEYS.admin(name))
    finally:
        await store.close()
    return kv.value if kv is not None else b"{}"


def steps(plan: dict[str, Any]) -> list[tuple[str, str, str]]:
    return sorted((a["kind"], a["resource"], a["node"]) for a in plan["actions"])


def level(mark: dict[str, Any] | None) -> str | None:
    return mark["level"] if mark else None


def marks(view: dict[str, Any]) -> dict[str, Any]:
    """Where a status view shows maintenance: nodes, resources, running rows."""
    rows = {f"{r}@{i['node']}": i["maintenance"] for r, res in view["resources"].items()
            for i in res["running"]}  # fmt: skip
    return {
        "nodes": {n: m and m["level"] for n, m in view["node_maintenance"].items()},
        "resources": {r: level(res["maintenance"]) for r, res in view["resources"].items()},
        "rows": {k: m and m["level"] for k, m in rows.items()},
        "by": {m["by"] for m in rows.values() if m},
    }


async def test_maintenance_shows_everywhere_and_every_json_view_has_its_schema(
    live: Cluster, tmp_path: Path
) -> None:
    viewer = await make_token(live, "vic", "viewer")
    await run(live, "maintenance", "on", "--node", "n1")
    await run(live, "maintenance", "on", "--instance", "web@n2")
    shown = json.loads((await run(live, "status", "--json")).output)
    assert shown["schema"] == SCHEMAS["status"]
    seen = marks(shown)
    assert seen["nodes"] == {"n1": "node", "n2": None, "n3": None}
    assert seen["rows"]["web@n1"] == "node" and seen["rows"]["web@n2"] == "instance"
    assert seen["rows"]["web@n3"] is None and seen["resources"]["web"] is None
    assert len(seen["by"]) == 1 and next(iter(seen["by"])).startswith("local:")
    section = shown["maintenance"]
    assert set(section["nodes"]) == {"n1"} and set(section["instances"]) == {"web@n2"}
    assert section["nodes"]["n1"]["at"] > 0
    text = (await run(live, "status")).output
    assert "maintenance node n1 (local:" in text and "maintenance instance web@n2" in text
    assert "(maintenance: instance)" in text
    api = get(live, "n3", "/v1/status", viewer).json()
    assert marks(api) == seen and api["schema"] == SCHEMAS["status"]
    nodes = get(live, "n2", "/v1/nodes", viewer).json()
    assert nodes["maintenance"]["n1"]["level"] == "node" and nodes["maintenance"]["n2"] is None
    web = get(live, "n1", "/v1/resources", viewer).json()["resources"]["web"]
    assert {i["node"]: i["maintenance"] and i["maintenance"]["level"] for i in web["running"]} == {
        "n1": "node", "n2": "instance", "n3": None,
    }  # fmt: skip
    await run(live, "maintenance", "on", "--cluster")
    after = marks(json.loads((await run(live, "status", "--json")).output))
    assert after["resources"]["web"] == "cluster" and after["rows"]["web@n3"] == "cluster"
    for argv in (("--cluster",), ("--node", "n1"), ("--instance", "web@n2")):
        await run(live, "maintenance", "off", *argv)
    assert MaintenanceRecord.parse(await record(live, "maintenance")) == MaintenanceRecord()
    for line in (await run(live, "events", "-n", "5", "--json")).output.splitlines():
        assert json.loads(line)["schema"] == SCHEMAS["event"]
    members = json.loads((await run(live, "members", "--json")).output)
    assert members["schema"] == SCHEMAS["members"] and set(members["members"]) <= set(NODES)
    state = tmp_path / "state.yaml"
    await run(live, "state", "dump", "-o", str(state))
    spec = str(live.spec_file)
    views: list[tuple[list[str], str]] = [
        (["explain", spec, "web", "--state", str(state), "--json"], "explain"),
        (["simulate", spec, "--state", str(state), "--fail-node", "n1", "--json"], "simulate"),
        (["validate", spec, "--json"], "validate"),
    ]
    for typed, schema in views:
        assert json.loads((await offline(*typed)).output)["schema"] == SCHEMAS[schema]
    # the same what-if on the live state, through the API: the same plan
    (holder,) = holders(live)
    typed = ["simulate", spec, "--state", str(state), "--standby", holder, "--json"]
    offline_plan = json.loads((await offline(*typed)).output)
    live_plan = get(live, "n2", f"/v1/simulate?standby={holder}", viewer).json()
    assert live_plan["schema"] == SCHEMAS["simulate"]
    assert steps(live_plan) == steps(offline_plan)
    assert any(r == "api" for _, r, _ in steps(live_plan)), live_plan  # api drained away
    r = get(live, "n2", "/v1/simulate?fail_node=n1&maintenance=node:n9", viewer)
    assert r.status_code == 400 and r.json()["reason"].startswith("maintenance: "), r.text


async def test_every_cli_command_acts_on_a_live_agent(live: Cluster) -> None:
    """Each command of CLI_TO_API that has an API path, typed against the live cluster; its
    record read back, the audit of each change read through the API."""
    token = await make_token(live, "olga", "operator")
    done: set[str] = set()

    async def cli_(name: str, *argv: str) -> Result:
        done.add(name)
        return await run(live, *name.split(), *argv)

    await cli_("standby", "on", "n3")
    assert StandbyRecord.parse(await record(live, "standby")) == StandbyRecord(("n3",))
    await cli_("standby", "off", "n3")
    await cli_("ban", "web@n3")
    assert BansRecord.parse(await record(live, "bans")) == BansRecord(("web@n3",))
    await cli_("ban", "web@n3", "--clear")
    await cli_("move", "api", "n2")
    assert MovesRecord.parse(await record(live, "moves")) == MovesRecord({"api": "n2"})
    await cli_("move", "api", "--clear")
    await cli_("cleanup", "web@n1")
    said = (await cli_("resource restart", "web", "--timeout", "30")).output
    assert "web" in said
    await cli_("spec push", str(live.spec_file))
    await cli_("maintenance", "on", "--resource", "web")
    await cli_("maintenance", "off", "--resource", "web")
    for name, argv in (("status", ()), ("events", ("-n", "3")), ("members", ())):
        await cli_(name, *argv)
    done |= {"explain", "simulate"}  # offline on a state file: the other test
    assert done == {cmd for cmd, path in CLI_TO_API.items() if path is not None}
    events = get(live, "n1", "/v1/events?last=100", token).json()["events"]
    audits = [e["reason"] for e in events if e["kind"] == "audit"]
    changes = ("standby", "ban", "move", "cleanup", "restart", "spec push", "maintenance")
    for change in changes:
        assert any(f": {change}" in a for a in audits), (change, audits)
    for node in NODES:
        assert health(live, node, "/v1/health/web")[0] in (200, 503)  # the agents answer


async def test_the_api_and_the_cli_act_on_the_same_records(live: Cluster) -> None:
    ops = await make_token(live, "otto", "operator")
    r = post(live, "n3", "maintenance", {"state": "on", "instance": "web@n1"}, ops)
    assert r.status_code == 200, r.text
    kv = MaintenanceRecord.parse(await record(live, "maintenance"))
    assert kv is not None and kv.instances == ("web@n1",)
    by = kv.author("instance:web@n1")
    assert by is not None and by[0] == "otto"  # who set it, through the API
    await run(live, "maintenance", "off", "--instance", "web@n1")
    assert MaintenanceRecord.parse(await record(live, "maintenance")) == MaintenanceRecord()
    await until(lambda: all(health(live, n, "/v1/health/web")[0] == 200 for n in NODES), "web on 3")
    pids = {n: live.service_pid(n, "web") for n in NODES}
    r = post(live, "n2", "restart", {"name": "web", "rolling": True, "timeout": 30}, ops)
    assert r.status_code == 200 and r.json()["result"] == ["n1", "n2", "n3"], r.text
    assert all(live.service_pid(n, "web") not in (None, pids[n]) for n in NODES)
    events = get(live, "n1", "/v1/events?last=200", ops).json()["events"]
    audits = [e["reason"] for e in events if e["kind"] == "audit"]
    assert sum("otto (operator, token)" in a for a in audits) == 2
    assert sum("maintenance off: web@n1" in a for a in audits) == 1  # the CLI's


def post(c: Cluster, node: str, name: str, body: object, token: str) -> httpx.Response:
    url = f"http://{NODES[node]}:{c.http_port}/v1/actions/{name}"
    return httpx.post(url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60)
