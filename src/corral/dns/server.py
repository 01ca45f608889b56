"""The asyncio shell around :func:`corral.dns.zone.answer`: UDP and TCP on one port.

Every message asks ``zone_provider()`` for the zone of the moment, so a change of the live VIPs
shows in the very next answer (no cache here; the TTL of 1 s bounds the clients' caches). The
provider must be cheap: return a :class:`Zone` built when the live set changed (building one
costs ~0.3 ms, answering ~0.2 ms), not one built per call.
Nothing a client sends can raise out of the server: garbage is dropped and counted, and a
failure of our own (the provider raised) answers SERVFAIL, so clients fail over to another
LB node at once instead of waiting out a timeout.

TCP (RFC 7766): messages are ``length:2 | message``, several per connection, answered in
order; a connection closes after ``idle_timeout`` seconds without a complete message, on a
message we drop, or when ``max_connections`` are already open (refused at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, cast

import dns.rcode

from corral.dns.zone import Transport, Zone, answer, error_reply
from corral.net.bind import bind_udp_and_tcp

_LEN = struct.Struct(">H")
HEADER_SIZE = 12


@dataclass(slots=True)
class DnsStats:
    """Counters since start. ``queries`` = ``answers`` + ``drops`` (every message received is
    either answered or dropped); ``rcodes`` counts the answers by rcode text (``"NOERROR"``)."""

    queries: int = 0
    answers: int = 0
    drops: int = 0
    """Messages not answered: no readable header, a response (QR set), or a send failure."""
    malformed: int = 0
    """Malformed messages: too short for a header (dropped, also in ``drops``), or answered
    FORMERR (unparsable, or not one question; also in ``answers``)."""
    errors: int = 0
    """Our own failures (the zone provider raised), answered SERVFAIL."""
    truncated: int = 0
    tcp_connections: int = 0
    rejected_connections: int = 0
    rcodes: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, owner: DnsServer) -> None:
        self.owner = owner
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A datagram endpoint's transport; asyncio's selector class does not subclass
        # DatagramTransport, so isinstance() cannot say so.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        owner = self.owner
        reply = owner.respond(data, "udp")
        if reply is None:
            return
        if self.transport is None:
            owner.stats.drops += 1
            return
        try:
            self.transport.sendto(reply, addr)
        except OSError:
            owner.stats.drops += 1
        else:
            owner.count_answer(reply)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a client that went away: nothing to do, nothing to count
        # against the client's next query.
        pass


class DnsServer:
    """Answers DNS queries on UDP and TCP ``host:port`` from ``zone_provider()``'s zone.

    With ``port=0`` the OS picks a UDP port and TCP binds the same number (retried a few times
    when that TCP port is taken); :attr:`port` holds it after :meth:`start`.
    """

    def __init__(
        self,
        zone_provider: Callable[[], Zone],
        host: str,
        port: int,
        idle_timeout: float = 10.0,
        max_connections: int = 64,
    ) -> None:
        self.zone_provider = zone_provider
        self.host = host
        self.port = port
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.stats = DnsStats()
        self._rotate = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        """Bind UDP and TCP. Raises ``OSError`` if the port cannot be bound."""
        self._udp, self._server, self.port = await bind_udp_and_tcp(
            self.host, self.port, lambda: _Datagrams(self), self._serve
        )

    async def close(self) -> None:
        """Stop answering, close every TCP connection. Idempotent."""
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._server is not None:
            self._server.close()
            for task in list(self._conns):
                task.cancel()
            if self._conns:
                await asyncio.gather(*self._conns, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    def respond(self, data: bytes, transport: Transport) -> bytes | None:
        """The reply to one received message, or ``None`` to drop it (counted). Never raises.
        The caller sends the reply and then counts it with :meth:`count_answer`, or counts a
        failed send as a drop."""
        self.stats.queries += 1
        self._rotate += 1
        try:
            reply = answer(data, self.zone_provider(), self._rotate, transport)
        except Exception:
            # The provider (or a bug of ours) failed: SERVFAIL tells the client to ask another
            # server now, where silence would cost it a timeout.
            self.stats.errors += 1
            reply = error_reply(data, dns.rcode.SERVFAIL)
        if len(data) < HEADER_SIZE or (reply is not None and reply[3] & 0xF == dns.rcode.FORMERR):
            self.stats.malformed += 1
        if reply is None:
            self.stats.drops += 1
        return reply

    def count_answer(self, reply: bytes) -> None:
        self.stats.answers += 1
        rcode = dns.rcode.to_text(dns.rcode.Rcode(reply[3] & 0xF))
        self.stats.rcodes[rcode] = self.stats.rcodes.get(rcode, 0) + 1
        if reply[2] & 0x02:
            self.stats.truncated += 1

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if len(self._conns) >= self.max_connections or task is None:
            self.stats.rejected_connections += 1
            writer.close()
            return
        self._conns.add(task)
        self.stats.tcp_connections += 1
        try:
            while True:
                async with asyncio.timeout(self.idle_timeout):
                    (size,) = _LEN.unpack(await reader.readexactly(_LEN.size))
                    data = await reader.readexactly(size)
                reply = self.respond(data, "tcp")
                if reply is None:
                    return  # garbage on a stream: the framing cannot be trusted any more
                try:
                    writer.write(_LEN.pack(len(reply)) + reply)
                    await writer.drain()
                except OSError:
                    self.stats.drops += 1
                    return
                self.count_answer(reply)
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            return  # the client went away, or idled out: normal ends of a connection
        finally:
            self._conns.discard(task)
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()
