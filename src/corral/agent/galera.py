"""The store side of a Galera member (shell): :class:`StoreGaleraLink` implements
:class:`corral.drivers.galera_member.GaleraLink` for the agent.

- ``report``: ``galera/<res>/report/<node>`` put under the node's lease (gone with the node;
  no lease, nothing written: the agent is not registered).
- ``claim``: the bootstrap claim, read linearizably at the moment of the promote, returned
  only when it names this node at its *current* registration
  (:func:`corral.records.galera.may_bootstrap`; rule 6: the claim is the assignment of the
  bootstrap, and a claim made for an earlier life of this node is not this agent's).
- ``holds_claim``: whether a claim naming this node exists at all (any registration), read
  linearizably: a bootstrap node stays held to its lease until it does not (rule 1g); a
  malformed claim counts as naming it.
- ``gone``: the nodes with a ``fenced/<node>`` record (written only once a fence succeeded)
  that are not registered, or registered still at the fenced registration: whose members a
  survivor evicts (rule 2). One range read of ``fenced/``; the registrations only when some
  node was fenced.
- ``primary``: the other nodes whose status record shows this resource promoted and not
  unhealthy (a member is reported promoted only once its mariadbd answered as part of the
  Primary component: :meth:`GaleraMember.promote`).
"""

from __future__ import annotations

from collections.abc import Callable

from corral.agent.assigned import Registration
from corral.core.galera.state import NodeState
from corral.records import FencedRecord, StatusRecord
from corral.records.codec import Malformed
from corral.records.galera import BootstrapClaim, ReportRecord, may_bootstrap
from corral.store import Keys, Store


class StoreGaleraLink:
    def __init__(
        self,
        store: Store,
        keys: Keys,
        resource: str,
        me: Callable[[], Registration],
        lease: Callable[[], int | None],
        wall: Callable[[], float],
    ) -> None:
        self.store, self.keys, self.resource = store, keys, resource
        self.me, self.lease, self.wall = me, lease, wall

    async def report(self, state: NodeState) -> None:
        lease = self.lease()
        if lease is None:
            return
        key = self.keys.galera_report(self.resource, self.me().node)
        await self.store.put(key, ReportRecord.from_state(state, self.wall()).dump(), lease=lease)

    async def claim(self) -> BootstrapClaim | None:
        me = self.me()
        kv = await self.store.get(self.keys.galera_bootstrap(self.resource))
        if kv is None or me.current is None:
            return None
        try:
            claim = BootstrapClaim.read(kv.value)
        except Malformed:
            return None  # never bootstrap on a record that cannot be read
        return claim if may_bootstrap(claim, me.node, me.current) else None

    async def holds_claim(self) -> bool:
        kv = await self.store.get(self.keys.galera_bootstrap(self.resource))
        if kv is None:
            return False
        try:
            return BootstrapClaim.read(kv.value).node == self.me().node
        except Malformed:
            return True  # unreadable: never let a bootstrap node off the lease on it

    async def gone(self) -> frozenset[str]:
        fenced = (await self.store.range(self.keys.prefix("fenced"))).kvs
        out = set()
        for kv in fenced:
            record = FencedRecord.parse_kv(kv)
            node = self.keys.relative(kv.key)[-1]
            if record is None or node == self.me().node:
                continue
            reg = await self.store.get(self.keys.node(node))
            if reg is None or reg.mod_revision == record.revision:
                out.add(node)
        return frozenset(out)

    async def primary(self) -> tuple[str, ...]:
        node = self.me().node
        found = []
        for kv in (await self.store.range(self.keys.prefix("status"))).kvs:
            parts = self.keys.relative(kv.key)
            if len(parts) != 3 or parts[2] != self.resource or parts[1] == node:
                continue
            record = StatusRecord.parse_kv(kv)
            if record is not None and any(
                i.role == "promoted" and i.health != "unhealthy" for i in record.instances
            ):
                found.append(parts[1])
        return tuple(found)
