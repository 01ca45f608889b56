"""The agents of tests/agent/test_cluster.py with etcd requiring client certificates: each
agent issues its node certificate from the cluster's CA bundle, and everything works as over
plain http: registration, the lease guard's renewals during a restart (over the gateway, TLS),
failover, and ``corral status`` with an operator's certificate, refused without one."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from corral.lab.loopback import Cluster
from corral.pki import issue_identity, load_bundle, read_cert
from corral.spec.profiles import profile_timing
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


async def test_a_tls_cluster_hands_over_fails_over_and_refuses_strangers(
    cluster: Cluster, tmp_path: Path
) -> None:
    node_cert = read_cert(cluster.state_dir("n1") / "tls" / "node.crt")
    assert "CN=node:n1" in node_cert.subject.rfc4514_string()
    assert cluster.etcd.endpoints[0].startswith("https://")
    # an operator's certificate reads the cluster; no certificate is refused, by name
    ca = load_bundle(tmp_path / "ca", time.time())
    op = issue_identity(ca, "alice", "viewer", tmp_path / "alice", time.time())
    env = {"CORRAL_ETCD_CA": op.ca, "CORRAL_ETCD_CERT": op.cert, "CORRAL_ETCD_KEY": op.key,
           "CORRAL_STATE_DIR": str(tmp_path / "nowhere")}  # fmt: skip
    shown = status(cluster, env)
    assert shown.returncode == 0 and '"controller": "n' in shown.stdout, shown.stderr
    refused = status(cluster, {"CORRAL_STATE_DIR": str(tmp_path / "nowhere")})
    assert refused.returncode != 0 and "no node identity" in refused.stderr
    # a planned restart: the guard renews the lease over TLS, nothing moves
    (holder,) = cluster.serving(cluster.api_port)
    cluster.stop_agent(holder)
    await asyncio.sleep(LAN_TTL + 1)  # longer than a lease: only the guard renews it
    assert holder in cluster.serving(cluster.api_port)
    cluster.start_agent(holder)
    log = cluster.base / f"agent-{holder}.log"
    await until(lambda: "took over lease" in log.read_text(), "the new agent takes the lease")
    guard_log = (cluster.state_dir(holder) / "guard.log").read_text()
    assert "renewing lease" in guard_log and "lease deadline passed" not in guard_log
    # a crash: the api fails over, never on two nodes
    cluster.kill_agent(holder)
    await watch_the_api_leave(cluster, holder)
