"""The health endpoints of real agents (loopback, real etcd, real HTTP clients): what a load
balancer sees while all is well, while an agent's control loop is stalled, and while etcd is
gone. Rule 1: never 200 for an exclusive instance after the node's lease deadline."""

from __future__ import annotations

import asyncio
import time

import pytest

from corral.agent.guard import read_listing
from corral.lab.loopback import NODES, Cluster
from tests.agent.test_cluster import until
from tests.api.live import get, health, holders

pytestmark = pytest.mark.etcd


async def test_a_load_balancer_sees_where_each_service_runs(served: Cluster) -> None:
    cluster = served
    (holder,) = holders(cluster)
    assert list(cluster.serving(cluster.api_port)) == [holder]  # what clients reach, too
    for node in NODES:
        assert health(cluster, node, "/v1/health")[0] == 200
        assert health(cluster, node, "/v1/ready")[0] == 200
        code, body = health(cluster, node, "/v1/health/api?role=active")
        if node != holder:
            assert code == 503 and body["reason"] == "no instance of api runs here"
    code, body = health(cluster, holder, "/v1/health/api?role=promoted")
    assert code == 503 and "in role promoted" in str(body["reason"])
    assert health(cluster, "n1", "/v1/health/nosuch")[0] == 404


async def test_a_stalled_loop_answers_from_its_last_state_and_never_past_the_lease(
    served: Cluster,
) -> None:
    cluster = served
    (holder,) = holders(cluster)
    stall = cluster.state_dir(holder) / "stall-loop"
    stall.write_text("8")
    await until(lambda: not stall.exists(), "the loop took the stall", 5)
    deadline = read_listing(cluster.state_dir(holder) / "guard.json").deadline
    seen: list[tuple[float, float, int, int, bool]] = []  # sent, took, api, web, web stale
    end = time.monotonic() + 6.0
    while time.monotonic() < end:
        sent = time.monotonic()
        api, _ = health(cluster, holder, "/v1/health/api?role=active")
        web, body = health(cluster, holder, "/v1/health/web")
        seen.append((sent, time.monotonic() - sent, api, web, body.get("stale") is True))
        await asyncio.sleep(0.05)
    assert all(api != 0 and web != 0 for _, _, api, web, _ in seen), "the API went silent"
    assert not [s for s in seen if s[0] >= deadline and s[2] == 200], "200 past the deadline"
    assert any(web == 200 for _, _, _, web, _ in seen), "never answered from the last state"
    assert seen[-1][3] == 503 and seen[-1][4], "a stalled loop must end up stale"
    # afterwards the agent turns again and says so
    await until(lambda: health(cluster, holder, "/v1/health")[0] == 200, "live again", 15)


async def test_with_etcd_gone_active_active_stays_in_and_exclusive_goes_out(
    served: Cluster, viewer: str
) -> None:
    """... and the read API says the store is unreachable (503), never hangs."""
    cluster = served
    (holder,) = holders(cluster)
    assert get(cluster, "n1", "/v1/status", viewer).status_code == 200  # the token is cached
    for member in cluster.etcd.members:
        member.kill()
    await until(lambda: not holders(cluster), "the exclusive instance out (rule 1)", 8)
    for node in NODES:
        assert health(cluster, node, "/v1/health/web")[0] == 200  # still serving
        # not ready once this agent's own store calls failed (each agent finds out by itself)
        await until(
            lambda n=node: health(cluster, n, "/v1/ready")[0] == 503, f"{node} not ready", 8
        )
        code, body = health(cluster, node, "/v1/ready")
        assert code == 503 and body["stale"] is False, body
    code, body = health(cluster, holder, "/v1/health/api")
    assert code == 503 and body["stale"] is False
    r = get(cluster, "n1", "/v1/status", viewer)
    assert r.status_code == 503 and "store is unreachable" in r.json()["reason"]
    for member in cluster.etcd.members:
        await member.start(wait=False)
    await until(lambda: len(holders(cluster)) == 1, "api back after etcd")
