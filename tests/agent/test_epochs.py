"""Assignments name the registration they are for: an agent does not start an exclusive
instance assigned to an earlier registration of its node (a fenced node that rebooted fast must
not act on what the controller wrote before the fence: it could be moving to another node right
then), keeps one that already runs, and acts at once when the controller rewrites it."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

from corral.agent.node import Agent
from corral.core.agent.core import ADOPT_GRACE
from corral.core.health import CheckOutcome
from corral.drivers.base import NodeContext
from corral.spec import HealthCheck, Resource, load_spec_text
from corral.store import Keys, MemoryStore
from tests.agent.fakes import until
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
ADOPT_GRACE_CHECK = ADOPT_GRACE + 0.5


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


async def controller_elsewhere(store: MemoryStore) -> None:
    """n2 holds the controller key: n1's agent only reconciles (the test writes assignments)."""
    lease = await store.grant(3600)
    await store.put(KEYS.controller, b"n2", lease=lease.id)


@contextlib.asynccontextmanager
async def svc_running_on_n1(
    store: MemoryStore, svc: Refusing, tmp_path: Path
) -> AsyncIterator[Agent]:
    """n1's agent, registered, running ``svc`` as assigned to its registration."""
    await controller_elsewhere(store)
    async with agent_on(store, {"svc": svc, "web": Refusing()}, tmp_path) as agent:
        await until(lambda: agent.registration is not None, 5.0, "registered")
        await store.put(KEYS.assign("svc"), assignment("n1", agent.registration))
        await until(lambda: svc.running, 5.0, "svc started")
        yield agent


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
        await until(lambda: agent.registration is not None, 5.0, "registered")
        await until(lambda: drivers["web"].running, 5.0, "active-active web started")
        await asyncio.sleep(1.0)  # several rounds
        assert not drivers["svc"].attempts, "started an exclusive assignment of a past life"
        assert any("assigned to an earlier registration" in d for d in agent.decisions)
        # the controller's rewrite for this registration: started at once
        await store.put(KEYS.assign("svc"), assignment("n1", agent.registration))
        await until(lambda: drivers["svc"].running, 5.0, "svc started once assigned to us")


async def test_running_exclusive_instance_is_kept_while_its_assignment_catches_up(
    tmp_path: Path,
) -> None:
    store, svc = MemoryStore(), Refusing()
    async with svc_running_on_n1(store, svc, tmp_path) as agent:
        old = agent.registration
        agent.lease = None  # the agent registers again (as after a lost lease)
        await until(lambda: agent.registration not in (None, old), 5.0, "registered again")
        await asyncio.sleep(1.0)  # rounds with the assignment naming the old registration
        assert svc.running and len(svc.attempts) == 1, "a running instance was stopped"


async def test_after_a_lapse_an_instance_of_the_old_registration_is_stopped(
    tmp_path: Path,
) -> None:
    """The lease expired (the agent stalled, or was cut off): the controller saw the node
    offline and may have moved the instance; the assignment that still names the old
    registration must not keep it running here."""
    store, svc = MemoryStore(), Refusing()
    async with svc_running_on_n1(store, svc, tmp_path) as agent:
        old = agent.registration
        assert agent.lease is not None
        await store.revoke(agent.lease)  # the lease is gone: its key with it
        await until(lambda: agent.registration not in (None, old), 5.0, "registered again")
        await until(lambda: not svc.running, 5.0, "the instance of the lapsed registration stopped")
        await asyncio.sleep(0.5)
        assert not svc.running and len(svc.attempts) == 1


class RacingStore(MemoryStore):
    """A store in which one write lands just before a given call, as another party's write
    racing ours would: ``before(kind, key)`` returns the (key, value) to write first."""

    def __init__(self) -> None:
        super().__init__()
        self.race: tuple[str, bytes, bytes] | None = None  # (call kind, key, value) once

    async def _maybe_race(self, kind: str) -> None:
        if self.race is not None and self.race[0] == kind:
            _, key, value = self.race
            self.race = None
            await MemoryStore.put(self, key, value)

    async def txn(self, compares, success, failure=()):  # type: ignore[no-untyped-def]
        await self._maybe_race("txn")
        return await super().txn(compares, success, failure)

    async def get(self, key: bytes):  # type: ignore[no-untyped-def]
        if key.startswith(KEYS.prefix("assign")):
            await self._maybe_race("get-assign")
        return await super().get(key)


async def test_an_exclusive_start_rereads_its_assignment_and_yields_to_a_move(
    tmp_path: Path,
) -> None:
    """The chaos run's cinder-volume on two nodes: an agent's round read 'svc -> n1', took
    seconds with other actions, and started svc after the controller had moved it to n2. The
    start now reports the instance as starting, then reads its assignment again."""
    store = RacingStore()
    await controller_elsewhere(store)
    svc = Refusing()
    async with agent_on(store, {"svc": svc, "web": Refusing()}, tmp_path) as agent:
        await until(lambda: agent.registration is not None, 5.0, "registered")
        # the controller's move to n2 lands between the round's read and the start
        store.race = ("get-assign", KEYS.assign("svc"), assignment("n2", 1))
        await store.put(KEYS.assign("svc"), assignment("n1", agent.registration))
        await until(lambda: any("moved on meanwhile" in d for d in agent.decisions), 5.0, "re-read")
        await asyncio.sleep(0.5)
        assert not svc.attempts, "started from a stale read of its assignment"
        status = await store.get(KEYS.status("n1", "svc"))
        assert status is None, "the starting report was not withdrawn"


