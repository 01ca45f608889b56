"""``GossipNode``: the asyncio shell that runs one membership core on a real transport.

It owns no protocol logic. It opens incoming bytes (:class:`~corral.net.wire.Wire`), hands the
packets to the core with ``now`` from its clock, seals and sends what the core asks for, keeps
one event-loop timer at the core's next deadline, and tells subscribers about membership changes.
Everything runs on the event loop thread, so the core is never entered concurrently.

The agent embeds it::

    node = GossipNode.udp("ctl1", "198.18.0.11:7946", keyring, profile("lan"),
                          seeds=["198.18.0.12:7946"], meta=NodeMeta(roles=("controller",)))
    await node.start()
    async for change in node.changes():   # or node.subscribe(callback)
        ...
    node.members()                         # [MemberStatus(...), ...]
    await node.stop()                      # graceful leave
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from corral.core.clock import Clock, MonotonicClock, wall_grid
from corral.core.membership import (
    NO_META,
    Effect,
    LeaveDone,
    MemberChanged,
    Membership,
    MembershipConfig,
    NodeMeta,
    Send,
)
from corral.core.membership.messages import meta_size
from corral.net.keyring import Keyring
from corral.net.transport import Transport, UdpTransport, split_address
from corral.net.wire import Wire

log = logging.getLogger(__name__)

Subscriber = Callable[[MemberChanged], None]
MAX_META = 512
"""Bytes (estimated, encoded) of a member's metadata, so every alive claim fits a packet."""


@dataclass(frozen=True, slots=True)
class MemberStatus:
    """One row of ``corral members``: what this node believes about a member."""

    name: str
    addr: str
    state: str
    """``alive``, ``suspect``, ``dead`` or ``left``."""
    incarnation: int
    meta: NodeMeta
    last_seen: float | None
    """Seconds since a packet from it arrived (``None``: never, or this node itself)."""
    state_age: float
    """Seconds since this node saw it enter ``state``."""
    is_self: bool


