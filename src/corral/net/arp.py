"""ARP and IPv6 neighbour discovery for floating addresses: probe, announce, ask who has.

Why a raw ``AF_PACKET`` socket and not iputils ``arping``: the VIP driver needs sub-second
timing (a 100 ms probe window, announcements 200 ms apart) and every error reported, and
needs to know *which* MAC answered. ``arping -D`` reports a duplicate only as exit code 1 (the
same code as for several other failures), its ``-w`` deadline has one-second granularity on
older releases, the answering MAC must be scraped from its output, and every call costs a
fork/exec. With a packet socket the probe is one ``sendto`` and a ``select`` loop, a missing or
down interface is an ``OSError`` with its errno, and IPv6 (neighbour solicitation / unsolicited
advertisement, which ``arping`` does not do at all) uses the same code.

Layout: the frame codec and the conflict rules are pure (bytes in, values out, no clock); the
:class:`LinkSocket` shell and the three operations (:func:`probe`, :func:`announce`,
:func:`arp_who_has`) do the I/O, with time read from ``time.monotonic``.

Everything acts in the network namespace of the calling *thread* (a packet socket is bound to
an interface of the namespace it was created in), which for corral is the agent's namespace.
Needs ``CAP_NET_RAW``.
"""

from __future__ import annotations

import fcntl
import select
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
ETH_P_IP = 0x0800
PACKET_OUTGOING = 4  # sll_pkttype of frames this host sent (a packet socket sees those too)
BROADCAST_MAC = b"\xff" * 6
ZERO_MAC = b"\x00" * 6
MIN_FRAME = 60  # Ethernet minimum without FCS; some NICs do not pad short frames themselves
ARP_REQUEST, ARP_REPLY = 1, 2
ICMPV6, ND_NS, ND_NA = 58, 135, 136
NA_FLAG_OVERRIDE = 0x20000000
ALL_NODES = IPv6Address("ff02::1")
UNSPECIFIED_V4 = IPv4Address("0.0.0.0")
UNSPECIFIED_V6 = IPv6Address("::")
SIOCGIFADDR = 0x8915

_ETH = struct.Struct("!6s6sH")
_ARP = struct.Struct("!HHBBH6s4s6s4s")
_IPV6 = struct.Struct("!IHBB16s16s")


class LinkError(Exception):
    """A packet socket could not be opened, bound or written (the message names the interface)."""


# --- pure: frames ------------------------------------------------------------------------------


def format_mac(raw: bytes) -> str:
    """``02:00:5e:10:00:01`` from six bytes."""
    return ":".join(f"{b:02x}" for b in raw)


@dataclass(frozen=True)
class ArpPacket:
    op: int
    sender_mac: bytes
    sender_ip: IPv4Address
    target_mac: bytes
    target_ip: IPv4Address


@dataclass(frozen=True)
class NdMessage:
    """An ICMPv6 neighbour solicitation (135) or advertisement (136) about ``target``; ``mac``
    is the link-layer address option's (target's for an NA, source's for an NS), else the
    Ethernet source."""

    kind: int
    source: IPv6Address
    target: IPv6Address
    mac: bytes


@dataclass(frozen=True)
class Conflict:
    """Another host on the link wants the address: it holds it (answers for it, announces it),
    or it probes for it at this very moment (then both sides back off: RFC 5227 2.1.1)."""

    mac: str
    probing: bool


def _pad(frame: bytes) -> bytes:
    return frame + b"\x00" * max(0, MIN_FRAME - len(frame))


def arp_frame(
    op: int,
    src_mac: bytes,
    sender_ip: IPv4Address,
    target_ip: IPv4Address,
    *,
    dst_mac: bytes = BROADCAST_MAC,
    target_mac: bytes = ZERO_MAC,
) -> bytes:
    """An Ethernet frame carrying one ARP packet (IPv4 over Ethernet)."""
    arp = _ARP.pack(1, ETH_P_IP, 6, 4, op, src_mac, sender_ip.packed, target_mac, target_ip.packed)
    return _pad(_ETH.pack(dst_mac, src_mac, ETH_P_ARP) + arp)


