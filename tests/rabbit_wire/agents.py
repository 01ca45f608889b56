"""The wired path's agents over the real-broker lab, shared by the wired test and
``bench/rabbit_stateful.py``.

:class:`Agents` does, one round at a time, what the agents of a, b, c do with their
assignments, as their actuators would: each node's
:class:`~corral.drivers.rabbitmq_member.RabbitMember` over its real broker, with its
:class:`~corral.agent.rabbit.StoreRabbitLink` on the store (the memory store or a real etcd):
start (broker stopped, state reported), promote (what the plan says; a ``wait`` is tried again
the next round), status (the AMQP check; a broker that died is failed, then stopped and
started again). A node's agent can go away (:meth:`Agents.down`: its lease revoked, its
registration and report gone, as when the node is powered off), be fenced
(:meth:`Agents.fence`: the record the controller's fence writes) and come back with a new life
(:meth:`Agents.up`). What the agents do not do here: demote a node the assignment no longer
promotes (no scenario of the wired test or the bench needs it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

from corral.agent.assigned import Registration
from corral.agent.controller import Controller
from corral.agent.rabbit import StoreRabbitLink
from corral.drivers.base import NodeFault
from corral.drivers.rabbitmq_member import SERVING, RabbitMember
from corral.records import AssignRecord, FencedRecord, StatusInstance, StatusRecord
from corral.records import encode as dump
from corral.records.rabbit import RabbitKeys, read_state
from corral.records.rabbit_plan import PlanRecord, plan_key
from corral.spec import Spec, load_spec_text
from corral.store import Keys, Store
from tests.rabbit import lab as lab_module
from tests.rabbit.clients import QUEUE
from tests.rabbit.lab import NODES, RabbitLab


def spec_text(rabbitmq: str = "") -> str:
    """The lab's spec: its three nodes, one rabbitmq resource ``mq`` (``rabbitmq``: more
    settings of the kind, ``, key: value`` each)."""
    return (
        "cluster: c1\nnodes:\n"
        + "".join(f"  {n}: {{address: {lab_module.address(n)}}}\n" for n in NODES)
        + "resources:\n  mq:\n    rabbitmq: {erlang_cookie: {file: /nonexistent}"
        + rabbitmq
        + "}\n"
    )


class Agents:
    """What the agents of a, b, c do with their assignments, one round at a time."""

    def __init__(self, lab: RabbitLab, store: Store, spec: Spec | None = None) -> None:
        self.store, self.keys = store, Keys("c1")
        self.spec = spec or load_spec_text(spec_text())
        self.rkeys = RabbitKeys(self.keys, "mq")
        self.leases: dict[str, int] = {}
        self.regs: dict[str, int] = {}
        self.members: dict[str, RabbitMember] = {}
        self.roles: dict[str, str] = {}
        self.details: dict[str, str] = {}
        self.live: set[str] = set()
        self.lab = lab

    async def register(self) -> None:
        for node in NODES:
            await self.up(node)

    async def up(self, node: str) -> None:
        """``node``'s agent starts: a new life (lease, registration, member)."""
        self.leases[node] = (await self.store.grant(3600)).id
        key = self.keys.node(node)
        self.regs[node] = await self.store.put(key, dump({}), lease=self.leases[node])
        link = StoreRabbitLink(
            self.store, self.keys, "mq", self._me(node), self._lease(node), time.time
        )
        server, check = self.lab.servers[node], self.lab.check(node)
        self.members[node] = RabbitMember("mq", node, server, check, link)
        self.roles.pop(node, None)
        self.details.pop(node, None)
        self.live.add(node)

    async def down(self, node: str) -> None:
        """``node``'s agent is gone (the node powered off): its lease revoked, so its
        registration, report and status go. Its broker is the caller's to stop or kill."""
        self.live.discard(node)
        await self.members[node].check.close()
        await self.store.revoke(self.leases[node])
        self.roles.pop(node, None)
        self.details.pop(node, None)

    async def fence(self, node: str) -> None:
        """What the controller records once a fence device powered ``node`` off: the
        ``fenced`` record naming its registration, then its lease revoked."""
        record = FencedRecord(self.regs[node], time.time(), "bench")
        await self.store.put(self.keys.fenced(node), record.dump())
        await self.down(node)

    def _me(self, node: str) -> Callable[[], Registration]:
        return lambda: Registration(node, self.regs[node])

    def _lease(self, node: str) -> Callable[[], int | None]:
        return lambda: self.leases[node]

    async def round(self) -> None:
        kv = await self.store.get(self.keys.assign("mq"))
        record = AssignRecord.parse(kv.value) if kv is not None else None
        wanted = {i.node: i.role for i in record.instances} if record else {}
        for node, role in wanted.items():
            if node not in self.live:
                continue
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
        for node in sorted(self.live):
            member = self.members[node]
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

    async def plan(self) -> dict[str, str]:
        """node -> action of the stored plan ({} before the first)."""
        kv = await self.store.get(plan_key(self.rkeys))
        if kv is None:
            return {}
        return {d.node: d.action for d in PlanRecord.read(kv.value).decisions}

    def serving(self, nodes: Iterable[str]) -> bool:
        return all(self.details.get(n) == SERVING for n in nodes)

    async def until(
        self,
        controller: Controller,
        done: Callable[[], bool],
        timeout: float,
        what: str,
        seen: list[dict[str, str]] | None = None,
    ) -> list[dict[str, str]]:
        """Steps and rounds until ``done()``; the distinct plans seen, in order (added to
        ``seen`` when given). AssertionError naming ``what`` after ``timeout`` seconds."""
        seen = [] if seen is None else seen
        deadline = time.monotonic() + timeout
        while True:
            await controller.step()
            await self.round()
            plan = await self.plan()
            if plan and (not seen or seen[-1] != plan):  # {}: no report yet
                seen.append(plan)
            if done():
                return seen
            assert time.monotonic() < deadline, f"{what}: not in {timeout}s: {self.details}"
            await asyncio.sleep(0.5)

    async def converge(
        self, controller: Controller, timeout: float, nodes: Iterable[str] = NODES
    ) -> list[dict[str, str]]:
        """Steps and rounds until every node of ``nodes`` serves; the distinct plans seen."""
        want = tuple(nodes)
        return await self.until(controller, lambda: self.serving(want), timeout, "serving")

    async def last_running(self) -> frozenset[str]:
        """The running set of the newest run record (the last-running set if all stopped)."""
        state = await read_state(self.store, self.rkeys)
        newest = max(state.records.values(), key=lambda r: r.seq, default=None)
        return newest.running if newest is not None else frozenset()


def declared_on_disk(lab: RabbitLab, node: str) -> bool:
    """``node``'s mnesia files (not the quorum directory) name the queue: its durable record
    left the broker's buffers (a kill -9 before that loses the queue, its messages with it)."""
    files = [f for f in lab.servers[node].mnesia.iterdir() if f.is_file()]
    return any(QUEUE.encode() in f.read_bytes() for f in files if f.stat().st_size < 2**24)


async def durable_everywhere(lab: RabbitLab, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not all(declared_on_disk(lab, n) for n in NODES):
        assert time.monotonic() < deadline, "the queue's record never reached the mnesia files"
        await asyncio.sleep(0.2)
