"""The in-memory twin of :class:`~corral.net.transport.UdpTransport`.

:class:`MemoryNetwork` connects :class:`MemoryTransport` instances inside one event loop, with
per-link loss, a fixed delay and partitions, seeded. It runs the real shell (``GossipNode``,
codec, keyring) without sockets. The virtual-time simulator (:mod:`corral.sim`) is the same
idea one level lower: it delivers decoded packets to cores and needs no event loop.
"""

from __future__ import annotations

import asyncio
import random

from corral.net.transport import Receiver, Timer, TransportStats


class MemoryNetwork:
    """Addresses -> transports, and the conditions between them."""

    def __init__(self, seed: int = 0, delay: float = 0.0005, loss: float = 0.0) -> None:
        self.rng = random.Random(seed)
        self.delay = delay
        self.loss = loss
        self.blocked: set[tuple[str, str]] = set()
        """Directed links ``(src, dst)`` that drop everything."""
        self._nodes: dict[str, MemoryTransport] = {}
        self._next_port = 1

    def transport(self, host: str = "mem", port: int = 0) -> MemoryTransport:
        if port == 0:
            port, self._next_port = self._next_port, self._next_port + 1
        return MemoryTransport(self, f"{host}:{port}")

    def cut(self, a: str, b: str) -> None:
        """Drop everything between addresses ``a`` and ``b`` (both ways)."""
        self.blocked |= {(a, b), (b, a)}

    def heal(self) -> None:
        self.blocked.clear()

    def _register(self, t: MemoryTransport) -> None:
        if t.address in self._nodes:
            raise OSError(f"address in use: {t.address}")
        self._nodes[t.address] = t

    def _unregister(self, t: MemoryTransport) -> None:
        if self._nodes.get(t.address) is t:
            del self._nodes[t.address]

    def _deliver(self, src: str, dst: str, data: bytes, stream: bool) -> None:
        if (src, dst) in self.blocked or dst not in self._nodes:
            return
        if not stream and self.loss and self.rng.random() < self.loss:
            return
        asyncio.get_running_loop().call_later(self.delay, self._arrive, src, dst, data, stream)

    def _arrive(self, src: str, dst: str, data: bytes, stream: bool) -> None:
        node = self._nodes.get(dst)
        if node is not None and node.receiver is not None:
            node.stats.packets_in += 1
            node.stats.bytes_in += len(data)
            node.receiver(data, src, stream)


class MemoryTransport:
    """One endpoint on a :class:`MemoryNetwork`; same contract as ``UdpTransport``."""

    def __init__(self, network: MemoryNetwork, address: str) -> None:
        self.network = network
        self._address = address
        self.stats = TransportStats()
        self.receiver: Receiver | None = None
        self.threaded = False  # everything on the event loop

    @property
    def address(self) -> str:
        return self._address

    async def start(self, receiver: Receiver, timer: Timer | None = None) -> None:
        if timer is not None:
            raise ValueError("a timer needs a threaded transport")
        self.network._register(self)
        self.receiver = receiver

    def poke(self) -> None:
        pass  # not threaded: nothing to wake

    def send_packet(self, addr: str, data: bytes) -> None:
        if self.receiver is None:
            return
        self.stats.packets_out += 1
        self.stats.bytes_out += len(data)
        self.network._deliver(self._address, addr, data, False)

    def send_stream(self, addr: str, data: bytes) -> None:
        if self.receiver is None:
            return
        self.stats.streams_out += 1
        self.stats.bytes_out += len(data)
        self.network._deliver(self._address, addr, data, True)

    async def close(self) -> None:
        self.network._unregister(self)
        self.receiver = None
