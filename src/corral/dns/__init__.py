"""An authoritative DNS responder for VIP-set names: round-robin over the VIPs that are up.

Public API: :class:`Zone`, :func:`zone_for` (the zone of a spec and its live VIPs),
:func:`answer` (pure: query bytes -> response bytes or ``None``), :func:`name_problem` (why a
name cannot be served), :class:`DnsServer` and :class:`DnsStats` (the asyncio UDP + TCP shell).
"""

from corral.dns.server import DnsServer, DnsStats
from corral.dns.zone import DEFAULT_TTL, EDNS_PAYLOAD, Zone, answer, zone_for
from corral.spec.dnsname import name_problem

__all__ = [
    "DEFAULT_TTL",
    "EDNS_PAYLOAD",
    "DnsServer",
    "DnsStats",
    "Zone",
    "answer",
    "name_problem",
    "zone_for",
]
