"""DESIGN.md rule 7 in the agent: a start refused for a reason outside the resource (a VIP that
another host still answers for, the node's own NIC down: :class:`NodeFault`) is not counted
against the resource, and is tried again soon; a real start failure still counts."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

from corral.agent.node import Agent
from corral.core.health import CheckOutcome
from corral.drivers.base import DriverError, DriverStatus, NodeContext, NodeFault
from corral.records import FailCountRecord
from corral.spec import HealthCheck, Resource, load_spec_text
from corral.store import Keys, MemoryStore

SPEC = """
cluster: r7
store: {etcd: {endpoints: ["http://127.0.0.1:1"]}}
nodes:
  n1: {address: 127.0.0.1}
resources:
  svc: {process: /bin/true, mode: active-passive}
"""


class Refusing:
    """A driver whose first ``refusals`` starts raise ``error``; then it runs."""

    def __init__(self, error: DriverError | None = None, refusals: int = 0) -> None:
        self.error, self.refusals = error, refusals
        self.attempts: list[float] = []
        self.running = False

    async def start(self) -> None:
        self.attempts.append(time.monotonic())
        if self.error is not None and len(self.attempts) <= self.refusals:
            raise self.error
        self.running = True

    async def stop(self) -> None:
        self.running = False

    async def status(self) -> DriverStatus:
        return DriverStatus("running" if self.running else "stopped")

    async def adopt(self) -> bool:
        return False

    async def promote(self) -> None:
        raise DriverError("no roles")

    async def demote(self) -> None:
        raise DriverError("no roles")


async def no_check(check: HealthCheck, node: NodeContext) -> CheckOutcome:
    raise AssertionError("the resource has no checks")


@contextlib.asynccontextmanager
async def running(driver: Refusing, tmp_path: Path) -> AsyncIterator[tuple[Agent, MemoryStore]]:
    spec = load_spec_text(SPEC)
    store = MemoryStore()

    def factory(name: str, res: Resource, ctx: NodeContext, item: str | None) -> Refusing:
        return driver

    agent = Agent(spec, "n1", store, state_dir=tmp_path, driver_factory=factory, checker=no_check)
    task = asyncio.create_task(agent.run())
    try:
        yield agent, store
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def failcount(store: MemoryStore) -> int:
    kv = await store.get(Keys("r7").failcount("n1", "svc"))
    return 0 if kv is None else FailCountRecord.read(kv.value).count


async def wait_running(driver: Refusing, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not driver.running:
        assert time.monotonic() < deadline, f"never started: {len(driver.attempts)} attempt(s)"
        await asyncio.sleep(0.05)


async def test_start_refused_by_another_holder_is_not_counted_and_retried_soon(
    tmp_path: Path,
) -> None:
    refusal = NodeFault("svc: 198.18.0.100 is answered by 02:00:00:00:00:01: another host holds it")
    driver = Refusing(refusal, refusals=3)
    async with running(driver, tmp_path) as (agent, store):
        await wait_running(driver)
        gaps = [b - a for a, b in zip(driver.attempts, driver.attempts[1:], strict=False)]
        assert all(g < 2.0 for g in gaps), gaps  # retried within a second or so, not a round
        assert await failcount(store) == 0
        waiting = [d for d in agent.decisions if "not starting svc yet (not counted)" in d]
        assert len(waiting) == 1, waiting  # one event per distinct refusal, not per retry


async def test_a_real_start_failure_still_counts(tmp_path: Path) -> None:
    driver = Refusing(DriverError("svc: exited with status 1"), refusals=1)
    async with running(driver, tmp_path) as (_agent, store):
        await wait_running(driver)
        assert await failcount(store) == 1


async def test_an_instance_the_lease_guard_stopped_is_not_counted(tmp_path: Path) -> None:
    """The agent stalled past its rule-1 deadline (an etcd election, a starved machine) and
    renewed late; meanwhile the lease guard stopped its exclusive instance. The agent finds it
    not running: that is the node's event (rule 7), so it starts it again without counting."""
    driver = Refusing()
    async with running(driver, tmp_path) as (agent, store):
        await wait_running(driver)
        driver.running = False  # the lease guard stopped it behind the agent's back...
        agent.core.lease.lapsed_at = agent.clock.now()  # ...while the agent renewed too late
        deadline = time.monotonic() + 5
        while len(driver.attempts) < 2:
            assert time.monotonic() < deadline, "not started again"
            await asyncio.sleep(0.05)
        await wait_running(driver)
        assert await failcount(store) == 0
        assert any("stopped by the lease guard" in d for d in agent.decisions)
