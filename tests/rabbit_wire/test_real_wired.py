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
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from corral.agent.controller import Controller
from corral.core.clock import ManualClock
from corral.drivers.rabbitmq import RabbitServer
from corral.drivers.rabbitmq_member import RabbitMember
from corral.records.rabbit import RabbitKeys, read_state
from corral.store import MemoryStore
from tests.rabbit import lab as lab_module
from tests.rabbit.clients import (
    MESSAGES,
    NEEDS_BROKERS,
    declare,
    drain,
    our_processes,
    publish,
    registered_everywhere,
)
from tests.rabbit.lab import NODES, RabbitLab, rabbit_lab
from tests.rabbit_wire.agents import Agents, durable_everywhere

pytestmark = [NEEDS_BROKERS, pytest.mark.timeout(300)]


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


def _vm_alive(server: RabbitServer) -> bool:
    return any(p.name() == "beam.smp" for p in server.processes())


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def agents(lab: RabbitLab) -> Agents:
    made = Agents(lab, MemoryStore(ManualClock(1000.0)))
    await made.register()
    return made


@pytest.mark.asyncio(loop_scope="module")
async def test_the_controller_forms_and_restores_a_real_cluster_after_kill_9(
    lab: RabbitLab, agents: Agents
) -> None:
    controller = Controller(
        agents.store, agents.keys, "a", lambda: agents.spec, wall=time.time, clock=ManualClock(0)
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
    await durable_everywhere(lab, timeout=30.0)  # and so does a queue record not on disk
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