async def test_the_controller_does_not_assign_over_a_holder_it_did_not_see() -> None:
    """The controller read 'svc runs nowhere' and places it on n1; n2's agent reported svc
    starting before the controller's write: the write is refused (the status record changed), the controller
    stays the controller, and its next step hands off instead of assigning a second node."""
    from corral.agent.controller import Controller
    from corral.records import AssignRecord, encode

    spec = load_spec_text(SPEC)
    store = RacingStore()
    leases = {}
    for node in spec.nodes:
        leases[node] = (await store.grant(60)).id
        await store.put(KEYS.node(node), b"{}", lease=leases[node])
    controller = Controller(store, KEYS, "n2", lambda: spec)
    assert await controller.campaign(leases["n2"])
    starting = encode({"instances": [{"role": "started", "health": "starting", "item": None}]})
    store.race = ("txn", KEYS.status("n2", "svc"), starting)
    decision = await controller.step()
    assert decision.startswith("not written: a holder appeared"), decision
    assert controller.active
    assert await store.get(KEYS.assign("svc")) is None
    await controller.step()  # fresh read: n2 reports svc, so it is assigned there or nowhere
    kv = await store.get(KEYS.assign("svc"))
    record = AssignRecord.parse(kv.value) if kv else None
    nodes = set(record.nodes) if record else set()
    assert nodes <= {"n2"}, nodes


class Counting(Refusing):
    """A driver that counts its stops."""

    def __init__(self) -> None:
        super().__init__()
        self.stops = 0

    async def stop(self) -> None:
        self.stops += 1
        await super().stop()


async def test_a_lapse_keeps_active_active_services_running(tmp_path: Path) -> None:
    """The chaos run's frozen node: its lease expired, the controller withdrew every instance
    of the node, and on thaw the agent stopped all its API services ("not assigned to this
    node") only to start them again once the controller re-assigned them to its next
    registration: seconds of outage on a node that was fine. The exclusive instance is still
    stopped (rule 1); the active-active one is held until it is assigned again."""
    store, svc, web = MemoryStore(), Refusing(), Counting()
    await controller_elsewhere(store)
    async with agent_on(store, {"svc": svc, "web": web}, tmp_path) as agent:
        await until(lambda: agent.registration is not None, 5.0, "registered")
        old = agent.registration
        await store.put(KEYS.assign("svc"), assignment("n1", old))
        await store.put(KEYS.assign("web"), assignment("n1", old))
        await until(lambda: svc.running and web.running, 5.0, "both started")
        store.set_available(False)  # the node cannot renew: past its deadline, rule 1 applies
        await until(lambda: not svc.running, 5.0, "the exclusive instance self-fenced")
        store.set_available(True)
        # what the controller wrote when the lease expired: the node is gone
        assert agent.lease is not None
        await store.revoke(agent.lease)
        await store.put(KEYS.assign("svc"), b'{"instances": []}')
        await store.put(KEYS.assign("web"), b'{"instances": []}')
        await until(lambda: agent.registration not in (None, old), 5.0, "registered again")
        await asyncio.sleep(0.3)  # the controller's step after the registration
        await store.put(KEYS.assign("web"), assignment("n1", agent.registration))
        await asyncio.sleep(ADOPT_GRACE_CHECK)  # past the grace: web is an ordinary service
        assert web.running and web.stops == 0, "a lease lapse stopped an active-active service"
        assert not svc.running and svc.attempts and len(svc.attempts) == 1


async def test_a_held_over_service_no_one_assigns_again_is_stopped(tmp_path: Path) -> None:
    """The hold ends: a service the controller does not assign to the new registration within
    the grace is stopped (it was withdrawn on purpose: a ban, standby, a spec change)."""
    store, web = MemoryStore(), Counting()
    await controller_elsewhere(store)
    async with agent_on(store, {"svc": Refusing(), "web": web}, tmp_path) as agent:
        await until(lambda: agent.registration is not None, 5.0, "registered")
        old = agent.registration
        await store.put(KEYS.assign("web"), assignment("n1", old))
        await until(lambda: web.running, 5.0, "web started")
        store.set_available(False)
        await until(lambda: not agent.may_hold_exclusive(), 5.0, "past the renewal deadline")
        store.set_available(True)
        assert agent.lease is not None
        await store.revoke(agent.lease)
        await store.put(KEYS.assign("web"), b'{"instances": []}')
        await until(lambda: agent.registration not in (None, old), 5.0, "registered again")
        await asyncio.sleep(ADOPT_GRACE - 1.0)
        assert web.running, "stopped before the grace ended"
        await until(lambda: not web.running, 3.0, "web stopped after the grace")
        assert web.stops == 1