def parse_arp(frame: bytes) -> ArpPacket | None:
    """The ARP packet in ``frame``; None for anything else (other protocols, truncated)."""
    if len(frame) < _ETH.size + _ARP.size:
        return None
    _, _, ethertype = _ETH.unpack_from(frame)
    if ethertype != ETH_P_ARP:
        return None
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _ARP.unpack_from(frame, _ETH.size)
    if (htype, ptype, hlen, plen) != (1, ETH_P_IP, 6, 4):
        return None
    return ArpPacket(op, sha, IPv4Address(spa), tha, IPv4Address(tpa))


def announcement_v4(src_mac: bytes, ip: IPv4Address) -> bytes:
    """RFC 5227 announcement (gratuitous ARP request): sender IP = target IP = ``ip``."""
    return arp_frame(ARP_REQUEST, src_mac, ip, ip)


def probe_v4(src_mac: bytes, ip: IPv4Address) -> bytes:
    """RFC 5227 probe: sender IP 0.0.0.0, so that no neighbour cache learns anything from it."""
    return arp_frame(ARP_REQUEST, src_mac, UNSPECIFIED_V4, ip)


def conflict_v4(packet: ArpPacket, ip: IPv4Address, own_mac: bytes) -> Conflict | None:
    """RFC 5227 section 2.1.1: another host uses ``ip`` (any ARP packet with it as sender), or
    probes for it at the same moment (sender 0.0.0.0, target ``ip``). Our own frames never count.
    """
    if packet.sender_mac == own_mac:
        return None
    if packet.sender_ip == ip:
        return Conflict(format_mac(packet.sender_mac), probing=False)
    if packet.op == ARP_REQUEST and packet.sender_ip == UNSPECIFIED_V4 and packet.target_ip == ip:
        return Conflict(format_mac(packet.sender_mac), probing=True)
    return None


def _multicast_mac(ip: IPv6Address) -> bytes:
    return b"\x33\x33" + ip.packed[-4:]


def solicited_node(ip: IPv6Address) -> IPv6Address:
    """The solicited-node multicast group of ``ip`` (ff02::1:ffXX:XXXX)."""
    return IPv6Address(b"\xff\x02" + b"\x00" * 9 + b"\x01\xff" + ip.packed[-3:])


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _icmpv6_frame(src_mac: bytes, src: IPv6Address, dst: IPv6Address, body: bytes) -> bytes:
    """Ethernet + IPv6 (hop limit 255, as ND requires) + ICMPv6 ``body`` with its checksum."""
    pseudo = src.packed + dst.packed + struct.pack("!I3xB", len(body), ICMPV6)
    body = body[:2] + struct.pack("!H", _checksum(pseudo + body)) + body[4:]
    ip6 = _IPV6.pack(0x60000000, len(body), ICMPV6, 255, src.packed, dst.packed)
    return _pad(_ETH.pack(_multicast_mac(dst), src_mac, ETH_P_IPV6) + ip6 + body)


def advert_v6(src_mac: bytes, ip: IPv6Address) -> bytes:
    """Unsolicited neighbour advertisement (RFC 4861 7.2.6) to all nodes, Override set, with
    the target link-layer address option: neighbours that cache ``ip`` switch to ``src_mac``."""
    body = struct.pack("!BBHI16sBB6s", ND_NA, 0, 0, NA_FLAG_OVERRIDE, ip.packed, 2, 1, src_mac)
    return _icmpv6_frame(src_mac, ip, ALL_NODES, body)


def probe_v6(src_mac: bytes, ip: IPv6Address) -> bytes:
    """Duplicate address detection solicitation (RFC 4862 5.4.2): from ::, to the solicited-node
    group, without a source link-layer option (forbidden with an unspecified source)."""
    body = struct.pack("!BBHI16s", ND_NS, 0, 0, 0, ip.packed)
    return _icmpv6_frame(src_mac, UNSPECIFIED_V6, solicited_node(ip), body)


