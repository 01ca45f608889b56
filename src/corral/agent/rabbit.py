"""The store side of a RabbitMQ member (shell): :class:`StoreRabbitLink` implements
:class:`corral.drivers.rabbitmq_member.RabbitLink` for the agent.

- ``report``: ``rabbitmq/<res>/report/<node>`` put under the node's lease (gone with the
  node; no lease, nothing written: the agent is not registered).
- ``running``: the run record ``rabbitmq/<res>/running/<node>`` (no lease), written only when
  the set differs from the one this link wrote last (each write is a new ``seq``: the newest
  names the last-running set).
- ``decision``: this node's decision in ``rabbitmq/<res>/plan``, read linearizably at the
  moment it acts (a malformed plan reads as no decision: never act on what cannot be read).
- ``claim``: the force-boot claim of one outage (``force-boot/<outage>``).
- ``running_peers``: the other nodes whose (leased) report says their broker serves.
"""

from __future__ import annotations

from collections.abc import Callable

from corral.agent.assigned import Registration
from corral.core.rabbit import Decision, ForceBootClaim, NodeReport
from corral.records.codec import Malformed
from corral.records.rabbit import ClaimRecord, RabbitKeys, ReportRecord, write_report, write_running
from corral.records.rabbit_plan import PlanRecord, plan_key
from corral.store import Keys, Store


class StoreRabbitLink:
    def __init__(
        self,
        store: Store,
        keys: Keys,
        resource: str,
        me: Callable[[], Registration],
        lease: Callable[[], int | None],
        wall: Callable[[], float],
    ) -> None:
        self.store, self.rkeys = store, RabbitKeys(keys, resource)
        self.me, self.lease, self.wall = me, lease, wall
        self._running: frozenset[str] | None = None

    async def report(self, report: NodeReport) -> None:
        lease = self.lease()
        if lease is not None:
            await write_report(self.store, self.rkeys, report, lease)

    async def running(self, identity: str, running: frozenset[str]) -> None:
        if running == self._running:
            return
        node = self.me().node
        await write_running(self.store, self.rkeys, node, identity, running, self.wall())
        self._running = running

    async def decision(self) -> tuple[Decision | None, int | None]:
        kv = await self.store.get(plan_key(self.rkeys))
        if kv is None:
            return None, None
        try:
            plan = PlanRecord.read(kv.value)
        except Malformed:
            return None, None
        return plan.decision(self.me().node), plan.outage

    async def claim(self, outage: int) -> ForceBootClaim | None:
        kv = await self.store.get(self.rkeys.claim(outage))
        if kv is None:
            return None
        got = ClaimRecord.parse(kv.value)
        return got.claim() if got is not None and got.outage == outage else None

    async def running_peers(self) -> frozenset[str]:
        me = self.me().node
        prefix = self.rkeys.prefix + b"report/"
        found = set()
        for kv in (await self.store.range(prefix)).kvs:
            record = ReportRecord.parse(kv.value)
            node = kv.key[len(prefix) :].decode(errors="replace")
            if record is not None and record.state == "running" and node != me:
                found.add(node)
        return frozenset(found)
