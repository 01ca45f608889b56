"""ARP and neighbour discovery frames from the link (the VIP driver's probes and the lab's
arpwatch read them): parsing never raises, whatever arrives; what does not parse is None
(the caller counts it in ``LinkSocket.unreadable``)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from hypothesis import example, given
from hypothesis import strategies as st

from corral.net.arp import (
    ARP_REPLY,
    ArpPacket,
    NdMessage,
    advert_v6,
    announcement_v4,
    arp_frame,
    conflict_of,
    parse_arp,
    parse_nd,
    probe_v4,
    probe_v6,
)
from tests.fuzz.budget import fuzz, mutated

MAC, OWN = b"\x02\x00\x5e\x10\x00\x01", b"\x02\x00\x5e\x10\x00\x02"
V4, V6 = IPv4Address("198.18.0.100"), IPv6Address("2001:db8::100")
SEEDS = [
    announcement_v4(MAC, V4),
    probe_v4(MAC, V4),
    arp_frame(ARP_REPLY, MAC, V4, IPv4Address("198.18.0.1"), dst_mac=OWN),
    advert_v6(MAC, V6),
    probe_v6(MAC, V6),
]


def read(frame: bytes) -> None:
    for parsed in (parse_arp(frame), parse_nd(frame)):
        assert parsed is None or isinstance(parsed, ArpPacket | NdMessage)
        if parsed is not None:
            for ip in (V4, V6):
                conflict_of(parsed, ip, OWN)


@fuzz(300)
@given(mutated(SEEDS, max_steps=3))
@example(advert_v6(MAC, V6)[:78] + b"\x02\x00")  # an option of length 0 ends the walk
@example(advert_v6(MAC, V6) + b"\x02\x01" + b"\x00" * 3)  # an option cut short
def test_mutated_frames_parse_or_are_none(frame: bytes) -> None:
    read(frame)


@fuzz(200)
@given(st.binary(max_size=120))
def test_random_frames_parse_or_are_none(frame: bytes) -> None:
    read(frame)


def test_the_seeds_read_as_sent() -> None:
    assert conflict_of(parse_arp(SEEDS[0]), V4, OWN) is not None  # type: ignore[arg-type]
    assert conflict_of(parse_arp(SEEDS[1]), V4, OWN).probing  # type: ignore[union-attr,arg-type]
    nd = parse_nd(SEEDS[3])
    assert nd is not None and nd.mac == MAC and conflict_of(nd, V6, OWN) is not None
    assert conflict_of(nd, V4, OWN) is None  # an ND message says nothing about IPv4


class FakeLink:
    """What :func:`probe_on` uses of a :class:`LinkSocket`: frames that arrive, and the count."""

    def __init__(self, frames: list[bytes]) -> None:
        self.mac, self.unreadable, self.sent = OWN, 0, 0
        self._frames = frames

    def send(self, frame: bytes) -> None:
        self.sent += 1

    def frames(self, deadline: float) -> list[bytes]:
        out, self._frames = self._frames, []
        return out


def test_a_probe_counts_the_frames_it_cannot_read_and_still_sees_the_holder() -> None:
    from corral.net.arp import probe_on

    holder = arp_frame(ARP_REPLY, MAC, V4, IPv4Address("198.18.0.1"), dst_mac=OWN)
    link = FakeLink([b"\x00" * 10, SEEDS[3], holder[:-40], holder])
    conflict = probe_on(link, V4, 0.01)  # type: ignore[arg-type]
    assert conflict is not None and conflict.mac == "02:00:5e:10:00:01"
    assert link.unreadable == 3  # too short, an IPv6 frame, a cut ARP packet
