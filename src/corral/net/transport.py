"""Moving bytes: the :class:`Transport` interface and its asyncio UDP + TCP implementation.

A transport knows nothing of the protocol: it sends opaque datagrams (best effort) and stream
frames (push-pull, over TCP), and hands whatever arrives to one receiver callback. Sends never
raise on network trouble (an unreachable peer is the protocol's business, not an exception);
they count the failure instead. The in-memory twin is :mod:`corral.net.memory`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, Protocol

from corral.net.bind import bind_socket_and_tcp, bind_udp_and_tcp
from corral.net.pump import PacketPump

Receiver = Callable[[bytes, str, bool], None]
"""``receiver(data, source_address, is_stream)``."""


@dataclass(frozen=True, slots=True)
class Timer:
    """The owner's timer on a threaded transport: ``on_due()`` runs on its thread once
    ``due()`` has come on the owner's clock ``now`` (see :class:`~corral.net.pump.PacketPump`)."""

    due: Callable[[], float]
    on_due: Callable[[], None]
    now: Callable[[], float] = time.monotonic


_LEN = struct.Struct(">I")


@dataclass(slots=True)
class TransportStats:
    packets_out: int = 0
    bytes_out: int = 0
    packets_in: int = 0
    bytes_in: int = 0
    streams_out: int = 0
    streams_in: int = 0
    send_errors: int = 0
    stream_errors: int = 0
    rejected_streams: int = 0
    """Connections refused (too many at once) or frames over the size limit."""
    truncated_streams: int = 0
    """Connections that ended inside a frame (its length or its body cut short): dropped."""

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class Transport(Protocol):
    """What :class:`corral.net.node.GossipNode` needs from the network."""

    stats: TransportStats
    threaded: bool
    """True: datagrams reach the receiver on the transport's own thread, which also runs the
    owner's timer (``start(receiver, timer)``); stream frames still arrive on the event loop.
    False: everything on the event loop, and ``timer`` must be None."""

    @property
    def address(self) -> str:
        """``host:port`` this transport receives on (valid after :meth:`start`)."""
        ...

    async def start(self, receiver: Receiver, timer: Timer | None = None) -> None: ...

    def poke(self) -> None:
        """A threaded transport reads its timer's ``due()`` again now (it moved earlier)."""
        ...

    def send_packet(self, addr: str, data: bytes) -> None:
        """Send one datagram, best effort; returns at once."""
        ...

    def send_stream(self, addr: str, data: bytes) -> None:
        """Deliver one frame over a stream in the background; returns at once."""
        ...

    async def close(self) -> None:
        """Stop receiving and abandon pending stream sends. Idempotent."""
        ...


def split_address(addr: str) -> tuple[str, int]:
    """``"127.0.0.1:7946"`` or ``"[::1]:7946"`` -> ``(host, port)``; ``ValueError`` if bad."""
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"not host:port: {addr!r}")
    return host.strip("[]"), int(port)


def join_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, owner: UdpTransport) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        owner = self.owner
        owner.stats.packets_in += 1
        owner.stats.bytes_in += len(data)
        if owner.receiver is not None:
            owner.receiver(data, join_address(str(addr[0]), int(addr[1])), False)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a dead peer lands here on Linux: expected, not fatal.
        self.owner.stats.send_errors += 1