def parse_nd(frame: bytes) -> NdMessage | None:
    """The NS or NA in ``frame`` (IPv6 without extension headers, hop limit 255); else None."""
    offset = _ETH.size + _IPV6.size
    if len(frame) < offset + 24:
        return None
    _, src_mac, ethertype = _ETH.unpack_from(frame)
    _, _, next_header, hop_limit, source, _ = _IPV6.unpack_from(frame, _ETH.size)
    if ethertype != ETH_P_IPV6 or next_header != ICMPV6 or hop_limit != 255:
        return None
    kind = frame[offset]
    if kind not in (ND_NS, ND_NA) or frame[offset + 1] != 0:
        return None
    target = IPv6Address(frame[offset + 8 : offset + 24])
    mac = src_mac
    wanted = 2 if kind == ND_NA else 1  # target / source link-layer address option
    opt = offset + 24
    while opt + 8 <= len(frame) and frame[opt + 1] > 0:
        if frame[opt] == wanted and frame[opt + 1] == 1:
            mac = frame[opt + 2 : opt + 8]
            break
        opt += 8 * frame[opt + 1]
    return NdMessage(kind, IPv6Address(source), target, mac)


def conflict_v6(message: NdMessage, ip: IPv6Address, own_mac: bytes) -> Conflict | None:
    """Another host advertises ``ip`` (the answer to our DAD solicitation, or its own NA), or
    runs duplicate address detection for it (an NS from :: for ``ip``). Our own never count."""
    if message.target != ip or message.mac == own_mac:
        return None
    if message.kind == ND_NA:
        return Conflict(format_mac(message.mac), probing=False)
    if message.source == UNSPECIFIED_V6:
        return Conflict(format_mac(message.mac), probing=True)
    return None  # an address resolution request: somebody looks for the holder


# --- I/O: the packet socket ----------------------------------------------------------------------


class LinkSocket:
    """A raw packet socket bound to one interface and one ethertype. Use as a context manager.

    :meth:`frames` yields frames that arrive (never the ones this host sends) until a
    monotonic deadline. Errors are :class:`LinkError` naming the interface and the errno text.
    :meth:`send` never blocks (non-blocking socket). Opening and :meth:`close` can block for an
    RCU grace period (closing a packet socket calls ``synchronize_net``: 10-30 ms here), so
    asyncio code opens and closes it in a thread and keeps it open across a probe and its burst.
    """

    def __init__(self, ifname: str, ethertype: int) -> None:
        self.ifname = ifname
        self.ethertype = ethertype
        self.unreadable = 0
        """Frames read that are not what the reader looks for (an ARP packet of IPv4 over
        Ethernet; an ND message): truncated or of another kind, dropped (a counter, for the
        lab and the metrics)."""
        try:
            # Protocol 0 at creation, the ethertype at bind: a socket created with a protocol
            # would receive from every interface until bound, and rebinding it makes the kernel
            # wait for an RCU grace period (milliseconds).
            self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except OSError as exc:
            raise LinkError(f"{ifname}: cannot open a packet socket: {exc.strerror}") from exc
        try:
            self._sock.bind((ifname, ethertype))
            self._sock.setblocking(False)
            self.mac: bytes = self._sock.getsockname()[4]
        except OSError as exc:
            self._sock.close()
            raise LinkError(f"{ifname}: cannot bind a packet socket: {exc.strerror}") from exc

    def __enter__(self) -> LinkSocket:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def send(self, frame: bytes) -> None:
        try:
            self._sock.send(frame)
        except OSError as exc:
            raise LinkError(f"{self.ifname}: cannot send: {exc.strerror}") from exc

    def frames(self, deadline: float) -> Iterator[bytes]:
        """Incoming frames until ``deadline`` (``time.monotonic`` seconds)."""
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self._sock], [], [], left)
            if not ready:
                return
            while True:  # drain what is queued before waiting again
                try:
                    frame, addr = self._sock.recvfrom(2048)
                except BlockingIOError:
                    break
                except OSError as exc:
                    raise LinkError(f"{self.ifname}: cannot receive: {exc.strerror}") from exc
                if addr[2] != PACKET_OUTGOING:
                    yield frame


def ethertype_for(ip: IPv4Address | IPv6Address) -> int:
    """The ethertype that resolves ``ip``: ARP for IPv4, IPv6 (neighbour discovery) for IPv6."""
    return ETH_P_ARP if ip.version == 4 else ETH_P_IPV6


def probe(
    ifname: str, ip: IPv4Address | IPv6Address, timeout: float, *, tries: int = 2
) -> Conflict | None:
    """:func:`probe_on` a socket opened for the occasion."""
    with LinkSocket(ifname, ethertype_for(ip)) as link:
        return probe_on(link, ip, timeout, tries=tries)


