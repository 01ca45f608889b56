"""Actions through the API: the one action layer the CLI uses (corral.actions), roles, one
audit event per action, every malformed body refused with the field named, and every CLI
command accounted for (an API path, or a stated reason why not)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import click
import httpx
import pytest

from corral.agent.snapshot import AgentSnapshot
from corral.api import Reader, Source, make_app
from corral.api.actions import ACTIONS
from corral.auth import AuditEvent, Role
from corral.auth.tokens import create
from corral.cli.main import cli
from corral.records import MaintenanceRecord
from corral.spec import load_spec_text
from corral.store import Keys
from corral.store.memory import MemoryStore

SPEC_TEXT = """
cluster: acts
nodes: {n1: {address: 198.18.0.11}}
resources:
  web: {process: "sleep 1000"}
"""
SPEC = load_spec_text(SPEC_TEXT)
KEYS = Keys("acts")

# The CLI's commands and the API path that does the same; None: not an API concern, and why.
CLI_TO_API: dict[str, str | None] = {
    "maintenance": "/v1/actions/maintenance",
    "standby": "/v1/actions/standby",
    "ban": "/v1/actions/ban",
    "move": "/v1/actions/move",
    "cleanup": "/v1/actions/cleanup",
    "resource restart": "/v1/actions/restart",
    "spec push": "/v1/actions/spec-push",
    "status": "/v1/status",
    "events": "/v1/events",
    "members": "/v1/members",
    "explain": "/v1/explain/{resource}",
    "agent": None,  # it is the agent that serves the API
    "validate": None,  # offline: a file on the operator's machine
    "schema": None,  # offline: the spec's JSON Schema, the same on every machine
    "simulate": "/v1/simulate",  # the CLI's on a state file, the API's on the live state
    "check": None,  # runs one health check from where it is typed
    "state dump": None,  # writes a file for simulate; /v1/status has the same records
    "demo": None, "demo-down": None,  # the lab, on the operator's machine
    "init": None,  # writes a spec file on the host before any agent runs
    "install-unit": None,  # writes the host's systemd unit
    "report": None,  # collects logs from the hosts (journald, files), not only the store
}  # fmt: skip
OFFLINE_GROUPS = ("lab", "ca", "keys", "auth", "tokens", "audit")  # admin of the store itself


def leaves(group: click.Group, prefix: str = "") -> list[str]:
    out = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            out += leaves(command, f"{prefix}{name} ")
        else:
            out.append(prefix + name)
    return out


def test_every_cli_command_has_an_api_path_or_a_reason() -> None:
    commands = [c for c in leaves(cli) if c.split()[0] not in OFFLINE_GROUPS]
    unaccounted = sorted(set(commands) - set(CLI_TO_API))
    assert not unaccounted, f"new CLI commands: give each an API path or a reason: {unaccounted}"
    app = make_app(Source(lambda: None), Reader(lambda: None, MemoryStore))
    served = {getattr(r, "path", "") for r in app.routes}
    paths = {p for p in CLI_TO_API.values() if p is not None}
    actions = {p.rsplit("/", 1)[1] for p in paths if p.startswith("/v1/actions/")}
    assert actions == set(ACTIONS)
    assert {p for p in paths if not p.startswith("/v1/actions/")} <= served


class Api:
    """The API in process over an in-memory store, with a token per role."""

    def __init__(self) -> None:
        self.store = MemoryStore()
        now = time.monotonic()
        snap = AgentSnapshot("acts", "n1", now, time.time(), 3.0, spec=SPEC, lease=1)
        self.app = make_app(Source(lambda: snap), Reader(lambda: snap, lambda: self.store))
        self.tokens: dict[Role, str] = {}

    async def setup(self) -> None:
        for role in ("viewer", "operator", "admin"):
            self.tokens[role], _ = await create(self.store, KEYS, role[:3], role, by="r", now=0)

    async def post(self, name: str, body: Any, role: Role | None = "operator") -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
            if isinstance(body, bytes):
                return await client.post(f"/v1/actions/{name}", content=body, headers=headers)
            return await client.post(f"/v1/actions/{name}", json=body, headers=headers)

    async def audits(self) -> list[AuditEvent]:
        kvs = (await self.store.range(KEYS.event_prefix())).kvs
        return [e for kv in kvs if (e := AuditEvent.parse(kv.value)) is not None]


@pytest.fixture
async def api() -> Api:
    a = Api()
    await a.setup()
    return a


async def test_an_operator_sets_maintenance_and_it_is_audited(api: Api) -> None:
    r = await api.post("maintenance", {"state": "on", "node": "n1"})
    assert r.status_code == 200 and r.json()["done"] == "maintenance on: n1"
    kv = await api.store.get(KEYS.admin("maintenance"))
    record = MaintenanceRecord.parse(kv.value) if kv is not None else None
    assert record is not None and record.nodes == ("n1",)
    assert record.set_by[0][:2] == ("node:n1", "ope")  # who set it (and when)
    (audit,) = await api.audits()
    assert (audit.who, audit.role, audit.via, audit.result) == ("ope", "operator", "token", "ok")
    r = await api.post("cleanup", {"instance": "web@n1"})
    assert r.status_code == 200 and len(await api.audits()) == 2


async def test_roles_are_enforced(api: Api) -> None:
    r = await api.post("standby", {"state": "on", "node": "n1"}, role="viewer")
    assert r.status_code == 403 and "needs operator" in r.json()["reason"]
    r = await api.post("spec-push", {"spec_text": SPEC_TEXT})
    assert r.status_code == 403 and "needs admin" in r.json()["reason"]
    assert (await api.post("spec-push", {"spec_text": SPEC_TEXT}, role="admin")).status_code == 200
    r = await api.post("ban", {"instance": "web@n1"}, role=None)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    seen = [(a.who, a.action, a.result) for a in await api.audits()]
    assert seen == [  # the refusals are audited (not the 401: anyone could fill the log)
        ("vie", "standby", "refused"), ("ope", "spec push: api", "refused"),
        ("adm", "spec push: api", "ok"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "body", "field", "said"),
    [
        ("maintenance", b"{not json", "", "not JSON"),
        ("maintenance", [1, 2], "", "JSON object"),
        ("maintenance", {"state": "on", "node": "n1", "force": True}, "force", "unknown argument"),
        ("maintenance", {"node": "n1"}, "state", "missing"),
        ("maintenance", {"state": "maybe", "node": "n1"}, "state", "on or off"),
        ("maintenance", {"state": "on", "node": "n9"}, "node", "unknown node 'n9'"),
        ("maintenance", {"state": "on", "node": "n1", "cluster": True}, "", "exactly one"),
        ("maintenance", {"state": "on", "cluster": "yes"}, "cluster", "must be a bool"),
        ("ban", {"instance": "web"}, "instance", "write RESOURCE@NODE"),
        ("move", {"resource": "db", "node": "n1"}, "resource", "unknown resource 'db'"),
        ("restart", {"name": "web", "timeout": -1}, "timeout", "timeout must be"),
        ("restart", {"name": "web", "rolling": 1}, "rolling", "must be a bool"),
        ("spec-push", {"spec_text": "cluster: other\nnodes: {x: {address: 198.18.0.9}}"},
         "spec", "not 'acts'"),
        ("spec-push", {"spec_text": "cluster: acts\nnodes: ["}, "spec", "YAML syntax"),
    ],
)  # fmt: skip
async def test_malformed_bodies_name_the_field(
    api: Api, name: str, body: Any, field: str, said: str
) -> None:
    r = await api.post(name, body, role="admin")
    assert r.status_code == 400, r.text
    assert said in r.json()["reason"] and r.json()["field"] == field
    assert await api.audits() == []  # nothing ran


async def test_unknown_actions_failures_and_wrong_methods(api: Api) -> None:
    r = await api.post("reboot", {})
    assert r.status_code == 404 and "no action 'reboot'" in r.json()["reason"]
    r = await api.post("restart", {"name": "web"})
    assert r.status_code == 409 and "not assigned anywhere" in r.json()["reason"]
    (audit,) = await api.audits()
    assert audit.result == "failed"
    transport = httpx.ASGITransport(app=api.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
        assert (await client.get("/v1/actions/ban")).status_code == 405


def test_a_huge_body_is_refused() -> None:
    api = Api()
    asyncio.run(api.setup())
    r = asyncio.run(api.post("maintenance", b"[" * (2 << 20), role="admin"))
    assert r.status_code == 400 and "larger than" in r.json()["reason"]
