"""Every change made through the CLI leaves exactly one audit event (who, role, what,
result), a refused one says refused; ``corral auth apply`` on an open etcd secures it."""

from __future__ import annotations

import asyncio
import getpass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from corral.auth.audit import AuditEvent
from corral.cli.main import cli
from corral.store import EtcdStore, Keys
from corral.store.lab import etcd_lab

from .conftest import KEYS, Secured

pytestmark = pytest.mark.etcd


def spec_file(tmp_path: Path, endpoint: str) -> str:
    path = tmp_path / "spec.yaml"
    path.write_text(
        f"cluster: c1\nstore: {{etcd: {{endpoints: ['{endpoint}']}}}}\n"
        "nodes:\n  n1: {address: 127.0.0.1}\n  n2: {address: 127.0.0.2}\n"
        "resources:\n  web:\n    process: /bin/web\n"
    )
    return str(path)


async def run(argv: list[str], user: str | None, password: str = "pw") -> Result:
    env = {"CORRAL_ETCD_USER": user, "CORRAL_ETCD_PASSWORD": password if user else None}
    env["CORRAL_ETCD"] = None
    return await asyncio.to_thread(CliRunner().invoke, cli, argv, input="pw\n", env=env)


async def audit_events(store: EtcdStore) -> list[AuditEvent]:
    kvs = (await store.range(KEYS.event_prefix())).kvs
    found = [AuditEvent.parse(kv.value) for kv in kvs]
    return [e for e in found if e is not None and e.kind == "audit"]


async def test_each_change_command_is_audited_once(secured: Secured, tmp_path: Path) -> None:
    spec = spec_file(tmp_path, secured.lab.endpoints[0])
    root = secured.store("root", "rootpw")
    cases: list[tuple[list[str], str, str, str]] = [  # argv, user, action, result
        (["maintenance", "on", "--node", "n1"], "alice", "maintenance on: n1", "ok"),
        (["standby", "on", "n2"], "alice", "standby on: n2", "ok"),
        (["ban", "web@n1"], "alice", "ban set: web@n1", "ok"),
        (["move", "web", "n2"], "alice", "move web -> n2", "ok"),
        (["cleanup", "web@n1"], "alice", "cleanup: web@n1", "ok"),
        (["resource", "restart", "web"], "alice", "restart: web", "failed"),  # not assigned
        (["spec", "push", spec], "alice", f"spec push: {spec}", "refused"),
        (["spec", "push", spec], "ada", f"spec push: {spec}", "ok"),
        (["tokens", "create", "ci", "--role", "viewer"], "ada", "tokens create: ci (viewer)", "ok"),
        (
            ["tokens", "create", "ci", "--role", "admin"],
            "alice",
            "tokens create: ci (admin)",
            "refused",
        ),
        (["auth", "user", "bob", "--role", "viewer"], "ada", "auth user bob: viewer", "refused"),
        (
            ["auth", "user", "bob", "--role", "viewer", "--password-stdin"],
            "root",
            "auth user bob: viewer",
            "ok",
        ),
        (["maintenance", "off", "--node", "n1"], "bob", "maintenance off: n1", "refused"),
        (["auth", "apply", "--force"], "root", "auth apply", "ok"),
    ]
    try:
        for argv, user, action, result in cases:
            before = len(await audit_events(root))
            args = argv if argv[:2] == ["spec", "push"] else [*argv, "--spec", spec]
            out = await run(args, user, "rootpw" if user == "root" else "pw")
            assert (out.exit_code == 0) == (result == "ok"), (argv, out.output)
            if result == "refused":
                assert "refused: etcd" in out.output and "permission denied" in out.output
            events = (await audit_events(root))[before:]
            if user == "bob":  # a viewer writes nothing, not even its audit: said on stderr
                assert "the audit event was not recorded" in out.output and not events
                continue
            assert len(events) == 1, (argv, events)
            event = events[0]
            role = {"alice": "operator", "ada": "admin", "root": "admin"}[user]
            assert (event.who, event.role, event.via) == (user, role, "password"), argv
            assert (event.action, event.result) == (action, result), argv
            assert event.reason.startswith(f"{user} ({role}, password): {action}: {result}")
    finally:
        await root.close()


