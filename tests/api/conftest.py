"""The loopback cluster of tests/agent, once the health endpoints say what it runs."""

from __future__ import annotations

import pytest

from corral.auth import Role, tokens
from corral.lab.loopback import NODES, Cluster
from corral.store import Keys
from tests.agent.test_cluster import cluster, until
from tests.api.live import health, holders

__all__ = ["cluster"]  # the fixture, shared


async def wait_served(c: Cluster) -> None:
    """Until the health endpoints say web runs on 3 nodes and api on 1."""
    await until(
        lambda: (
            all(health(c, n, "/v1/health/web")[0] == 200 for n in NODES) and len(holders(c)) == 1
        ),
        "web healthy on 3 nodes and api on 1, as the health endpoints say",
    )


@pytest.fixture
async def served(cluster: Cluster) -> Cluster:
    """The loopback cluster (tests/agent), once the health endpoints say what it runs."""
    await wait_served(cluster)
    return cluster


async def make_token(c: Cluster, name: str, role: Role) -> str:
    """A token of ``role`` stored in the cluster (as ``corral tokens create`` does)."""
    store = c.etcd.store()
    try:
        text, _ = await tokens.create(store, Keys("agenttest"), name, role, by="root", now=0.0)
    finally:
        await store.close()
    return text


@pytest.fixture
async def viewer(served: Cluster) -> str:
    return await make_token(served, "vic", "viewer")
