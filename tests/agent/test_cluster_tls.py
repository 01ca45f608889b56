"""The agents of tests/agent/test_cluster.py with etcd requiring client certificates: each
agent issues its node certificate from the cluster's CA bundle and, holding the CA, makes etcd
enforce corral's roles (etcd auth on); everything works as over plain http: registration, the
lease guard's renewals during a restart (over the gateway, TLS), failover; and people get what
their role allows: an operator sets maintenance but may not push a spec (refused, audited), a
viewer reads status and writes nothing, a certificate of the CA without an etcd user and a
client without a certificate are refused."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from corral.auth.audit import AuditEvent
from corral.cli.main import cli
from corral.lab.loopback import NODES, Cluster
from corral.pki import read_cert
from corral.spec.profiles import profile_timing
from corral.store import EtcdStore, Keys
from corral.store.tls import ENV
from tests.agent.test_cluster import until, watch_the_api_leave

pytestmark = pytest.mark.etcd
LAN_TTL = profile_timing("lan").lease_ttl


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    c = Cluster(tmp_path, tls=True)
    try:
        await c.start()
        await until(
            lambda: len(c.serving(c.web_port)) == 3 and len(c.serving(c.api_port)) == 1,
            "web on 3 nodes and api on 1",
        )
        yield c
    finally:
        await c.stop()


def status(c: Cluster, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "corral.cli.main", "status", "--json", "--spec", str(c.spec_file),
            "--etcd", c.etcd_arg]  # fmt: skip
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    return subprocess.run(argv, capture_output=True, text=True, timeout=30,
                          env={**clean, **env})  # fmt: skip


def logs(c: Cluster) -> str:
    return "".join((c.base / f"agent-{n}.log").read_text(errors="replace") for n in NODES)


def issue(c: Cluster, name: str, role: str) -> tuple[str, ...]:
    """``corral ca issue NAME --role ROLE``: the person's (ca, cert, key)."""
    out = c.base / "people" / name
    argv = ["ca", "issue", name, "--role", role, "--out", str(out), "--bundle", str(c.base / "ca")]
    issued = CliRunner().invoke(cli, argv)
    assert issued.exit_code == 0, issued.output
    return (str(out / "ca.crt"), str(out / f"{name}.crt"), str(out / f"{name}.key"))


async def run_as(c: Cluster, files: tuple[str, ...], *argv: str) -> Result:
    """``corral ARGV --etcd ...`` presenting ``files`` (``--spec`` too unless ARGV is a push)."""
    env: dict[str, str | None] = dict(zip(ENV, files, strict=True))
    args = [*argv, *(() if argv[0] == "spec" else ("--spec", str(c.spec_file)))]
    env["CORRAL_ETCD"] = None
    return await asyncio.to_thread(CliRunner().invoke, cli, [*args, "--etcd", c.etcd_arg], env=env)


async def audits(c: Cluster) -> set[tuple[str, str, str, str]]:
    """(who, role, action up to its ':', result) of every audit event."""
    assert c.client_tls is not None
    store = EtcdStore(c.etcd.endpoints, tls=c.client_tls)
    try:
        kvs = (await store.range(Keys("agenttest").event_prefix())).kvs
    finally:
        await store.close()
    found = [e for kv in kvs if (e := AuditEvent.parse(kv.value)) and e.kind == "audit"]
    return {(e.who, e.role, e.action.split(":")[0], e.result) for e in found}


async def people_get_what_their_role_allows(c: Cluster) -> None:
    """An operator and a viewer, each certificate from ``corral ca issue`` and each role given
    by root (``corral auth user``); a certificate of the CA for a name with no user refused."""
    assert c.client_tls is not None
    root = c.client_tls.as_tuple()
    alice, vic = issue(c, "alice", "operator"), issue(c, "vic", "viewer")
    for name, role in (("alice", "operator"), ("vic", "viewer")):
        given = await run_as(c, root, "auth", "user", name, "--role", role)
        assert given.exit_code == 0, given.output
    on = await run_as(c, alice, "maintenance", "on", "--resource", "web")
    assert on.exit_code == 0, on.output
    push = await run_as(c, alice, "spec", "push", str(c.spec_file))
    assert push.exit_code != 0 and "permission denied" in push.output, push.output
    for reads in (("events", "-n", "3"), ("state", "dump"), ("auth", "whoami")):
        read = await run_as(c, alice, *reads)
        assert read.exit_code == 0, (reads, read.output)
    assert "alice (operator, cert)" in read.output
    shown = await run_as(c, vic, "status", "--json")
    assert shown.exit_code == 0 and '"cluster": "agenttest"' in shown.output, shown.output
    off = await run_as(c, vic, "maintenance", "off", "--resource", "web")
    assert off.exit_code != 0 and "permission denied" in off.output, off.output
    stranger = await run_as(c, issue(c, "mallory", "admin"), "status")
    assert stranger.exit_code != 0 and "permission denied" in stranger.output, stranger.output
    seen = await audits(c)
    assert ("alice", "operator", "spec push", "refused") in seen, seen
    assert ("alice", "operator", "maintenance on", "ok") in seen, seen
    assert ("root", "admin", "auth user alice", "ok") in seen, seen


async def test_a_tls_cluster_with_auth_on_hands_over_fails_over_and_refuses_strangers(
    cluster: Cluster, tmp_path: Path
) -> None:
    node_cert = read_cert(cluster.state_dir("n1") / "tls" / "node.crt")
    assert "CN=node:n1" in node_cert.subject.rfc4514_string()
    assert cluster.etcd.endpoints[0].startswith("https://")
    await until(lambda: "auth enabled" in logs(cluster), "an agent enables etcd auth")
    refused = status(cluster, {"CORRAL_STATE_DIR": str(tmp_path / "nowhere")})
    assert refused.returncode != 0 and "no node identity" in refused.stderr
    # a planned restart: the guard renews the lease over TLS, nothing moves; meanwhile people
    (holder,) = cluster.serving(cluster.api_port)
    cluster.stop_agent(holder)
    await asyncio.gather(asyncio.sleep(LAN_TTL + 1), people_get_what_their_role_allows(cluster))
    assert holder in cluster.serving(cluster.api_port)
    cluster.start_agent(holder)
    log = cluster.base / f"agent-{holder}.log"
    await until(lambda: "took over lease" in log.read_text(), "the new agent takes the lease")
    guard_log = (cluster.state_dir(holder) / "guard.log").read_text()
    assert "renewing lease" in guard_log and "lease deadline passed" not in guard_log
    # a crash: the api fails over, never on two nodes
    cluster.kill_agent(holder)
    await watch_the_api_leave(cluster, holder)
    assert "permission denied" not in logs(cluster).lower()  # the agent role is enough
