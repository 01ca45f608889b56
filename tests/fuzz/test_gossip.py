"""The gossip wire from the network: envelopes, bodies from a sender that holds the key (an
insider, or a bug in another version), the membership core on whatever decodes, and the
transport's stream framing. Nothing raises; every rejected input is counted.

(``tests/membership/test_wire.py`` fuzzes random datagrams and single-byte corruptions of a
sealed packet; here: mutations of valid bodies and envelopes.)"""

from __future__ import annotations

import asyncio
import struct
from unittest import mock

import msgpack  # type: ignore[import-untyped,unused-ignore]
from hypothesis import example, given
from hypothesis import strategies as st

from corral.core.membership import (
    Ack,
    Alive,
    Dead,
    MemberDigest,
    MemberState,
    Message,
    Nack,
    NodeMeta,
    Packet,
    Ping,
    PingReq,
    PushPull,
    Suspect,
)
from corral.net.codec import DecodeError, decode_messages, encode_messages
from corral.net.keyring import Keyring
from corral.net.transport import UdpTransport
from corral.net.wire import Wire
from tests.fuzz.budget import fuzz, mutated
from tests.membership.helpers import core

RING = Keyring([b"k" * 32])
META = NodeMeta(("lb", "controller"), "dc1", "198.18.0.1:8080", "198.18.0.1:2379")
BODIES: list[tuple[Message, ...]] = [
    (Ping(7, "b"), Alive("c", 3, "198.18.0.3:7946", META)),
    (PingReq(9, "d", "198.18.0.4:7946", True), Suspect("e", 2, "a"), Dead("f", 1, "b")),
    (Ack(7), Nack(9)),
    (
        PushPull(
            True,
            False,
            tuple(
                MemberDigest(n, f"{n}:7946", META, i, state)
                for i, (n, state) in enumerate(zip("abcdef", MemberState, strict=False))
            ),
        ),
    ),
]
BODY_SEEDS = [encode_messages(b) for b in BODIES]


def sealed_as_insider(sender: Wire, body: bytes) -> bytes:
    """A packet sealed with the cluster key around any ``body`` bytes."""
    with mock.patch("corral.net.wire.encode_messages", lambda _msgs: body):
        return sender.seal((), stream=True)


@fuzz(300)
@given(mutated(BODY_SEEDS))
@example(b"\x91\x93\x00\xcf\x80\x00\x00\x00\x00\x00\x00\x00\xa1b")  # seq over 2**63-1
@example(b"\x91\x92\x07\xc0")  # a push-pull of the wrong arity
def test_mutated_bodies_decode_or_raise_decode_error(body: bytes) -> None:
    try:
        messages = decode_messages(body, 1 << 20)
    except DecodeError:
        return
    assert decode_messages(encode_messages(messages), 1 << 20) == messages  # a fixed point


@fuzz(150)
@given(mutated(BODY_SEEDS))
def test_an_insiders_garbage_body_is_a_counted_malformed_drop(body: bytes) -> None:
    sender, receiver = Wire("x", RING, boot=1), Wire("me", RING)
    packet = receiver.open(sealed_as_insider(sender, body), stream=True)
    drops = receiver.drops.as_dict()
    if packet is None:
        assert drops == {**dict.fromkeys(drops, 0), "malformed": 1}
    else:
        assert receiver.drops.total == 0 and packet.sender == "x"


@fuzz(200)
@given(mutated([Wire("x", RING, boot=3).seal(b) for b in BODIES[:3]]))
def test_mutated_envelopes_open_or_are_counted_once(data: bytes) -> None:
    receiver = Wire("me", RING, max_skew=1e12)
    packet = receiver.open(data)
    assert (packet is None) == (receiver.drops.total == 1)


messages_st = (
    st.sampled_from([m for b in BODIES for m in b])
    | st.builds(
        Alive, st.sampled_from("abcz"), st.integers(0, 2**63 - 1), st.just("z:1"), st.just(META)
    )
    | st.builds(Suspect, st.sampled_from("abcz"), st.integers(0, 5), st.sampled_from("abz"))
)


