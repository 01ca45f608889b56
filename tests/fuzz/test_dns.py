"""DNS queries from the network: no input bytes make :func:`answer` raise, every reply is a
sane response, and the server counts every malformed message."""

from __future__ import annotations

import struct

import dns.flags
import dns.message
from hypothesis import given
from hypothesis import strategies as st

from corral.dns import EDNS_PAYLOAD, DnsServer, Zone, answer
from tests.fuzz.budget import fuzz, mutated

ZONE = Zone(
    {
        "api.cloud1.example": [f"198.18.0.{i}" for i in range(1, 40)] + ["2001:db8::1"],
        "db.cloud1.example": [],
    }
)
SEEDS = [
    dns.message.make_query(name, rdtype, use_edns=edns, payload=1400, want_dnssec=dnssec).to_wire()
    for name in ("api.cloud1.example", "nope.cloud1.example", "example.org", "cloud1.example")
    for rdtype in ("A", "AAAA", "ANY", "SOA", "MX")
    for edns, dnssec in ((None, False), (0, False), (0, True))
]
FUZZ = fuzz(400)


def check_reply(query: bytes, rotate: int, transport: str) -> None:
    reply = answer(query, ZONE, rotate, transport)  # type: ignore[arg-type]
    if len(query) < 12 or query[2] & 0x80:
        assert reply is None  # no header, or a response: dropped
        return
    assert reply is not None  # every query with a header gets an answer
    assert reply[:2] == query[:2]  # the id
    assert reply[2] & 0x80  # QR
    parsed = dns.message.from_wire(reply)  # our own output always parses
    assert parsed.flags & dns.flags.QR
    if transport == "udp":
        assert len(reply) <= EDNS_PAYLOAD
        if parsed.edns < 0:
            assert len(reply) <= 512


@FUZZ
@given(
    st.binary(max_size=600),
    st.integers(min_value=0, max_value=2**64),
    st.sampled_from(["udp", "tcp"]),
)
def test_random_bytes_never_raise(data: bytes, rotate: int, transport: str) -> None:
    check_reply(data, rotate, transport)


@FUZZ
@given(
    st.sampled_from(SEEDS),
    st.lists(st.tuples(st.integers(min_value=0, max_value=400), st.integers(0, 255)), max_size=6),
    st.integers(min_value=0, max_value=60),
    st.binary(max_size=20),
)
def test_mutated_queries_never_raise(
    seed: bytes, flips: list[tuple[int, int]], cut: int, tail: bytes
) -> None:
    # Mutations of real queries reach far deeper into the parser than random bytes do.
    data = bytearray(seed)
    for where, value in flips:
        if where < len(data):
            data[where] = value
    mutated = bytes(data[: max(0, len(data) - cut)]) + tail
    check_reply(mutated, 0, "udp")


@FUZZ
@given(
    st.integers(0, 0xFFFF),
    st.integers(0, 0x7FFF),  # QR clear: a query, any opcode, flags and rcode
    st.tuples(*[st.integers(0, 3)] * 4),
    st.binary(max_size=80),
)
def test_headers_with_any_counts_never_raise(
    ident: int, flags: int, counts: tuple[int, int, int, int], body: bytes
) -> None:
    check_reply(struct.pack(">HHHHHH", ident, flags, *counts) + body, 1, "udp")


@FUZZ
@given(st.lists(mutated(SEEDS) | st.binary(max_size=40), min_size=1, max_size=5))
def test_the_server_answers_or_drops_every_message_and_counts_the_malformed(
    messages: list[bytes],
) -> None:
    server = DnsServer(lambda: ZONE, "127.0.0.1", 0)
    malformed = 0
    for data in messages:
        reply = server.respond(data, "udp")
        if reply is not None:
            server.count_answer(reply)
        parsed = True
        try:
            dns.message.from_wire(data)
        except Exception:
            parsed = False
        if len(data) < 12 or (not parsed and not data[2] & 0x80 and (data[2] >> 3) & 0xF == 0):
            malformed += 1  # no header, or a query (opcode QUERY) that does not parse
    stats = server.stats
    assert stats.queries == len(messages) == stats.answers + stats.drops
    assert stats.errors == 0
    assert stats.malformed >= malformed
    assert stats.malformed <= stats.rcodes.get("FORMERR", 0) + sum(len(d) < 12 for d in messages)
