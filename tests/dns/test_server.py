"""The server on real sockets (127.0.0.1, a free port): dnspython's dns.query, and dig."""

from __future__ import annotations

import asyncio
import shutil
import socket
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from corral.dns import DnsServer, Zone

from .helpers import addresses, rcode

VIPS = ["198.18.0.100", "198.18.0.101", "198.18.0.102"]
MANY = [f"198.18.{i // 250}.{i % 250 + 1}" for i in range(100)]


@dataclass
class Holder:
    """The provider's current zone; tests swap it as the live VIP set changes."""

    zone: Zone
    fail: bool = False

    def __call__(self) -> Zone:
        if self.fail:
            raise RuntimeError("store unavailable")
        return self.zone


@dataclass
class Running:
    server: DnsServer
    holder: Holder

    @property
    def port(self) -> int:
        return self.server.port


async def start(holder: Holder, **kw: float) -> DnsServer:
    server = DnsServer(holder, "127.0.0.1", 0, **kw)  # type: ignore[arg-type]
    await server.start()
    return server


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    holder = Holder(Zone({"api.cloud1.example": VIPS, "big.cloud1.example": MANY}))
    server = await start(holder)
    try:
        yield Running(server, holder)
    finally:
        await server.close()


async def udp(port: int, name: str, rdtype: str = "A", **kw: object) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, **kw)  # type: ignore[arg-type]
    # dns.query is blocking and the server runs on this loop: ask from a thread.
    return await asyncio.to_thread(dns.query.udp, query, "127.0.0.1", timeout=3, port=port)


async def tcp(port: int, name: str, rdtype: str = "A") -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    return await asyncio.to_thread(dns.query.tcp, query, "127.0.0.1", timeout=3, port=port)