@fuzz(200)
@given(
    st.lists(
        st.tuples(st.sampled_from("abcz"), st.lists(messages_st, min_size=1, max_size=5)),
        min_size=1,
        max_size=8,
    )
)
def test_the_core_takes_any_sequence_of_decoded_packets(
    packets: list[tuple[str, list[Message]]],
) -> None:
    """What decodes is still hostile: claims about ourselves, unknown members, acks for
    probes never sent. The core never raises on content."""
    m = core("a", ("b", "c"))
    now = 0.0
    for sender, msgs in packets:
        now += 0.1
        m.handle(Packet(sender, tuple(msgs)), f"{sender}:1", now)
        m.tick(now)
    assert m.members()[0].name == "a"


def test_a_stream_cut_inside_a_frame_is_counted() -> None:
    """A length prefix that promises more than comes, or a frame too large: counted; a peer
    that closes between frames is the normal end of a connection, not counted."""

    async def run() -> dict[str, int]:
        got: list[bytes] = []
        transport = UdpTransport("127.0.0.1", 0)
        await transport.start(lambda data, _src, _stream: got.append(data))
        try:
            for chunk in (
                struct.pack(">I", 5) + b"hello",  # one whole frame, then a clean close
                struct.pack(">I", 100) + b"short",  # cut inside the body
                b"\x00\x00",  # cut inside the length
                struct.pack(">I", transport.max_stream + 1),  # over the limit
            ):
                _, writer = await asyncio.open_connection("127.0.0.1", transport.port)
                writer.write(chunk)
                await writer.drain()
                writer.close()
                await writer.wait_closed()
            for _ in range(200):
                stats = transport.stats
                if stats.truncated_streams + stats.rejected_streams >= 3:
                    break
                await asyncio.sleep(0.01)
        finally:
            await transport.close()
        assert got == [b"hello"]
        return transport.stats.as_dict()

    stats = asyncio.run(run())
    assert (stats["streams_in"], stats["truncated_streams"], stats["rejected_streams"]) == (1, 2, 1)


def test_msgpack_nesting_bombs_are_decode_errors() -> None:
    deep = b"\x91" * 100_000 + b"\x00"  # arrays nested 100,000 deep
    for data in (deep, msgpack.packb([[0, 1, "a"]] * 600)):
        try:
            decode_messages(data, 1 << 20)
        except DecodeError:
            continue
        raise AssertionError("accepted")


def test_a_running_member_counts_every_datagram_it_cannot_read() -> None:
    """Garbage and corrupted packets at a live member's UDP port (its pump thread): each
    counted under ``dropped`` in its stats, and the member goes on answering."""
    import random
    import socket

    from corral.core.membership import profile
    from corral.net import GossipNode, free_port

    rng = random.Random(5)
    sealed = Wire("x", RING, boot=1).seal(BODIES[0])
    junk = [rng.randbytes(rng.randrange(0, 200)) for _ in range(20)]
    junk += [sealed[:i] + bytes([sealed[i] ^ 0x40]) + sealed[i + 1 :] for i in range(0, 80, 4)]

    async def run() -> dict[str, dict[str, int]]:
        transport = UdpTransport("127.0.0.1", free_port(), threaded=True)
        node = GossipNode("me", transport, RING, profile("local"))
        await node.start()
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                for data in junk:
                    sock.sendto(data, ("127.0.0.1", transport.port))
            for _ in range(300):
                if sum(node.stats()["dropped"].values()) >= len(junk):
                    break
                await asyncio.sleep(0.01)
            return node.stats()
        finally:
            await node.stop(leave=False)

    stats = asyncio.run(run())
    assert sum(stats["dropped"].values()) == len(junk) == stats["transport"]["packets_in"]
    assert stats["dropped"]["unauthenticated"] >= 15  # the corrupted sealed packets
