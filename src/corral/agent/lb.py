"""The load-balancer duty of an agent (shell): keep this node's HAProxy in step with the store.

Contract:
- ``sync()`` reads the registrations, fence records and instance status from the store, adds
  this agent's gossip view (a node gossip holds dead is out of rotation at once), computes every
  server's state (:mod:`corral.core.lbstate`) and applies it through HAProxy's runtime API, no
  reload. The configuration is rendered from the spec and applied (validated by ``haproxy -c``
  first; a refused one leaves the running HAProxy untouched) only when the spec changed.
  A refused configuration is reported once (DriverError) and not tried again until the spec
  renders differently; server states keep being applied meanwhile.
  What it applied is published as ``lb/<node>`` under the node's lease, so that an agent
  draining a backend knows when every HAProxy has taken it out.
- ``wait_drained()`` is the other side: it returns once every HAProxy that reports (``lb/*``)
  has the server out of rotation, or after its timeout (False).
Every call returns a decision string or raises StoreError/DriverError to the agent's loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from typing import Protocol

from corral.core.clock import Clock
from corral.core.lbstate import Desired, desired_servers, drained
from corral.drivers.base import DriverError
from corral.records import FencedRecord, LbRecord, StatusRecord
from corral.records.galera import WriterRecord
from corral.spec import Spec
from corral.store import Keys, Store


@dataclass(frozen=True)
class ClusterView:
    """What load balancers and the DNS responder need of the store, read in one go."""

    online: set[str]  # live, unfenced registrations
    health: dict[tuple[str, str], str]  # (resource, node) -> reported health
    live: dict[str, list[str]]  # vip-set -> members (IPs) held on online nodes
    writers: dict[str, str] = field(default_factory=dict)  # galera service -> its writer


class Balancer(Protocol):
    """What the duty needs of an HAProxy driver."""

    def render_config(self) -> str: ...

    async def apply_config(self, text: str) -> bool: ...

    async def set_servers(self, desired: Mapping[str, Mapping[str, str]]) -> object: ...


class LbDuty:
    def __init__(self, store: Store, keys: Keys, node: str, clock: Clock) -> None:
        self.store, self.keys, self.node, self.clock = store, keys, node, clock
        self._config: str | None = None
        self._applied: Desired | None = None
        self._published: bytes | None = None
        self._refused: str | None = None  # the last configuration haproxy -c refused

    def forget(self) -> None:
        """HAProxy (re)started: apply everything again (a refused configuration too: what
        made it fail may have been fixed)."""
        self._config = None
        self._applied = None
        self._refused = None

    def republish(self) -> None:
        """A new lease: write ``lb/<node>`` again at the next sync."""
        self._published = None

    async def view(self, spec: Spec) -> ClusterView:
        """Online nodes, reported health and live vip-set members, from the store."""
        nodes = await self.store.range(self.keys.prefix("nodes"))
        fenced = await self.store.range(self.keys.prefix("fenced"))
        status = await self.store.range(self.keys.prefix("status"))
        registration = {self.keys.relative(kv.key)[1]: kv.mod_revision for kv in nodes.kvs}
        for kv in fenced.kvs:
            record = FencedRecord.parse_kv(kv)
            node = self.keys.relative(kv.key)[1]
            if record is not None and record.revision == registration.get(node):
                registration.pop(node, None)
        online = set(registration) & set(spec.nodes)
        health: dict[tuple[str, str], str] = {}
        live: dict[str, list[str]] = {}
        for kv in status.kvs:
            parts = self.keys.relative(kv.key)
            reported = StatusRecord.parse_kv(kv)
            if len(parts) != 3 or reported is None:
                continue
            instances = reported.instances
            if instances:
                health[(parts[2], parts[1])] = instances[0].health
            if parts[1] in online:
                live.setdefault(parts[2], []).extend(i.item for i in instances if i.item)
        return ClusterView(online, health, live, await self._writers(spec))

    async def _writers(self, spec: Spec) -> dict[str, str]:
        """The writer record of every balanced galera service (one read each); a missing or
        unreadable one names no writer."""
        out = {}
        for name, res in spec.resources.items():
            if res.galera is None or res.balance is None:
                continue
            kv = await self.store.get(self.keys.galera_writer(name))
            record = WriterRecord.parse_kv(kv) if kv is not None else None
            if record is not None:
                out[name] = record.node
        return out

    async def sync(
        self,
        spec: Spec,
        balancer: Balancer,
        lease: int | None,
        lost: Set[str],
        view: ClusterView,
    ) -> str:
        """Apply the configuration for ``spec`` if it changed, then the server states."""
        said = []
        render = balancer.render_config()
        if render != self._config and render != self._refused:
            try:
                reloaded = await balancer.apply_config(render)
            except DriverError:
                self._refused = render  # said once; the running configuration stays
                raise
            self._config = render
            self._applied = None
            said.append("configuration reloaded" if reloaded else "configuration unchanged")
        desired = desired_servers(spec, view.online, view.health, lost, view.writers)
        if desired != self._applied:
            await balancer.set_servers(desired)
            self._applied = desired
            said.append("server states applied")
        value = LbRecord(desired).dump()
        if lease is not None and value != self._published:
            await self.store.put(self.keys.lb(self.node), value, lease=lease)
            self._published = value
        return "; ".join(said) or "load balancer in step"

    async def wait_drained(self, backend: str, server: str, timeout: float) -> bool:
        """True once every reporting HAProxy has ``server`` of ``backend`` out of rotation."""
        deadline = self.clock.now() + timeout
        while True:
            result = await self.store.range(self.keys.prefix("lb"))
            applied: dict[str, Mapping[str, Mapping[str, str]]] = {}
            for kv in result.kvs:
                record = LbRecord.parse_kv(kv)
                if record is not None:
                    applied[self.keys.relative(kv.key)[1]] = record.servers
            if drained(applied, backend, server, set(applied)):
                return True
            if self.clock.now() > deadline:
                return False
            await asyncio.sleep(0.02)
