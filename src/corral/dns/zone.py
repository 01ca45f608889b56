"""The DNS answers for VIP-set names (pure): a :class:`Zone` and :func:`answer`.

No I/O, no clock: :func:`answer` turns one query's wire bytes into one response's wire bytes
(or ``None``: drop), given the zone and a rotation counter. The asyncio shell is
:mod:`corral.dns.server`; the wire format is dnspython's.

A zone maps names (absolute, lower-cased) to the addresses of the VIPs that are up right now.
We are authoritative for each name's parent (the *apex*: ``cloud1.example.`` for
``api.cloud1.example.``), so the answers are:

    query                                              rcode     answer      authority
    header unreadable (< 12 bytes), or QR set          (drop: None)
    opcode other than QUERY                            NOTIMP    -           -
    rest unparsable, not exactly one question,         FORMERR   -           -
      meta type (OPT, TSIG, ...) asked for
    EDNS version other than 0                          BADVERS   -           -
    TSIG-signed (we hold no keys), AXFR/IXFR,          REFUSED   -           -
      class other than IN, name outside every apex
    known name, A / AAAA / ANY, live VIPs of the type  NOERROR   rotated     -
    known name, nothing of that type (or none live)    NOERROR   -           SOA (NODATA)
    an apex, or an ancestor of a known name            NOERROR   SOA if SOA  SOA (NODATA)
    any other name under an apex                       NXDOMAIN  -           SOA

Every answer to a query that parsed copies its question (in the query's case) and RD, and
echoes an OPT record when the query had one; AA is set on the answers from the zone (NOERROR,
NXDOMAIN), not on errors. A name with no live VIP is NODATA, never NXDOMAIN: it exists, it is
just down, and resolvers would cache an NXDOMAIN as "no such name".
Record TTL and the SOA minimum (the negative-caching TTL, RFC 2308) are both the zone's TTL,
1 s by default, so a client never keeps a dead VIP for long.

Size: UDP answers fit 512 bytes, or the client's EDNS payload size capped at
:data:`EDNS_PAYLOAD` (1232, the DNS flag day 2020 value); when the records do not fit, the
answer is sent without them and with TC set, so the client retries over TCP (no partial RRsets).
"""

from __future__ import annotations

import ipaddress
import struct
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from corral.spec.dnsname import name_problem

if TYPE_CHECKING:
    from corral.spec.model import Spec

DEFAULT_TTL = 1
"""Seconds: a client must not cache a dead VIP."""

EDNS_PAYLOAD = 1232
"""The UDP payload size we advertise and the most we send over UDP."""

_HEADER = struct.Struct(">HHHHHH")
_QR = 0x8000
_OPCODE_SHIFT = 11
_RD = 0x0100
_IN = dns.rdataclass.IN
_A = dns.rdatatype.A
_AAAA = dns.rdatatype.AAAA
_SOA_TIMERS = (60, 10, 600)  # refresh, retry, expire: nobody transfers this zone

Address = str | ipaddress.IPv4Address | ipaddress.IPv6Address
Transport = Literal["udp", "tcp"]


def _parse_name(name: str) -> dns.name.Name:
    problem = name_problem(name)
    if problem is not None:
        raise ValueError(f"DNS name {name!r}: {problem}")
    return dns.name.from_text(name.strip()).canonicalize()


@dataclass(frozen=True, slots=True)
class _Entry:
    a: tuple[dns.rdata.Rdata, ...]
    aaaa: tuple[dns.rdata.Rdata, ...]