def send_raw_udp(port: int, data: bytes, wait: float = 0.3) -> bytes | None:
    """Send one datagram; the reply, or None when none came within ``wait`` seconds."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(wait)
        sock.sendto(data, ("127.0.0.1", port))
        try:
            return sock.recv(65535)
        except TimeoutError:
            return None


# --- dnspython over UDP and TCP ---------------------------------------------------------------


async def test_udp_and_tcp_answer_the_live_vips_round_robin(running: Running) -> None:
    firsts = set()
    for _ in range(3):
        response = await udp(running.port, "api.cloud1.example")
        assert rcode(response) == "NOERROR" and response.flags & dns.flags.AA
        assert sorted(addresses(response)) == VIPS
        firsts.add(addresses(response)[0])
    assert firsts == set(VIPS)  # successive clients start at different VIPs
    over_tcp = await tcp(running.port, "api.cloud1.example")
    assert sorted(addresses(over_tcp)) == VIPS
    assert rcode(await tcp(running.port, "nope.cloud1.example")) == "NXDOMAIN"
    assert rcode(await udp(running.port, "example.org")) == "REFUSED"
    stats = running.server.stats
    assert stats.queries == stats.answers == 6 and stats.drops == 0
    assert stats.rcodes == {"NOERROR": 4, "NXDOMAIN": 1, "REFUSED": 1}
    assert stats.tcp_connections == 2


async def test_a_big_answer_is_truncated_over_udp_and_whole_over_tcp(running: Running) -> None:
    truncated = await udp(running.port, "big.cloud1.example")
    assert truncated.flags & dns.flags.TC and truncated.answer == []
    assert running.server.stats.truncated == 1
    query = dns.message.make_query("big.cloud1.example", "A")
    response, used_tcp = await asyncio.to_thread(
        dns.query.udp_with_fallback, query, "127.0.0.1", timeout=3, port=running.port
    )
    assert used_tcp and addresses(response) != [] and sorted(addresses(response)) == sorted(MANY)
    with_edns = await udp(running.port, "api.cloud1.example", use_edns=0, payload=4096)
    assert with_edns.edns == 0 and sorted(addresses(with_edns)) == VIPS


async def test_a_new_zone_changes_the_very_next_answer(running: Running) -> None:
    assert sorted(addresses(await udp(running.port, "api.cloud1.example"))) == VIPS
    running.holder.zone = Zone({"api.cloud1.example": VIPS[1:]})  # .100 went down
    assert sorted(addresses(await udp(running.port, "api.cloud1.example"))) == VIPS[1:]
    assert sorted(addresses(await tcp(running.port, "api.cloud1.example"))) == VIPS[1:]
    running.holder.zone = Zone({"api.cloud1.example": []})  # all down: NODATA, not NXDOMAIN
    response = await udp(running.port, "api.cloud1.example")
    assert rcode(response) == "NOERROR" and response.answer == []
    running.holder.zone = Zone({"api.cloud1.example": VIPS})
    assert sorted(addresses(await udp(running.port, "api.cloud1.example"))) == VIPS


async def test_a_failing_provider_answers_servfail_and_recovers(running: Running) -> None:
    running.holder.fail = True
    assert rcode(await udp(running.port, "api.cloud1.example")) == "SERVFAIL"
    assert rcode(await tcp(running.port, "api.cloud1.example")) == "SERVFAIL"
    assert running.server.stats.errors == 2
    running.holder.fail = False
    assert sorted(addresses(await udp(running.port, "api.cloud1.example"))) == VIPS


# --- hostile and broken clients ---------------------------------------------------------------


async def test_garbage_over_udp_is_dropped_or_formerr_and_the_server_keeps_going(
    running: Running,
) -> None:
    port = running.port
    assert await asyncio.to_thread(send_raw_udp, port, b"") is None
    assert await asyncio.to_thread(send_raw_udp, port, b"\x01\x02\x03") is None
    reply_to_a_response = dns.message.make_response(dns.message.make_query("a.b.c", "A"))
    assert await asyncio.to_thread(send_raw_udp, port, reply_to_a_response.to_wire()) is None
    bad = struct.pack(">HHHHHH", 0xBEEF, 0x0100, 1, 0, 0, 0) + b"\x05ab"
    reply = await asyncio.to_thread(send_raw_udp, port, bad, 3.0)
    assert reply is not None
    parsed = dns.message.from_wire(reply)
    assert parsed.id == 0xBEEF and parsed.rcode() == dns.rcode.FORMERR
    assert sorted(addresses(await udp(port, "api.cloud1.example"))) == VIPS
    stats = running.server.stats
    assert stats.drops == 3 and stats.answers == 2 and stats.queries == 5
    assert stats.rcodes["FORMERR"] == 1


async def test_tcp_answers_pipelined_queries_in_order(running: Running) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    try:
        names = ["api.cloud1.example", "nope.cloud1.example", "example.org"]
        queries = [dns.message.make_query(n, "A") for n in names]
        writer.write(b"".join(q.to_wire(prepend_length=True) for q in queries))
        await writer.drain()
        got = []
        for _ in names:
            (size,) = struct.unpack(">H", await reader.readexactly(2))
            got.append(dns.message.from_wire(await reader.readexactly(size)))
        assert [r.id for r in got] == [q.id for q in queries]
        assert [rcode(r) for r in got] == ["NOERROR", "NXDOMAIN", "REFUSED"]
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.mark.parametrize(
    "frame", [b"\x00\x03abc", b"\x00\x00"], ids=["short-message", "zero-length"]
)
async def test_tcp_garbage_closes_the_connection(running: Running, frame: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    try:
        writer.write(frame)
        await writer.drain()
        async with asyncio.timeout(3):
            assert await reader.read() == b""  # closed by the server, no reply
    finally:
        writer.close()
        await writer.wait_closed()
    assert running.server.stats.drops == 1
    assert rcode(await tcp(running.port, "api.cloud1.example")) == "NOERROR"


async def test_tcp_idle_and_too_many_connections_are_closed() -> None:
    server = await start(
        Holder(Zone({"api.cloud1.example": VIPS})), idle_timeout=0.3, max_connections=2
    )
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        for _ in range(3):
            conns.append(await asyncio.open_connection("127.0.0.1", server.port))
        conns[1][1].write(b"\x00")  # half a length prefix, then nothing
        async with asyncio.timeout(3):
            assert await conns[2][0].read() == b""  # refused at once (third of max 2)
            started = time.monotonic()
            assert await conns[0][0].read() == b""  # a silent client is closed after idling
            assert await conns[1][0].read() == b""  # (also one that sent half a length)
        assert time.monotonic() - started < 2.5
        assert server.stats.rejected_connections == 1
        assert server.stats.tcp_connections == 2
    finally:
        for _, writer in conns:
            writer.close()
        await server.close()


async def test_close_stops_answering_and_is_idempotent() -> None:
    server = await start(Holder(Zone({"api.cloud1.example": VIPS})))
    port = server.port
    _, writer = await asyncio.open_connection("127.0.0.1", port)  # an open connection
    async with asyncio.timeout(5):
        await server.close()
        await server.close()
    writer.close()
    query = dns.message.make_query("api.cloud1.example", "A")
    with pytest.raises(dns.exception.Timeout):
        await asyncio.to_thread(dns.query.udp, query, "127.0.0.1", timeout=0.3, port=port)
    with pytest.raises(ConnectionRefusedError):
        await asyncio.to_thread(dns.query.tcp, query, "127.0.0.1", timeout=1, port=port)


async def test_a_taken_port_raises_on_start(running: Running) -> None:
    other = DnsServer(running.holder, "127.0.0.1", running.port)
    with pytest.raises(OSError):
        await other.start()
    await other.close()
    assert rcode(await udp(running.port, "api.cloud1.example")) == "NOERROR"


async def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    server = DnsServer(Holder(Zone({"api.cloud1.example": ["2001:db8::1"]})), "::1", 0)
    try:
        await server.start()
    except OSError:
        pytest.skip("no ::1 here")
    try:
        query = dns.message.make_query("api.cloud1.example", "AAAA")
        response = await asyncio.to_thread(dns.query.udp, query, "::1", timeout=3, port=server.port)
        assert addresses(response, "AAAA") == ["2001:db8::1"]
    finally:
        await server.close()


# --- dig, the client operators use --------------------------------------------------------------

DIG = shutil.which("dig")


async def dig(port: int, *args: str) -> str:
    assert DIG is not None
    proc = await asyncio.create_subprocess_exec(
        DIG, "@127.0.0.1", "-p", str(port), "+time=3", "+tries=1", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 15)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    return out.decode()


@pytest.mark.skipif(DIG is None, reason="dig not installed (apt-get install bind9-dnsutils)")
async def test_dig_over_udp_and_tcp(running: Running) -> None:
    port = running.port
    short = (await dig(port, "api.cloud1.example", "A", "+short")).split()
    assert sorted(short) == VIPS
    assert sorted((await dig(port, "+tcp", "api.cloud1.example", "+short")).split()) == VIPS
    full = await dig(port, "api.cloud1.example", "A")
    assert "status: NOERROR" in full and " aa" in full.split("flags:")[1].split(";")[0]
    assert "OPT PSEUDOSECTION" in full  # dig sends EDNS; we echo it
    nx = await dig(port, "nope.cloud1.example")
    assert "status: NXDOMAIN" in nx and "SOA" in nx
    assert "status: REFUSED" in await dig(port, "example.org")
    assert "status: NOERROR" in await dig(port, "+noedns", "api.cloud1.example")
    # A big answer: dig sees TC over UDP and retries over TCP by itself.
    big = await dig(port, "+noedns", "big.cloud1.example", "+short")
    assert sorted(big.split()) == sorted(MANY)
    running.holder.zone = Zone({"api.cloud1.example": VIPS[:1]})
    assert (await dig(port, "api.cloud1.example", "+short")).split() == VIPS[:1]
