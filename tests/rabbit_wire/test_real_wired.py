"""Real RabbitMQ 3.10 brokers formed and brought back by corral's own controller and members.

A :class:`~corral.agent.controller.Controller` on the memory store makes the decisions
(:mod:`corral.agent.rabbit_gate`: the plan, the gate on promotions), and each node's
:class:`~corral.drivers.rabbitmq_member.RabbitMember` over a real broker (tests/rabbit's lab:
three network namespaces, under names of this module's own) does what its assignment says,
as its agent's actuator would: start (broker stopped, state reported), promote (what the
plan says), status (the AMQP check; a broker that died is failed, then stopped and started
again). One formation (one node first, two joins), a quorum queue with publisher-confirmed
messages, kill -9 of all three, and the wired path brings them back (all three from their
data, together: the last-running set) with every confirmed message.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import pytest_asyncio

from corral.agent.assigned import Registration
from corral.agent.controller import Controller
from corral.agent.rabbit import StoreRabbitLink
from corral.core.clock import ManualClock
from corral.drivers.base import NodeFault
from corral.drivers.rabbitmq import RabbitServer
from corral.drivers.rabbitmq_member import SERVING, RabbitMember
from corral.records import AssignRecord, StatusInstance, StatusRecord
from corral.records import encode as dump
from corral.records.rabbit import RabbitKeys, read_state
from corral.records.rabbit_plan import PlanRecord, plan_key
from corral.spec import load_spec_text
from corral.store import Keys, MemoryStore
from tests.rabbit import lab as lab_module
from tests.rabbit.clients import (
    MESSAGES,
    NEEDS_BROKERS,
    QUEUE,
    declare,
    drain,
    our_processes,
    publish,
    registered_everywhere,
)
from tests.rabbit.lab import NODES, RabbitLab, address, rabbit_lab

pytestmark = [NEEDS_BROKERS, pytest.mark.timeout(300)]
SPEC = (
    "cluster: c1\nnodes:\n"
    + "".join(f"  {n}: {{address: {address(n)}}}\n" for n in NODES)
    + "resources:\n  mq:\n    rabbitmq: {erlang_cookie: {file: /nonexistent}}\n"
)


@pytest.fixture(scope="module")
def own_names() -> Iterator[None]:
    """Namespaces of our own (tests/rabbit's lab may run at the same time)."""
    saved = (lab_module.PREFIX, lab_module.SWITCH)
    lab_module.PREFIX, lab_module.SWITCH = "crw-", "crw-sw"
    yield
    lab_module.PREFIX, lab_module.SWITCH = saved


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def lab(
    own_names: None, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RabbitLab]:
    base = tmp_path_factory.mktemp("rabbit-wire")
    async with rabbit_lab(base) as made:
        yield made
    assert not our_processes(base), our_processes(base)  # no broker or epmd of ours left


class Agents:
    """What the agents of a, b, c do with their assignments, one round at a time."""

    def __init__(self, lab: RabbitLab) -> None:
        self.clock = ManualClock(1000.0)
        self.store, self.keys = MemoryStore(self.clock), Keys("c1")
        self.spec = load_spec_text(SPEC)
        self.leases: dict[str, int] = {}
        self.regs: dict[str, int] = {}
        self.members: dict[str, RabbitMember] = {}
        self.roles: dict[str, str] = {}
        self.details: dict[str, str] = {}
        self.lab = lab

    async def register(self) -> None:
        for node in NODES:
            self.leases[node] = (await self.store.grant(3600)).id
            key = self.keys.node(node)
            self.regs[node] = await self.store.put(key, dump({}), lease=self.leases[node])
            link = StoreRabbitLink(
                self.store, self.keys, "mq", self._me(node), self._lease(node), time.time
            )
            server, check = self.lab.servers[node], self.lab.check(node)
            self.members[node] = RabbitMember("mq", node, server, check, link)

    def _me(self, node: str) -> Callable[[], Registration]:
        return lambda: Registration(node, self.regs[node])

    def _lease(self, node: str) -> Callable[[], int | None]:
        return lambda: self.leases[node]

    async def round(self) -> None:
        kv = await self.store.get(self.keys.assign("mq"))
        record = AssignRecord.parse(kv.value) if kv is not None else None
        wanted = {i.node: i.role for i in record.instances} if record else {}
        for node, role in wanted.items():
            member, now = self.members[node], self.roles.get(node)
            if now is None:
                await member.start()
                await self._status(node, "started")
            if role == "promoted" and now != "promoted":
                try:
                    await member.promote()
                    await self._status(node, "promoted")
                except NodeFault:
                    pass  # its decision is to wait: the agent tries again
        for node, member in self.members.items():
            status = await member.status()
            self.details[node] = status.detail
            if status.state == "failed":  # the actuator restarts it: stop, start
                await member.stop()
                await member.start()
                await self._status(node, "started")

    async def _status(self, node: str, role: str) -> None:
        self.roles[node] = role
        record = StatusRecord((StatusInstance(role, "healthy", ""),))
        await self.store.put(self.keys.status(node, "mq"), record.dump(), lease=self.leases[node])

    async def plans(self) -> list[dict[str, str]]:
        kv = await self.store.get(plan_key(RabbitKeys(self.keys, "mq")))
        assert kv is not None
        return [{d.node: d.action for d in PlanRecord.read(kv.value).decisions}]

    async def converge(self, controller: Controller, timeout: float) -> list[dict[str, str]]:
        """Steps and rounds until every member serves; the distinct plans seen, in order."""
        seen: list[dict[str, str]] = []
        deadline = time.monotonic() + timeout
        while True:
            await controller.step()
            await self.round()
            plan = (await self.plans())[0]
            if plan and (not seen or seen[-1] != plan):  # {}: no report yet
                seen.append(plan)
            if all(self.details.get(n) == SERVING for n in NODES):
                return seen
            assert time.monotonic() < deadline, f"not serving in {timeout}s: {self.details}"
            await asyncio.sleep(0.5)


def _declared_on_disk(lab: RabbitLab, node: str) -> bool:
    """``node``'s mnesia files (not the quorum directory) name the queue: its durable record
    left the broker's buffers (a kill -9 before that loses the queue, its messages with it)."""
    files = [f for f in lab.servers[node].mnesia.iterdir() if f.is_file()]
    return any(QUEUE.encode() in f.read_bytes() for f in files if f.stat().st_size < 2**24)


async def _durable_everywhere(lab: RabbitLab, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not all(_declared_on_disk(lab, n) for n in NODES):
        assert time.monotonic() < deadline, "the queue's record never reached the mnesia files"
        await asyncio.sleep(0.2)


def _vm_alive(server: RabbitServer) -> bool:
    return any(p.name() == "beam.smp" for p in server.processes())


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def agents(lab: RabbitLab) -> Agents:
    made = Agents(lab)
    await made.register()
    return made


@pytest.mark.asyncio(loop_scope="module")
async def test_the_controller_forms_and_restores_a_real_cluster_after_kill_9(
    lab: RabbitLab, agents: Agents
) -> None:
    controller = Controller(
        agents.store, agents.keys, "a", lambda: agents.spec, wall=time.time, clock=agents.clock
    )
    assert await controller.campaign(agents.leases["a"])
    began = time.monotonic()
    plans = await agents.converge(controller, timeout=150)
    formation = time.monotonic() - began
    assert plans[0] == {"a": "start_first", "b": "wait", "c": "wait"}, plans
    assert any(p.get("b") == "join" and p.get("c") == "join" for p in plans), plans
    await declare(lab, "b")
    await registered_everywhere(lab, timeout=30.0)  # a member not on disk comes back empty
    waited = time.monotonic()
    await _durable_everywhere(lab, timeout=30.0)  # and so does a queue record not on disk
    waited = time.monotonic() - waited
    confirmed = await publish(lab, "b", MESSAGES)
    state = await read_state(agents.store, RabbitKeys(agents.keys, "mq"))
    newest = max(state.records.values(), key=lambda r: r.seq)  # names the last-running set
    assert newest.running == frozenset(NODES), state.records

    # a's broker is killed the way the lease guard's driver would (no link, a new object that
    # did not start it: by the pid file, checked to be a's broker); b's and c's by kill -9
    guard = RabbitMember("mq", "a", RabbitServer(lab.servers["a"].config), lab.check("a"))
    await asyncio.gather(guard.stop(), lab.servers["b"].kill(), lab.servers["c"].kill())
    assert not lab.servers["a"].processes() or not _vm_alive(lab.servers["a"]), "a still runs"
    began = time.monotonic()
    plans = await agents.converge(controller, timeout=150)
    recovery = time.monotonic() - began
    assert {"a": "start_first", "b": "start_first", "c": "start_first"} in plans, plans
    assert not any("force_boot" in p.values() for p in plans), plans
    assert (await read_state(agents.store, RabbitKeys(agents.keys, "mq"))).claims == {}
    got = await drain(lab, "c", len(confirmed))
    aside = [p.name for s in lab.servers.values() for p in s.base.glob("mnesia.forgotten-*")]
    assert confirmed <= got, f"lost {len(confirmed - got)} confirmed; {plans}; reset: {aside}"
    print(f"\nrabbit wired: formation {formation:.1f}s, recovery {recovery:.1f}s, {waited=:.1f}s")