class Zone:
    """Names (absolute, lower-cased) and the live VIP addresses of each, with one TTL.

    ``Zone({"api.cloud1.example": ["198.18.0.100", "2001:db8::1"]})``: a name may be given
    relative or absolute, in any case; an address as text or an :mod:`ipaddress` object (A or
    AAAA by its family). Addresses keep their order (the round-robin base order); duplicates
    are dropped. A name with no addresses exists and answers NODATA. Raises ``ValueError`` for
    a bad name (see :func:`name_problem`), a bad address, or a TTL outside 0..2**31-1.
    Immutable; equal when names, addresses and TTL are.
    """

    __slots__ = ("_apexes", "_entries", "_soas", "_ttl")

    def __init__(self, names: Mapping[str, Iterable[Address]] | None = None, ttl: int = 1):
        if not 0 <= ttl <= 2**31 - 1:
            raise ValueError(f"TTL {ttl} outside 0..2**31-1")
        merged: dict[dns.name.Name, list[ipaddress.IPv4Address | ipaddress.IPv6Address]] = {}
        for text, addresses in (names or {}).items():
            ips = merged.setdefault(_parse_name(text), [])
            for address in addresses:
                ip = ipaddress.ip_address(address)
                if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
                    raise ValueError(f"{address}: a scoped address cannot be a DNS record")
                if ip not in ips:
                    ips.append(ip)
        self._ttl = ttl
        self._entries = {
            name: _Entry(
                a=tuple(dns.rdata.from_text(_IN, _A, str(ip)) for ip in ips if ip.version == 4),
                aaaa=tuple(
                    dns.rdata.from_text(_IN, _AAAA, str(ip)) for ip in ips if ip.version == 6
                ),
            )
            for name, ips in merged.items()
        }
        # Longest first, so the closest apex of a query name is the first that contains it.
        apexes = {name.parent() for name in self._entries}
        self._apexes = tuple(sorted(apexes, key=lambda n: (-len(n.labels), n.to_text())))
        # The SOA serial follows the content: cosmetic (nobody transfers the zone), stable.
        serial = zlib.crc32(repr(sorted(self.records.items())).encode()) or 1
        refresh, retry, expire = _SOA_TIMERS
        self._soas = {
            apex: dns.rrset.from_rdata(
                apex,
                ttl,
                dns.rdata.from_text(
                    _IN,
                    dns.rdatatype.SOA,
                    f"{apex} hostmaster.{apex} {serial} {refresh} {retry} {expire} {ttl}",
                ),
            )
            for apex in self._apexes
        }

    @property
    def ttl(self) -> int:
        return self._ttl

    @property
    def records(self) -> dict[str, tuple[str, ...]]:
        """``{"api.cloud1.example.": ("198.18.0.100", ...)}``: A addresses, then AAAA."""
        return {
            name.to_text(): tuple(r.to_text() for r in (*entry.a, *entry.aaaa))
            for name, entry in self._entries.items()
        }

    @property
    def apexes(self) -> tuple[str, ...]:
        """The names we are authoritative under, closest (longest) first."""
        return tuple(a.to_text() for a in self._apexes)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Zone):
            return NotImplemented
        return self._ttl == other._ttl and self.records == other.records

    def __hash__(self) -> int:
        return hash((self._ttl, tuple(sorted(self.records.items()))))

    def __repr__(self) -> str:
        return f"Zone({self.records!r}, ttl={self._ttl})"

    def _apex_of(self, qname: dns.name.Name) -> dns.name.Name | None:
        for apex in self._apexes:
            if qname.is_subdomain(apex):
                return apex
        return None

    def _exists(self, qname: dns.name.Name) -> bool:
        """True for the apexes and every ancestor of a known name (empty non-terminals,
        RFC 8020: they exist, so they are NODATA, not NXDOMAIN)."""
        return qname in self._apexes or any(n.is_subdomain(qname) for n in self._entries)

    def _soa(self, apex: dns.name.Name) -> dns.rrset.RRset:
        return self._soas[apex]


def zone_for(spec: Spec, live: Mapping[str, Sequence[str]], ttl: int = DEFAULT_TTL) -> Zone:
    """The zone of ``spec``'s vip-set resources that have ``dns:``, from their live VIPs.

    ``live`` maps a resource name to the addresses that are up (``"198.18.0.100"`` or with a
    prefix, ``"198.18.0.100/24"``). Only addresses the resource's spec lists are served (a stale
    or corrupt live record cannot point clients elsewhere), in the spec's order; unreadable ones
    are ignored. A resource missing from ``live`` has no live VIP: its name answers NODATA.
    Two resources with the same name share it. Raises ``ValueError`` for a bad DNS name.
    """
    names: dict[str, list[Address]] = {}
    for res_name, res in spec.resources.items():
        if res.vip_set is None or res.dns is None:
            continue
        up = set()
        for text in live.get(res_name, ()):
            try:
                up.add(ipaddress.ip_interface(text).ip)
            except ValueError:
                continue
        configured = [iface.ip for iface in res.vip_set.addresses]
        names.setdefault(res.dns, []).extend(ip for ip in configured if ip in up)
    return Zone(names, ttl=ttl)


# --- answering ------------------------------------------------------------------------------


def error_reply(query: bytes, rcode: dns.rcode.Rcode) -> bytes | None:
    """A header-only reply with ``rcode`` (id, opcode and RD copied from ``query``), or
    ``None`` when ``query`` has no readable header or is itself a response (QR set). For the
    shell's own failures (SERVFAIL) and for queries :func:`answer` cannot parse."""
    if len(query) < _HEADER.size:
        return None
    ident, flags = _HEADER.unpack_from(query)[:2]
    if flags & _QR:
        return None  # a response: answering it could loop two servers into each other
    flags = _QR | (flags & (0xF << _OPCODE_SHIFT)) | (flags & _RD) | int(rcode)
    return _HEADER.pack(ident, flags, 0, 0, 0, 0)