def probe_on(
    link: LinkSocket, ip: IPv4Address | IPv6Address, timeout: float, *, tries: int = 2
) -> Conflict | None:
    """The first other host that holds (or probes for) ``ip`` on ``link``'s interface, None
    when none answers within ``timeout`` seconds. ``tries`` probes are sent, spread over the
    window, so that one lost frame does not hide a holder, and so that a host whose probe
    window ended just before ours began (and which adds the address a few ms later, unheard
    by us) answers our later probe instead of becoming a second holder. Blocks for
    ``timeout`` when nobody answers (returns at the first conflict). LinkError when the
    interface is missing or down. ``link`` must be bound to ``ethertype_for(ip)``.
    """
    frame = probe_v4(link.mac, ip) if isinstance(ip, IPv4Address) else probe_v6(link.mac, ip)
    start = time.monotonic()
    for i in range(tries):
        link.send(frame)
        deadline = start + timeout * (i + 1) / tries
        for got in link.frames(deadline):
            parsed = parse_arp(got) if isinstance(ip, IPv4Address) else parse_nd(got)
            if parsed is None:
                link.unreadable += 1
                continue
            conflict = conflict_of(parsed, ip, link.mac)
            if conflict is not None:
                return conflict
    return None


def conflict_of(
    parsed: ArpPacket | NdMessage, ip: IPv4Address | IPv6Address, own: bytes
) -> Conflict | None:
    """:func:`conflict_v4` or :func:`conflict_v6`, as ``parsed`` and ``ip`` go (None when
    they do not match: an ARP packet says nothing about an IPv6 address)."""
    if isinstance(parsed, ArpPacket):
        return conflict_v4(parsed, ip, own) if isinstance(ip, IPv4Address) else None
    return conflict_v6(parsed, ip, own) if isinstance(ip, IPv6Address) else None


def announce(ifname: str, ip: IPv4Address | IPv6Address) -> None:
    """:func:`announce_on` a socket opened for the occasion (blocks while it closes)."""
    with LinkSocket(ifname, ethertype_for(ip)) as link:
        announce_on(link, ip)


def announce_on(link: LinkSocket, ip: IPv4Address | IPv6Address) -> None:
    """Send one gratuitous ARP (IPv4) or unsolicited neighbour advertisement (IPv6) for ``ip``
    from the interface's MAC; never blocks. LinkError when it cannot be sent (interface down
    or gone)."""
    if isinstance(ip, IPv4Address):
        link.send(announcement_v4(link.mac, ip))
    else:
        link.send(advert_v6(link.mac, ip))


def _ipv4_of(ifname: str) -> IPv4Address:
    """The interface's primary IPv4 address (SIOCGIFADDR), 0.0.0.0 when it has none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16s24x", ifname.encode()[:15])
        try:
            reply = fcntl.ioctl(sock.fileno(), SIOCGIFADDR, request)
        except OSError:
            return UNSPECIFIED_V4
    return IPv4Address(reply[20:24])


def arp_who_has(ifname: str, ip: IPv4Address, timeout: float, count: int = 1) -> set[str]:
    """The distinct MACs that answer an ARP request for ``ip`` sent from ``ifname``.

    Sends ``count`` requests; each one gets a window of ``timeout`` seconds in which every
    reply whose sender is ``ip`` is collected, so the call takes ``count * timeout`` seconds
    (all windows run to their end: a second holder answering late must still be seen). The
    sender is the interface's IPv4 address, or 0.0.0.0 when it has none (Linux answers both).
    An empty set: nobody holds ``ip``. LinkError for a missing or down interface.
    """
    sender = _ipv4_of(ifname)
    macs: set[str] = set()
    with LinkSocket(ifname, ETH_P_ARP) as link:
        frame = arp_frame(ARP_REQUEST, link.mac, sender, ip)
        for _ in range(count):
            link.send(frame)
            for got in link.frames(time.monotonic() + timeout):
                packet = parse_arp(got)
                if packet is None:
                    link.unreadable += 1
                elif packet.op == ARP_REPLY and packet.sender_ip == ip:
                    macs.add(format_mac(packet.sender_mac))
    return macs