class GossipNode:
    """One gossip member over a :class:`~corral.net.transport.Transport`."""

    def __init__(
        self,
        name: str,
        transport: Transport,
        keyring: Keyring,
        config: MembershipConfig,
        seeds: Sequence[str] = (),
        meta: NodeMeta = NO_META,
        advertise: str | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        wall: Callable[[], float] = time.time,
        aligned: bool = True,
    ) -> None:
        """``aligned``: protocol periods end on whole multiples of the probe interval of the
        wall clock (:func:`~corral.core.clock.wall_grid`), so members whose clocks agree probe
        in the same instant and wake each other less; ``False``: a random phase."""
        if meta_size(meta) > MAX_META:
            raise ValueError(f"node metadata over {MAX_META} bytes")
        self.name = name
        self.transport = transport
        self.config = config
        self.seeds = tuple(seeds)
        self.wire = Wire(name, keyring, wall=wall)
        self._meta = meta
        self._advertise = advertise
        self._clock = clock or MonotonicClock()
        self._rng = rng or random.Random()
        self._aligned = aligned
        self._wall = wall
        self._core: Membership | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self._subscribers: list[Subscriber] = []
        self._left = asyncio.Event()
        self._joined = asyncio.Event()
        self._running = False
        self.send_failures = 0

    @classmethod
    def udp(
        cls, name: str, bind: str, keyring: Keyring, config: MembershipConfig, **kw: Any
    ) -> GossipNode:
        """A node on a real UDP/TCP socket pair bound to ``bind`` (``host:port``)."""
        host, port = split_address(bind)
        return cls(name, UdpTransport(host, port), keyring, config, **kw)

    # ---------------------------------------------------------------- lifecycle

    @property
    def core(self) -> Membership:
        if self._core is None:
            raise RuntimeError("GossipNode not started")
        return self._core

    @property
    def address(self) -> str:
        """The address other members use for us (advertised, else the bound one)."""
        return self._advertise or self.transport.address

    @property
    def joined(self) -> bool:
        return self._core is not None and self._core.joined

    async def start(self) -> None:
        """Bind, then join through the seeds (returns before the join completes: see
        :meth:`wait_joined`). Raises ``OSError`` if the address cannot be bound."""
        await self.transport.start(self._on_receive)
        now = self._clock.now()
        phase = None
        if self._aligned:
            phase = wall_grid(self._clock, self.config.probe_interval, self._wall()).phase
        self._core = Membership(
            self.name, self.address, self.config, self._rng, now, self._meta, phase=phase
        )
        self._running = True
        self._apply(self._core.join(self.seeds, now))

    async def wait_joined(self) -> None:
        """Wait until a seed answered (at once without seeds). Bound it with
        ``asyncio.timeout``: with unreachable seeds it waits forever (the core keeps retrying)."""
        await self._joined.wait()

    async def stop(self, leave: bool = True, grace: float = 2.0) -> None:
        """Leave gracefully (announce it, wait up to ``grace`` seconds for the announcement to
        go out), then close. ``leave=False`` closes at once: to peers it looks like a crash."""
        if not self._running:
            return
        if leave and self._core is not None:
            self._apply(self._core.leave(self._clock.now()))
            try:
                await asyncio.wait_for(self._left.wait(), grace)
            except TimeoutError:
                log.warning("%s: leave not confirmed within %.1fs", self.name, grace)
        self._running = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self.transport.close()

    # ---------------------------------------------------------------- queries

    def members(self) -> list[MemberStatus]:
        """Every member this node knows, itself first."""
        core = self.core
        now = self._clock.now()
        out = []
        for m in core.members():
            seen = core.last_seen(m.name)
            out.append(
                MemberStatus(
                    m.name,
                    m.addr,
                    m.state.label,
                    m.incarnation,
                    m.meta,
                    None if seen is None else now - seen,
                    now - m.since,
                    m.name == self.name,
                )
            )
        return out

    def stats(self) -> dict[str, dict[str, int]]:
        """Counters: the protocol's, dropped packets by reason, and the transport's."""
        return {
            "protocol": self.core.stats.as_dict(),
            "dropped": self.wire.drops.as_dict(),
            "transport": self.transport.stats.as_dict(),
        }

    # ---------------------------------------------------------------- change notifications

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback`` on every membership change (on the event loop; it must not block).
        Returns a function that unsubscribes."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    async def changes(self, max_queue: int = 10_000) -> AsyncIterator[MemberChanged]:
        """Membership changes as an async iterator. If the consumer falls ``max_queue``
        changes behind, the oldest are dropped (the current table is in :meth:`members`)."""
        queue: asyncio.Queue[MemberChanged] = asyncio.Queue()

        def push(change: MemberChanged) -> None:
            if queue.qsize() >= max_queue:
                queue.get_nowait()
            queue.put_nowait(change)

        unsubscribe = self.subscribe(push)
        try:
            while True:
                yield await queue.get()
        finally:
            unsubscribe()

    def update_meta(self, meta: NodeMeta) -> None:
        """Publish new metadata (roles, site, API address) to the cluster."""
        if meta_size(meta) > MAX_META:
            raise ValueError(f"node metadata over {MAX_META} bytes")
        self._apply(self.core.update_meta(meta, self._clock.now()))

    # ---------------------------------------------------------------- the loop

    def _on_receive(self, data: bytes, src: str, stream: bool) -> None:
        if not self._running or self._core is None:
            return
        packet = self.wire.open(data, stream)
        if packet is None:
            return
        self._apply(self._core.handle(packet, src, self._clock.now()))

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = float("inf")
        if self._running and self._core is not None:
            self._apply(self._core.tick(self._clock.now()))

    def _apply(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Send):
                self._send(effect)
            elif isinstance(effect, MemberChanged):
                for callback in list(self._subscribers):
                    try:
                        callback(effect)
                    except Exception:  # a subscriber's bug must not stop the protocol
                        log.exception("%s: membership subscriber failed", self.name)
            elif isinstance(effect, LeaveDone):
                self._left.set()
        if self._core is not None and self._core.joined:
            self._joined.set()
        self._reschedule()

    def _send(self, send: Send) -> None:
        try:
            data = self.wire.seal(send.packet.messages, stream=send.reliable)
        except ValueError:
            self.send_failures += 1
            log.exception("%s: cannot seal a packet for %s", self.name, send.addr)
            return
        if send.reliable:
            self.transport.send_stream(send.addr, data)
        else:
            self.transport.send_packet(send.addr, data)

    def _reschedule(self) -> None:
        if not self._running or self._core is None:
            return
        deadline = self._core.next_deadline()
        if deadline == self._timer_at:
            return
        # Re-arm even when the deadline moved later (a probe was acked before its timeout):
        # a cancelled asyncio timer costs nothing, a needless wake-up costs a loop iteration.
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline == float("inf"):
            return
        delay = max(0.0, deadline - self._clock.now())
        self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)