class UdpTransport:
    """UDP for datagrams and TCP for stream frames, both on ``host:port``.

    With ``port=0`` the OS picks a UDP port and TCP binds the same number (retried a few times
    if that TCP port is taken). Stream frames are ``length:4 | data``; an incoming connection
    delivers at most ``max_frames`` frames within ``stream_timeout`` seconds.

    ``threaded=True``: the UDP socket is read by a :class:`~corral.net.pump.PacketPump` thread
    that also runs the owner's timer, so datagrams do not wake the event loop (see pump for
    the measured reason). ``send_packet`` may then be called from any thread; ``send_stream``
    only on the event loop.
    """

    def __init__(
        self,
        host: str,
        port: int,
        max_stream: int = 32 * 1024 * 1024,
        stream_timeout: float = 5.0,
        max_connections: int = 64,
        max_frames: int = 16,
        threaded: bool = False,
    ) -> None:
        self.host = host
        self.threaded = threaded
        self.port = port
        self.max_stream = max_stream
        self.stream_timeout = stream_timeout
        self.max_connections = max_connections
        self.max_frames = max_frames
        self.stats = TransportStats()
        self.receiver: Receiver | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._sock: socket.socket | None = None  # threaded: the UDP socket the pump reads
        self._pump: PacketPump | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._open_conns = 0

    @property
    def address(self) -> str:
        return join_address(self.host, self.port)

    async def start(self, receiver: Receiver, timer: Timer | None = None) -> None:
        """Bind and start receiving. ``timer`` only with ``threaded`` (see :class:`Transport`)."""
        if timer is not None and not self.threaded:
            raise ValueError("a timer needs a threaded transport")
        self.receiver = receiver
        if not self.threaded:
            self._udp, self._server, self.port = await bind_udp_and_tcp(
                self.host, self.port, lambda: _Datagrams(self), self._serve
            )
            return
        self._sock, self._server, self.port = await bind_socket_and_tcp(
            self.host, self.port, self._serve
        )
        timer = timer or Timer(lambda: float("inf"), lambda: None)
        self._pump = PacketPump(
            self._sock,
            self._datagram,
            timer.on_due,
            timer.due,
            on_error=self._receive_error,
            now=timer.now,
            name=f"udp-{self.port}",
        )
        self._pump.start()

    def poke(self) -> None:
        if self._pump is not None:
            self._pump.poke()

    def _datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        self.stats.packets_in += 1
        self.stats.bytes_in += len(data)
        if self.receiver is not None:
            self.receiver(data, join_address(addr[0], addr[1]), False)

    def _receive_error(self, _exc: OSError) -> None:
        # ICMP port unreachable from a dead peer surfaces on receive on Linux: expected.
        self.stats.send_errors += 1

    def send_packet(self, addr: str, data: bytes) -> None:
        try:
            target = split_address(addr)
            if self._udp is not None:
                self._udp.sendto(data, target)
            elif self._sock is not None:
                self._sock.sendto(data, target)
            else:
                return
        except (OSError, ValueError):  # BlockingIOError (a full send buffer) is an OSError
            self.stats.send_errors += 1
            return
        self.stats.packets_out += 1
        self.stats.bytes_out += len(data)

    def send_stream(self, addr: str, data: bytes) -> None:
        if self._server is None:
            return
        task = asyncio.get_running_loop().create_task(self._push(addr, data))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _push(self, addr: str, data: bytes) -> None:
        writer = None
        try:
            host, port = split_address(addr)
            async with asyncio.timeout(self.stream_timeout):
                _, writer = await asyncio.open_connection(host, port)
                writer.write(_LEN.pack(len(data)) + data)
                await writer.drain()
            self.stats.streams_out += 1
            self.stats.bytes_out += len(data) + _LEN.size
        except (OSError, ValueError, TimeoutError):
            self.stats.stream_errors += 1
        finally:
            if writer is not None:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        source = join_address(str(peer[0]), int(peer[1])) if peer else "?"
        if self._open_conns >= self.max_connections:
            self.stats.rejected_streams += 1
            writer.close()
            return
        self._open_conns += 1
        inside = False  # reading a frame's body: an end here cuts the frame
        try:
            async with asyncio.timeout(self.stream_timeout):
                for _ in range(self.max_frames):
                    inside = False
                    head = await reader.readexactly(_LEN.size)
                    (size,) = _LEN.unpack(head)
                    if size > self.max_stream:
                        self.stats.rejected_streams += 1
                        return
                    inside = True
                    data = await reader.readexactly(size)
                    self.stats.streams_in += 1
                    self.stats.bytes_in += size + _LEN.size
                    if self.receiver is not None:
                        self.receiver(data, source, True)
        except asyncio.IncompleteReadError as exc:
            # A close between frames is the normal end (after one frame); inside one, the
            # frame is lost: counted.
            if inside or exc.partial:
                self.stats.truncated_streams += 1
        except (OSError, TimeoutError):
            pass  # the peer died or dawdled
        finally:
            self._open_conns -= 1
            writer.close()

    async def close(self) -> None:
        if self._pump is not None:
            pump, self._pump = self._pump, None
            pump.stop(timeout=1.0)  # the thread wakes at once (a poke): no executor for this
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._server is not None:
            self._server.close()
            server, self._server = self._server, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self.receiver = None


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free for both UDP and TCP right now (tests and benchmarks)."""
    for _ in range(64):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind((host, 0))
            port = int(u.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind((host, port))
                except OSError:
                    continue
                return port
    raise OSError("no free port")
