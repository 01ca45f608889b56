"""The loopback cluster of tests/agent, once the health endpoints say what it runs: ``served``
(one per test, for the tests that stall, stop or break it) and ``live`` (``shared``: one per
module, for the modules whose tests leave it as they found it; ``live`` waits for that before
each; their tests run on the module's event loop, :data:`SHARED`). One per module, not per
package: a cluster kept up in the background would load the machine under the timing-sensitive
tests of other modules."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

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


SHARED = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    """One loopback cluster for a module's tests that leave it as they found it."""
    c = Cluster(Path(tmp_path_factory.mktemp("live")))
    try:
        await c.start()
        await wait_served(c)
        yield c
    finally:
        await c.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def live(shared: Cluster) -> Cluster:
    """``shared``, once web runs on 3 nodes and api on 1 (a test before may have moved api)."""
    await wait_served(shared)
    return shared


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def live_viewer(shared: Cluster) -> str:
    return await make_token(shared, "vic-shared", "viewer")


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
