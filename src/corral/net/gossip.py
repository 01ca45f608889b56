"""``GossipNode``: the asyncio shell that runs one membership core on a real transport.

It owns no protocol logic. It opens incoming bytes (:class:`~corral.net.wire.Wire`), hands the
packets to the core with ``now`` from its clock, seals and sends what the core asks for, keeps
one timer at the core's next deadline, and tells subscribers about membership changes.

Threads: on a transport that is not ``threaded`` (the in-memory twin, a plain
:class:`~corral.net.transport.UdpTransport`) everything runs on the event loop. On a threaded
one (``GossipNode.udp`` makes one by default) datagrams and the protocol timer run on the
transport's pump thread, so the protocol's 25-30 packets and timers a second never wake the
event loop, and a busy event loop cannot delay an ack into a false suspicion. Either way one lock
serialises every entry into the core and the wire; subscribers, the join and leave events and
stream sends always run on the event loop (handed over with ``call_soon_threadsafe``, in order).

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
import contextlib
import logging
import random
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from corral.clocks import MonotonicClock
from corral.core.clock import Clock, wall_grid
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
from corral.net.transport import Timer, Transport, UdpTransport, split_address
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
        self._timer_at = float("inf")  # the pump thread reads it (a float: atomic)
        self._lock = threading.RLock()  # every entry into the core and the wire
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._subscribers: list[Subscriber] = []
        self._left = asyncio.Event()
        self._joined = asyncio.Event()
        self._running = False
        self.send_failures = 0

    @classmethod
    def udp(
        cls,
        name: str,
        bind: str,
        keyring: Keyring,
        config: MembershipConfig,
        *,
        threaded: bool = True,
        **kw: Any,
    ) -> GossipNode:
        """A node on a real UDP/TCP socket pair bound to ``bind`` (``host:port``); ``threaded``:
        datagrams and the protocol timer on the transport's thread (see the module docstring)."""
        host, port = split_address(bind)
        return cls(name, UdpTransport(host, port, threaded=threaded), keyring, config, **kw)

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
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        timer = (
            Timer(self._due, self._on_timer, self._clock.now) if self.transport.threaded else None
        )
        await self.transport.start(self._on_receive, timer)
        with self._lock:
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
            with self._lock:
                self._apply(self._core.leave(self._clock.now()))
            try:
                await asyncio.wait_for(self._left.wait(), grace)
            except TimeoutError:
                log.warning("%s: leave not confirmed within %.1fs", self.name, grace)
        with self._lock:
            self._running = False
            self._timer_at = float("inf")
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        await self.transport.close()

    # ---------------------------------------------------------------- queries

    def members(self) -> list[MemberStatus]:
        """Every member this node knows, itself first."""
        with self._lock:
            return self._members()

    def _members(self) -> list[MemberStatus]:
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
        with self._lock:
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

    def set_keys(self, keys: Sequence[bytes]) -> None:
        """Seal with ``keys[0]`` and open with any of ``keys`` from the next packet on, without
        a restart (a key rotation, :mod:`corral.core.keyrot`). Under the lock: the pump
        thread never seals or opens with half a keyring."""
        with self._lock:
            self.wire.keyring.replace(list(keys))

    def update_meta(self, meta: NodeMeta) -> None:
        """Publish new metadata (roles, site, API address) to the cluster."""
        if meta_size(meta) > MAX_META:
            raise ValueError(f"node metadata over {MAX_META} bytes")
        with self._lock:
            self._apply(self.core.update_meta(meta, self._clock.now()))

    # ---------------------------------------------------------------- the loop

    def _on_receive(self, data: bytes, src: str, stream: bool) -> None:
        with self._lock:
            if not self._running or self._core is None:
                return
            packet = self.wire.open(data, stream)
            if packet is None:
                return
            self._apply(self._core.handle(packet, src, self._clock.now()))

    def _due(self) -> float:
        """The core's next deadline (read by the pump thread without the lock)."""
        return self._timer_at

    def _on_timer(self) -> None:
        with self._lock:
            self._timer = None
            self._timer_at = float("inf")
            if self._running and self._core is not None:
                self._apply(self._core.tick(self._clock.now()))

    def _apply(self, effects: list[Effect]) -> None:
        """Carry out the core's effects (the caller holds the lock)."""
        for effect in effects:
            if isinstance(effect, Send):
                self._send(effect)
            elif isinstance(effect, MemberChanged):
                self._on_loop(self._notify, effect)
            elif isinstance(effect, LeaveDone):
                self._on_loop(self._left.set)
        if self._core is not None and self._core.joined and not self._joined.is_set():
            self._on_loop(self._joined.set)
        self._reschedule()

    def _notify(self, change: MemberChanged) -> None:
        for callback in list(self._subscribers):
            try:
                callback(change)
            except Exception:  # a subscriber's bug must not stop the protocol
                log.exception("%s: membership subscriber failed", self.name)

    def _on_loop(self, fn: Callable[..., object], *args: Any) -> None:
        """Run ``fn(*args)`` on the event loop: now when called there, else queued in order."""
        if threading.get_ident() == self._loop_thread or self._loop is None:
            fn(*args)
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: shutting down
            self._loop.call_soon_threadsafe(fn, *args)

    def _send(self, send: Send) -> None:
        try:
            data = self.wire.seal(send.packet.messages, stream=send.reliable)
        except ValueError:
            self.send_failures += 1
            log.exception("%s: cannot seal a packet for %s", self.name, send.addr)
            return
        if send.reliable:
            self._on_loop(self.transport.send_stream, send.addr, data)
        else:
            self.transport.send_packet(send.addr, data)

    def _reschedule(self) -> None:
        if not self._running or self._core is None:
            return
        deadline = self._core.next_deadline()
        if deadline == self._timer_at:
            return
        if self.transport.threaded:
            earlier = deadline < self._timer_at
            self._timer_at = deadline
            if earlier and threading.get_ident() == self._loop_thread:
                self.transport.poke()  # the pump reads the deadline again after its own calls
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