async def test_viewers_read_status_and_events_without_secrets(
    secured: Secured, tmp_path: Path
) -> None:
    spec = spec_file(tmp_path, secured.lab.endpoints[0])
    agent = secured.store("node:n1")
    await agent.put(KEYS.gossip_key, b"secret")
    await agent.close()
    assert (
        await run(["maintenance", "on", "--node", "n1", "--spec", spec], "alice")
    ).exit_code == 0
    for argv in (["status", "--json"], ["events"], ["state", "dump"], ["members"]):
        out = await run([*argv, "--spec", spec], "vic")
        assert out.exit_code == 0, (argv, out.output)
        assert "secret" not in out.output
    events = (await run(["events", "--spec", spec], "vic")).output
    assert "alice (operator, password): maintenance on: n1: ok" in events
    who = await run(["auth", "whoami", "--spec", spec], "vic")
    assert who.output.strip() == "vic (viewer, password)"


async def test_tokens_list_and_revoke(secured: Secured, tmp_path: Path) -> None:
    spec = spec_file(tmp_path, secured.lab.endpoints[0])
    made = await run(["tokens", "create", "ci", "--role", "viewer", "--spec", spec], "ada")
    token_id = made.output.split()[1]
    listed = await run(["tokens", "list", "--spec", spec], "ada")
    assert token_id in listed.output and "corral_" not in listed.output
    assert "refused" in (await run(["tokens", "list", "--spec", spec], "alice")).output
    root = secured.store("root", "rootpw")
    try:
        before = len(await audit_events(root))
        out = await run(["tokens", "revoke", token_id, "--spec", spec], "ada")
        assert out.exit_code == 0, out.output
        again = await run(["tokens", "revoke", token_id, "--spec", spec], "ada")
        assert again.exit_code == 1 and f"no token {token_id}" in again.output
        results = [(e.action, e.result) for e in (await audit_events(root))[before:]]
        assert results == [(f"tokens revoke: {token_id}", r) for r in ("ok", "failed")]
    finally:
        await root.close()


async def test_auth_apply_secures_an_open_etcd_and_says_who(tmp_path: Path) -> None:
    async with etcd_lab(tmp_path / "etcd", 1) as lab:
        spec = spec_file(tmp_path, lab.endpoints[0])
        out = await asyncio.to_thread(
            CliRunner().invoke,
            cli,
            ["auth", "apply", "--spec", spec],
            env={"CORRAL_ETCD_ROOT_PASSWORD": "rootpw", "CORRAL_ETCD_USER": None},
        )
        # a plain-http spec: the agents could not authenticate, so nothing is enabled
        assert out.exit_code == 1 and "the spec's store is plain http" in out.output
        probe = EtcdStore(lab.endpoints, timeout=3.0)
        try:
            assert await probe.get(Keys("c1").spec) is None  # auth off: anyone reads, nothing
        finally:
            await probe.close()
        out = await asyncio.to_thread(
            CliRunner().invoke,
            cli,
            ["auth", "apply", "--force", "--spec", spec],
            env={"CORRAL_ETCD_ROOT_PASSWORD": "rootpw", "CORRAL_ETCD_USER": None},
        )
        assert out.exit_code == 0, out.output
        assert "user node:n1: role corral:c1:agent granted" in out.output
        assert out.output.splitlines()[-2:] == ["auth enabled", out.output.splitlines()[-1]]
        anonymous = EtcdStore(lab.endpoints, timeout=3.0)
        root = EtcdStore(lab.endpoints, timeout=3.0, username="root", password="rootpw")
        try:
            with pytest.raises(Exception, match="user name is empty"):
                await anonymous.get(Keys("c1").spec)
            events = await audit_events(root)
            assert [(e.who, e.role, e.via, e.result) for e in events] == [
                (f"local:{getpass.getuser()}", "", "unauthenticated", "ok")
            ]
            assert events[0].reason.startswith(f"local:{getpass.getuser()} (unauthenticated)")
            assert (await root.get(Keys("c1").spec)) is not None  # seeded from the spec file
        finally:
            await anonymous.close()
            await root.close()
