"""The codec and the envelope: round trips, size bounds, and hostile input (fuzzed)."""

from __future__ import annotations

import contextlib
import os
import struct

import msgpack  # type: ignore[import-untyped,unused-ignore]
import pytest
from hypothesis import HealthCheck, given, settings
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
from corral.core.membership.messages import estimated_size, packet_overhead
from corral.net.codec import DecodeError, decode_messages, encode_messages, encoded_size
from corral.net.keyring import Keyring, KeyringError
from corral.net.wire import MAX_PACKET, Wire

text = st.text(min_size=1, max_size=40)
names = st.text(min_size=1, max_size=20)
ints = st.integers(0, 2**63 - 1)
metas = st.builds(
    NodeMeta, st.lists(text, max_size=4).map(tuple), st.text(max_size=30), st.text(max_size=30)
)
digests = st.builds(MemberDigest, names, text, metas, ints, st.sampled_from(list(MemberState)))
messages_st: st.SearchStrategy[Message] = st.one_of(
    st.builds(Ping, ints, names),
    st.builds(PingReq, ints, names, text, st.booleans()),
    st.builds(Ack, ints),
    st.builds(Nack, ints),
    st.builds(Alive, names, ints, text, metas),
    st.builds(Suspect, names, ints, names),
    st.builds(Dead, names, ints, names),
    st.builds(PushPull, st.booleans(), st.booleans(), st.lists(digests, max_size=5).map(tuple)),
)

KEY1, KEY2, KEY3 = b"1" * 32, b"2" * 16, b"3" * 24


