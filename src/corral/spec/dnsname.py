"""Whether a name can be a VIP-set's DNS name (a spec check; the DNS server parses it too)."""

from __future__ import annotations

import dns.exception
import dns.name


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a VIP-set DNS name, or ``None`` if it can.

    A name needs at least two labels (its parent, the apex we answer for, must not be the
    root) and no wildcard label; it must be a valid DNS name (labels of at most 63 octets,
    255 in all; IDNA for non-ASCII).
    """
    try:
        parsed = dns.name.from_text(name.strip())
    except (dns.exception.DNSException, UnicodeError, ValueError) as exc:
        return f"not a DNS name: {exc}"
    if len(parsed.labels) < 3:  # the root label counts: "api.example." has three
        return "needs at least two labels (we answer for its parent, which must not be the root)"
    if parsed.is_wild() or b"*" in parsed.labels:
        return "wildcard names are not supported"
    return None