def _udp_limit(query: dns.message.Message, transport: Transport) -> int:
    if transport == "tcp":
        return 65535
    if query.edns < 0:
        return 512
    return max(512, min(query.payload, EDNS_PAYLOAD))


def _rotated(items: Sequence[dns.rdata.Rdata], rotate: int) -> list[dns.rdata.Rdata]:
    if not items:
        return []
    k = rotate % len(items)
    return [*items[k:], *items[:k]]


def _fill(
    response: dns.message.Message, qname: dns.name.Name, qtype: int, zone: Zone, rotate: int
) -> None:
    """Put the answer for ``qname``/``qtype`` (under an apex) into ``response``."""
    apex = zone._apex_of(qname)
    assert apex is not None  # the caller refused names outside every apex
    entry = zone._entries.get(qname)
    if entry is None and not zone._exists(qname):
        response.set_rcode(dns.rcode.NXDOMAIN)
        response.authority.append(zone._soa(apex))
        return
    wanted: list[tuple[int, Sequence[dns.rdata.Rdata]]] = []
    if entry is not None and qtype in (_A, dns.rdatatype.ANY):
        wanted.append((_A, entry.a))
    if entry is not None and qtype in (_AAAA, dns.rdatatype.ANY):
        wanted.append((_AAAA, entry.aaaa))
    for rdtype, rdatas in wanted:
        if rdatas:
            rrset = dns.rrset.RRset(qname, _IN, dns.rdatatype.RdataType(rdtype))
            for rdata in _rotated(rdatas, rotate):
                rrset.add(rdata, zone.ttl)
            response.answer.append(rrset)
    if qname == apex and qtype in (dns.rdatatype.SOA, dns.rdatatype.ANY):
        response.answer.append(zone._soa(apex))
    if not response.answer:
        response.authority.append(zone._soa(apex))  # NODATA, negative-cached for the TTL


def _refusal(query: dns.message.Message, zone: Zone) -> dns.rcode.Rcode | None:
    """The error rcode for a parsed query we will not answer, or ``None`` to answer it."""
    if query.edns > 0:
        return dns.rcode.BADVERS
    if len(query.question) != 1:
        return dns.rcode.FORMERR
    question = query.question[0]
    qtype = question.rdtype
    if qtype in (dns.rdatatype.AXFR, dns.rdatatype.IXFR) or question.rdclass != _IN:
        return dns.rcode.REFUSED
    if dns.rdatatype.is_metatype(qtype) and qtype != dns.rdatatype.ANY:
        return dns.rcode.FORMERR
    if zone._apex_of(question.name) is None:
        return dns.rcode.REFUSED
    return None


def answer(query: bytes, zone: Zone, rotate: int, transport: Transport = "udp") -> bytes | None:
    """The response to the DNS message ``query``, or ``None`` to drop it silently.

    ``rotate`` picks the round-robin start (the caller counts up); ``transport`` sets the size
    limit (``"tcp"``: 65535 bytes, no truncation). Never raises for any input bytes: see the
    module docstring for the table of answers.
    """
    if len(query) < _HEADER.size or _HEADER.unpack_from(query)[1] & _QR:
        return None
    if (_HEADER.unpack_from(query)[1] >> _OPCODE_SHIFT) & 0xF != dns.opcode.QUERY:
        return error_reply(query, dns.rcode.NOTIMP)
    try:
        parsed = dns.message.from_wire(query)
    except dns.message.UnknownTSIGKey:
        return error_reply(query, dns.rcode.REFUSED)
    except Exception:
        # dnspython's parser signals bad input with FormError, but also with ValueError,
        # IndexError, UnicodeError, ... from the rdata parsers: any failure here is the
        # sender's malformed message, never ours.
        return error_reply(query, dns.rcode.FORMERR)
    response = dns.message.make_response(parsed, our_payload=EDNS_PAYLOAD)
    refusal = _refusal(parsed, zone)
    if refusal is not None:
        response.set_rcode(refusal)
    else:
        response.flags |= dns.flags.AA
        question = parsed.question[0]
        _fill(response, question.name, question.rdtype, zone, rotate)
    # want_shuffle=False: dnspython shuffles RRsets by default; our order is the round-robin.
    return response.to_wire(
        max_size=_udp_limit(parsed, transport), prefer_truncation=True, want_shuffle=False
    )
