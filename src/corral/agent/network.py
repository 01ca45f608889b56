"""The network duties of an agent beside its services (shell): HAProxy's driver and config,
and the DNS responder for vip-set names.

Contract:
- ``haproxy_driver()`` makes the HAProxy driver of a ``haproxy`` resource (it needs the whole
  spec, so :func:`corral.drivers.make_driver` does not make it).
- ``serve_dns()`` runs the responder on ``<node address>:<spec.dns.port>`` while this node may
  hold a vip-set with ``dns:``, answering with the members held on online nodes; the zone is
  rebuilt only when that set changes. A port that cannot be bound is an event, retried at the
  next call, never a crash. ``close_dns()`` stops it (idempotent).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence, Set
from pathlib import Path
from typing import TYPE_CHECKING

from corral.core.scheduler.model import Snapshot
from corral.core.scheduler.scores import Context
from corral.drivers.base import DriverError, NodeContext
from corral.spec import Resource, Spec

if TYPE_CHECKING:
    from corral.agent.events import EventLog
    from corral.agent.instances import LocalService
    from corral.agent.lb import LbDuty
    from corral.dns import DnsServer, Zone
    from corral.drivers.haproxy import HaproxyService

EventSink = Callable[[str, str, str], Awaitable[None]]


class NetworkDuties:
    def __init__(self, state_dir: Path) -> None:
        self.run_dir = state_dir / "haproxy"
        self._dns: DnsServer | None = None
        self._dns_key: tuple[str, int] | None = None
        self._zone: Zone | None = None
        self._live: dict[str, list[str]] | None = None
        self._spec: Spec | None = None
        self._dns_failed: str | None = None

    # --- HAProxy ------------------------------------------------------------------------

    def haproxy_driver(
        self, name: str, res: Resource, node: NodeContext, spec: Callable[[], Spec]
    ) -> HaproxyService:
        from corral.drivers.haproxy import HaproxyService

        return HaproxyService(name, res, node, spec, run_dir=self.run_dir)

    async def sync(
        self,
        spec: Spec,
        ctx: NodeContext,
        services: Iterable[LocalService],
        lb: LbDuty,
        lease: int | None,
        lost: Set[str],
        events: EventLog,
    ) -> None:
        """This node's HAProxy server states (if it runs a ``haproxy`` resource among
        ``services``; ``lost``: nodes gossip holds dead) and DNS zone, from one read of the
        store. A driver that refuses is an event, retried at the next call."""
        hap = next((s for s in services if _kind(spec, s.resource) == "haproxy"), None)
        dns_here = self.dns_names(spec, ctx.name)
        if not dns_here:
            await self.close_dns()
        if hap is None and not dns_here:
            return
        view = await lb.view(spec)
        if hap is not None and not hap.failed:
            from corral.drivers.haproxy import HaproxyService

            assert isinstance(hap.driver, HaproxyService)  # made by haproxy_driver
            try:
                events.decide(await lb.sync(spec, hap.driver, lease, lost, view))
            except DriverError as exc:
                await events.event("haproxy", f"load balancer not updated: {exc}", hap.resource)
        if dns_here:
            await self.serve_dns(spec, ctx, view.live, events.event)

    # --- DNS ------------------------------------------------------------------------------

    @staticmethod
    def dns_names(spec: Spec, node: str) -> list[str]:
        """The vip-set names this node answers for (it may hold their VIPs)."""
        ctx = Context(spec, Snapshot())
        return [
            res.dns
            for name, res in spec.resources.items()
            if res.vip_set is not None and res.dns and node in ctx.static_set(name)
        ]

    async def serve_dns(
        self,
        spec: Spec,
        node: NodeContext,
        live: Mapping[str, Sequence[str]],
        event: EventSink,
    ) -> None:
        from corral.dns import DnsServer, zone_for

        wanted = {k: list(v) for k, v in live.items()}
        if wanted != self._live or self._zone is None or spec is not self._spec:
            self._zone = zone_for(spec, wanted)  # names come from the spec, addresses live
            self._live, self._spec = wanted, spec
        key = (node.address, spec.dns.port)
        if self._dns is not None and self._dns_key != key:
            await self.close_dns()
        if self._dns is None:
            server = DnsServer(self._current_zone, node.address, spec.dns.port)
            try:
                await server.start()
            except OSError as exc:
                text = f"cannot answer DNS on {node.address}:{spec.dns.port}: {exc}"
                if text != self._dns_failed:
                    await event("dns", text, "")
                    self._dns_failed = text
                return
            self._dns, self._dns_key, self._dns_failed = server, key, None

    def _current_zone(self) -> Zone:
        assert self._zone is not None  # built before the server starts
        return self._zone

    async def close_dns(self) -> None:
        if self._dns is not None:
            await self._dns.close()
            self._dns = None
            self._dns_key = None


def _kind(spec: Spec, resource: str) -> str:
    res = spec.resources.get(resource)
    return res.kind if res is not None else ""
