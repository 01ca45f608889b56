"""Assignments name the registration they are for: an agent does not start an exclusive
instance assigned to an earlier registration of its node (a fenced node that rebooted fast must
not act on what the controller wrote before the fence: it could be moving to another node right
then), keeps one that already runs, and acts at once when the controller rewrites it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from corral.agent.node import Agent
from corral.core.health import CheckOutcome
from corral.drivers.base import NodeContext
from corral.spec import HealthCheck, Resource, load_spec_text
from corral.store import Keys, MemoryStore
from tests.agent.test_rule7 import Refusing

SPEC = """
cluster: ep
store: {etcd: {endpoints: ["http://127.0.0.1:1"]}}
nodes:
  n1: {address: 127.0.0.1}
  n2: {address: 127.0.0.2}
resources:
  svc: {process: /bin/true, mode: active-passive}
  web: {process: /bin/true}
"""
KEYS = Keys("ep")


async def no_check(check: HealthCheck, node: NodeContext) -> CheckOutcome:
    raise AssertionError("no checks here")


def assignment(node: str, reg: int | None) -> bytes:
    return json.dumps(
        {"instances": [{"node": node, "role": "started", "item": None, "reg": reg}]}
    ).encode()


@contextlib.asynccontextmanager
async def agent_on(
    store: MemoryStore, drivers: dict[str, Refusing], tmp_path: Path
) -> AsyncIterator[Agent]:
    spec = load_spec_text(SPEC)

    def factory(name: str, res: Resource, ctx: NodeContext, item: str | None) -> Refusing:
        return drivers[name]

    agent = Agent(spec, "n1", store, state_dir=tmp_path, driver_factory=factory, checker=no_check)
    task = asyncio.create_task(agent.run())
    try:
        yield agent
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(check: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def controller_elsewhere(store: MemoryStore) -> None:
    """n2 holds the controller key: n1's agent only reconciles (the test writes assignments)."""
    lease = await store.grant(3600)
    await store.put(KEYS.controller, b"n2", lease=lease.id)


async def test_exclusive_assignment_for_an_earlier_registration_is_not_started(
    tmp_path: Path,
) -> None:
    store = MemoryStore()
    await controller_elsewhere(store)
    drivers = {"svc": Refusing(), "web": Refusing()}
    stale = await store.put(KEYS.nodes() + b"n1", b"{}")  # the node's previous registration
    await store.put(KEYS.assign("svc"), assignment("n1", stale))
    await store.put(KEYS.assign("web"), assignment("n1", stale))
    async with agent_on(store, drivers, tmp_path) as agent:
        await until(lambda: agent.registration is not None, "registered")
        await until(lambda: drivers["web"].running, "active-active web started")
        await asyncio.sleep(1.0)  # several rounds
        assert not drivers["svc"].attempts, "started an exclusive assignment of a past life"
        assert any("assigned to an earlier registration" in d for d in agent.decisions)
        # the controller's rewrite for this registration: started at once
        await store.put(KEYS.assign("svc"), assignment("n1", agent.registration))
        await until(lambda: drivers["svc"].running, "svc started once assigned to us")


async def test_running_exclusive_instance_is_kept_while_its_assignment_catches_up(
    tmp_path: Path,
) -> None:
    store = MemoryStore()
    await controller_elsewhere(store)
    svc = Refusing()
    drivers = {"svc": svc, "web": Refusing()}
    async with agent_on(store, drivers, tmp_path) as agent:
        await until(lambda: agent.registration is not None, "registered")
        await store.put(KEYS.assign("svc"), assignment("n1", agent.registration))
        await until(lambda: svc.running, "svc started")
        old = agent.registration
        agent.lease = None  # the agent registers again (as after a lost lease)
        await until(lambda: agent.registration not in (None, old), "registered again")
        await asyncio.sleep(1.0)  # rounds with the assignment naming the old registration
        assert svc.running and len(svc.attempts) == 1, "a running instance was stopped"


async def test_after_a_lapse_an_instance_of_the_old_registration_is_stopped(
    tmp_path: Path,
) -> None:
    """The lease expired (the agent stalled, or was cut off): the controller saw the node
    offline and may have moved the instance; the assignment that still names the old
    registration must not keep it running here."""
    store = MemoryStore()
    await controller_elsewhere(store)
    svc = Refusing()
    drivers = {"svc": svc, "web": Refusing()}
    async with agent_on(store, drivers, tmp_path) as agent:
        await until(lambda: agent.registration is not None, "registered")
        await store.put(KEYS.assign("svc"), assignment("n1", agent.registration))
        await until(lambda: svc.running, "svc started")
        old = agent.registration
        assert agent.lease is not None
        await store.revoke(agent.lease)  # the lease is gone: its key with it
        await until(lambda: agent.registration not in (None, old), "registered again")
        await until(lambda: not svc.running, "the instance of the lapsed registration stopped")
        await asyncio.sleep(0.5)
        assert not svc.running and len(svc.attempts) == 1