class Clock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def pair(**kw: object) -> tuple[Wire, Wire]:
    ring = Keyring([KEY1])
    return Wire("alice", ring, boot=1, **kw), Wire("bob", Keyring([KEY1]), **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------- codec


@given(st.lists(messages_st, min_size=1, max_size=6))
def test_messages_round_trip_and_stay_within_the_cores_size_estimate(
    msgs: list[Message],
) -> None:
    body = encode_messages(tuple(msgs))
    assert decode_messages(body, 10**7) == tuple(msgs)
    for m in msgs:
        assert encoded_size(m) <= estimated_size(m)
    assert len(body) <= sum(estimated_size(m) for m in msgs) + packet_overhead("x")


@settings(max_examples=400)
@given(st.binary(max_size=300))
def test_decoder_rejects_arbitrary_bytes_with_decode_error_only(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_messages(data, 1400)


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=10)
    | st.binary(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=30,
)


@settings(max_examples=400)
@given(
    st.lists(
        st.one_of(
            msgpack_values,
            st.tuples(st.integers(0, 9), msgpack_values, msgpack_values, msgpack_values).map(list),
        ),
        max_size=4,
    )
)
def test_decoder_rejects_well_formed_msgpack_of_the_wrong_shape(value: list[object]) -> None:
    data = msgpack.packb(value, use_bin_type=True)
    with contextlib.suppress(DecodeError):
        decode_messages(data, 1400)


def test_decoder_limits() -> None:
    with pytest.raises(DecodeError):
        decode_messages(b"\x91" + b"\x00" * 2000, 1400)  # over the size limit
    with pytest.raises(DecodeError):
        decode_messages(encode_messages((Ping(1, "x" * 65),)), 1400)  # name too long
    with pytest.raises(DecodeError):
        decode_messages(msgpack.packb([[0, -1, "a"]]), 1400)  # negative seq
    with pytest.raises(DecodeError):
        decode_messages(msgpack.packb([[0, True, "a"]]), 1400)  # bool is not an int
    with pytest.raises(DecodeError):
        decode_messages(msgpack.packb([[7, False, False, [["a", "a", [[], "", ""], 0, 9]]]]), 9999)


# ---------------------------------------------------------------- envelope


def test_sealed_packet_opens_once_and_replays_are_dropped() -> None:
    alice, bob = pair()
    data = alice.seal((Ping(1, "bob"),))
    assert bob.open(data) == Packet("alice", (Ping(1, "bob"),))
    assert bob.open(data) is None
    assert bob.drops.replayed == 1


def test_out_of_order_packets_inside_the_window_are_accepted_once() -> None:
    alice, bob = pair(window=64)
    sealed = [alice.seal((Ack(i),)) for i in range(100)]
    assert bob.open(sealed[99]) is not None
    assert bob.open(sealed[50]) is not None  # late but inside the window
    assert bob.open(sealed[50]) is None  # once only
    assert bob.open(sealed[10]) is None  # older than the window: cannot tell, refuse
    assert bob.drops.replayed == 2


def test_a_restart_with_a_newer_boot_is_accepted_and_the_old_boot_is_replay() -> None:
    ring = Keyring([KEY1])
    old, bob = Wire("alice", ring, boot=100), Wire("bob", ring)
    old_packet = old.seal((Ack(1),))
    old_packet2 = old.seal((Ack(2),))
    assert bob.open(old_packet) is not None
    new = Wire("alice", ring, boot=200)
    assert bob.open(new.seal((Ack(1),))) is not None
    assert bob.open(old_packet2) is None
    assert bob.drops.replayed == 1


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_corruption_of_a_sealed_packet_is_dropped_and_counted(data: st.DataObject) -> None:
    alice, bob = pair()
    sealed = bytearray(alice.seal((Ping(9, "bob"), Alive("carol", 2, "c:1", NodeMeta()))))
    i = data.draw(st.integers(0, len(sealed) - 1))
    sealed[i] ^= data.draw(st.integers(1, 255))
    before = bob.drops.total
    assert bob.open(bytes(sealed)) is None
    assert bob.drops.total == before + 1


@settings(max_examples=300)
@given(st.binary(max_size=1600))
def test_arbitrary_datagrams_never_raise(data: bytes) -> None:
    _, bob = pair()
    assert bob.open(data) is None
    assert bob.open(data, stream=True) is None
    assert bob.drops.total == 2


def test_oversized_and_wrong_version_and_stale_packets_are_counted() -> None:
    clock = Clock()
    ring = Keyring([KEY1])
    alice = Wire("alice", ring, wall=clock)
    bob = Wire("bob", ring, wall=clock, max_skew=30)
    assert bob.open(b"\x01" * (MAX_PACKET + 1)) is None
    sealed = alice.seal((Ack(1),))
    assert bob.open(b"\x02" + sealed[1:]) is None
    clock.t += 31
    assert bob.open(sealed) is None
    assert bob.drops.as_dict() == {
        "oversized": 1,
        "malformed": 0,
        "unauthenticated": 0,
        "replayed": 0,
        "stale": 1,
        "version": 1,
    }
    clock.t -= 31
    assert bob.open(sealed) is not None  # a stale check does not burn the sequence number


def test_authenticated_garbage_body_is_malformed_not_a_crash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ring = Keyring([KEY1])
    alice, bob = Wire("alice", ring), Wire("bob", ring)
    # A sender with the key but a broken encoder: the envelope authenticates, the body is junk.
    monkeypatch.setattr("corral.net.wire.encode_messages", lambda msgs: b"\xc1")
    bad = alice.seal((Ack(2),))
    assert bob.open(bad) is None
    assert bob.drops.malformed == 1


def test_seal_refuses_to_exceed_the_datagram_limit() -> None:
    alice, _ = pair()
    big = PushPull(
        False,
        False,
        tuple(MemberDigest(f"m{i}", "a:1", NodeMeta(), 0, MemberState.ALIVE) for i in range(200)),
    )
    with pytest.raises(ValueError, match="exceeds"):
        alice.seal((big,))
    assert len(alice.seal((big,), stream=True)) > MAX_PACKET


# ---------------------------------------------------------------- keyring and rotation


def test_key_rotation_without_downtime() -> None:
    ring_a, ring_b = Keyring([KEY1]), Keyring([KEY1])
    a, b = Wire("a", ring_a), Wire("b", ring_b)
    ring_a.add(KEY2)  # step 1: everyone accepts the new key
    ring_b.add(KEY2)
    assert b.open(a.seal((Ack(1),))) is not None
    ring_a.use(KEY2)  # step 2: a writes with it; b reads both
    assert b.open(a.seal((Ack(2),))) is not None
    ring_b.use(KEY2)
    ring_a.remove(KEY1)  # step 3: the old key is gone
    ring_b.remove(KEY1)
    assert b.open(a.seal((Ack(3),))) is not None
    assert a.open(b.seal((Ack(1),))) is not None


def test_packets_under_an_unknown_or_removed_key_are_unauthenticated() -> None:
    a = Wire("a", Keyring([KEY3]))
    ring = Keyring([KEY1, KEY3])
    b = Wire("b", ring)
    assert b.open(a.seal((Ack(1),))) is not None
    ring.remove(KEY3)
    assert b.open(a.seal((Ack(2),))) is None
    assert b.drops.unauthenticated == 1


def test_keyring_rules(tmp_path: object) -> None:
    with pytest.raises(KeyringError):
        Keyring([])
    with pytest.raises(KeyringError):
        Keyring([b"short"])
    ring = Keyring([KEY1])
    with pytest.raises(KeyringError):
        ring.remove(KEY1)
    with pytest.raises(KeyringError):
        ring.use(KEY2)


def test_key_file(tmp_path: pytest.TempPathFactory) -> None:
    import base64
    from pathlib import Path

    path = Path(str(tmp_path)) / "keys"
    k1, k2 = os.urandom(32), os.urandom(16)
    path.write_text(
        f"# cluster keys\n{base64.b64encode(k1).decode()}\n\n{base64.b64encode(k2).decode()}  # old\n"
    )
    ring = Keyring.from_file(path)
    assert ring.keys == (k1, k2)
    path.write_text("not base64!\n")
    with pytest.raises(KeyringError, match=":1: not base64"):
        Keyring.from_file(path)
    path.write_text("# nothing\n")
    with pytest.raises(KeyringError, match="at least one key"):
        Keyring.from_file(path)


def test_header_layout_is_stable() -> None:
    alice, _ = pair()
    sealed = alice.seal((Ack(1),))
    assert sealed[0] == 1 and sealed[1] == 5 and sealed[2:7] == b"alice"
    boot, seq, _ = struct.unpack_from(">QQd", sealed, 7)
    assert (boot, seq) == (1, 1)


def test_atheris_short_session() -> None:
    """A short libFuzzer run of fuzz_wire.py (skipped when atheris is not installed)."""
    pytest.importorskip("atheris")
    import subprocess
    import sys
    from pathlib import Path

    harness = Path(__file__).with_name("fuzz_wire.py")
    proc = subprocess.run(
        [sys.executable, str(harness), "-atheris_runs=20000", "-seed=1"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
