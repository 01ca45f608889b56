"""A model of the agents of db1..db3 over real Galera servers, for ``bench/stateful.py``: one
process, a :class:`~corral.agent.controller.Controller` on the memory store, each node's
:class:`GaleraMember` doing what its assignment says in rounds the caller runs (start:
mariadbd stopped, state reported; promote: bootstrap under the claim or join the Primary),
and publishing its role at once (so no record is ever stale here: the members' confirmation
wait is off). The real agents are tested in ``test_real_formation.py``."""

from __future__ import annotations

import time
from collections.abc import Callable

from corral.agent.assigned import Registration
from corral.agent.controller import Controller
from corral.agent.galera import StoreGaleraLink
from corral.core.clock import ManualClock
from corral.drivers.galera_member import PRIMARY_DETAIL, GaleraMember
from corral.records import AssignRecord, StatusInstance, StatusRecord
from corral.records import encode as dump
from corral.spec import load_spec_text
from corral.store import Keys, MemoryStore
from tests.galera.lab import GaleraLab, wait_for
from tests.galera_wire.test_writer import BALANCED

NODES = ("db1", "db2", "db3")


class Agents:
    """What the agents of db1..db3 do with their assignments, one round at a time."""

    def __init__(self, lab: GaleraLab) -> None:
        self.clock = ManualClock(1000.0)
        self.store, self.keys = MemoryStore(self.clock), Keys("c1")
        self.spec = load_spec_text(BALANCED)
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

    async def settle(self, controller: Controller, rounds: int = 12) -> None:
        """Controller steps and agent rounds until every member is promoted (bounded), then
        until every server is synced in a view of three; one more step clears the claim and
        names the writer."""
        for _ in range(rounds):
            await controller.step()
            await self.round()
            if len(self.roles) == 3 and set(self.roles.values()) == {"promoted"}:
                break
        else:
            raise AssertionError(f"not every member promoted after {rounds} rounds: {self.roles}")
        for server in self.lab.servers:
            await wait_for(server, lambda s: s.healthy and s.cluster_size == 3, timeout=180)
        await controller.step()

    async def _status(self, node: str, role: str) -> None:
        self.roles[node] = role
        record = StatusRecord((StatusInstance(role, "healthy", PRIMARY_DETAIL),))
        key = self.keys.status(node, "galera")
        await self.store.put(key, record.dump(), lease=self.leases[node])
