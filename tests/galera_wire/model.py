"""A model of the agents of db1..db3 over real Galera servers, for ``bench/stateful.py``: one
process, a :class:`~corral.agent.controller.Controller` on the memory store, each node's
:class:`GaleraMember` doing what its assignment says in rounds the caller runs (start:
mariadbd stopped, state reported; promote: bootstrap under the claim or join the Primary),
and publishing its role at once (so no record is ever stale here: the members' confirmation
wait is off). The real agents are tested in ``test_real_formation.py``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from corral.agent.assigned import Registration
from corral.agent.controller import Controller
from corral.agent.galera import StoreGaleraLink
from corral.core.clock import ManualClock
from corral.drivers.galera_member import PRIMARY_DETAIL, GaleraMember
from corral.records import AssignRecord, FencedRecord, StatusInstance, StatusRecord
from corral.records import encode as dump
from corral.spec import load_spec_text
from corral.store import Keys, MemoryStore
from tests.galera.lab import GaleraLab, wait_for
from tests.galera_wire.test_writer import BALANCED

NODES = ("db1", "db2", "db3")


class Agents:
    """What the agents of db1..db3 do with their assignments, one round at a time."""

    def __init__(self, lab: GaleraLab, spec_text: str = BALANCED) -> None:
        self.clock = ManualClock(1000.0)
        self.store, self.keys = MemoryStore(self.clock), Keys("c1")
        self.spec = load_spec_text(spec_text)
        self.lab = lab
        self.leases: dict[str, int] = {}
        self.regs: dict[str, int] = {}
        self.members: dict[str, GaleraMember] = {}
        self.roles: dict[str, str] = {}

    async def register(self) -> None:
        for i, node in enumerate(NODES, 1):
            self.leases[node] = (await self.store.grant(3600)).id
            key = self.keys.node(node)
            self.regs[node] = await self.store.put(key, dump({}), lease=self.leases[node])
            link = StoreGaleraLink(
                self.store, self.keys, "galera", self._me(node), self._lease(node), time.time
            )
            self.members[node] = GaleraMember("galera", self.lab.server(i), link)
            self.members[node].confirm = 0.0  # records are written in step here: none stale

    async def fence(self, node: str) -> None:
        """What the controller does once ``node``'s fence succeeded: ``fenced/<node>`` names
        its registration, then its lease is revoked (its registration, status and report go)."""
        record = FencedRecord(self.regs[node], time.time(), "bench")
        await self.store.put(self.keys.fenced(node), record.dump())
        await self.store.revoke(self.leases[node])

    async def expire(self, node: str) -> None:
        """``node``'s lease ends (its agent stopped renewing it: dead or cut off)."""
        await self.store.revoke(self.leases[node])

    async def reregister(self, node: str) -> None:
        """``node``'s agent back: a new lease and registration, no role yet."""
        self.leases[node] = (await self.store.grant(3600)).id
        key = self.keys.node(node)
        self.regs[node] = await self.store.put(key, dump({}), lease=self.leases[node])
        self.roles.pop(node, None)

    async def publish(self, node: str, role: str) -> None:
        """Publish ``node``'s role (healthy, synced and Primary)."""
        await self._status(node, role)

    def _me(self, node: str) -> Callable[[], Registration]:
        return lambda: Registration(node, self.regs[node])

    def _lease(self, node: str) -> Callable[[], int | None]:
        return lambda: self.leases[node]

    async def round(self) -> None:
        kv = await self.store.get(self.keys.assign("galera"))
        record = AssignRecord.parse(kv.value) if kv is not None else None
        wanted = {i.node: i.role for i in record.instances} if record else {}
        for node, role in wanted.items():
            member, now = self.members[node], self.roles.get(node)
            if now is None:
                await member.start()
                await self._status(node, "started")
            if role == "promoted" and now != "promoted":
                await member.promote()
                await self._status(node, "promoted")

    async def restart(self, node: str) -> float:
        """What ``node``'s agent does with a member whose mariadbd died: start it again
        (stopped, inspected, ``--wsrep-recover`` after a crash, reported) and publish it
        started. Returns the seconds the start took."""
        began = time.monotonic()
        await self.members[node].start()
        took = time.monotonic() - began
        await self._status(node, "started")
        return took

    async def settle(
        self,
        controller: Controller,
        rounds: int = 12,
        nodes: tuple[str, ...] = NODES,
        limit: float = 0.0,
    ) -> None:
        """Controller steps and agent rounds until every member of ``nodes`` is promoted
        (``rounds`` at once, then one every 0.5 s until ``limit`` seconds have passed: a
        controller waiting, e.g. ``bootstrap_wait``), then until each of their servers is
        synced in a view of ``len(nodes)``; one more step clears the claim and names the
        writer. The manual clock (the controller's and the store's) follows real time."""
        deadline, count, last = time.monotonic() + limit, 0, time.monotonic()
        while True:
            now = time.monotonic()
            self.clock.advance(now - last)
            last = now
            await controller.step()
            await self.round()
            if all(self.roles.get(n) == "promoted" for n in nodes):
                break
            count += 1
            if count >= rounds and now > deadline:
                raise AssertionError(f"not every member promoted: {self.roles}")
            if count >= rounds:
                await asyncio.sleep(0.5)
        for node in nodes:
            server = self.lab.server(NODES.index(node) + 1)
            await wait_for(
                server, lambda s: s.healthy and s.cluster_size == len(nodes), timeout=180
            )
        await controller.step()

    async def _status(self, node: str, role: str) -> None:
        self.roles[node] = role
        record = StatusRecord((StatusInstance(role, "healthy", PRIMARY_DETAIL),))
        key = self.keys.status(node, "galera")
        await self.store.put(key, record.dump(), lease=self.leases[node])
