"""Building queries and reading answers with dnspython, for the DNS tests."""

from __future__ import annotations

import dns.message
import dns.rcode
import dns.rdatatype

from corral.dns import Zone, answer


def ask(
    zone: Zone,
    name: str,
    rdtype: str = "A",
    rotate: int = 0,
    transport: str = "udp",
    **query_args: object,
) -> dns.message.Message:
    """Ask ``zone`` one question through the wire format; the parsed response."""
    query = dns.message.make_query(name, rdtype, **query_args)  # type: ignore[arg-type]
    wire = answer(query.to_wire(), zone, rotate, transport)  # type: ignore[arg-type]
    assert wire is not None, "answer dropped a well-formed query"
    response = dns.message.from_wire(wire)
    assert response.id == query.id
    return response


def addresses(response: dns.message.Message, rdtype: str = "A") -> list[str]:
    """The addresses of ``rdtype`` in the answer section, in wire order."""
    wanted = dns.rdatatype.from_text(rdtype)
    return [r.to_text() for rrset in response.answer if rrset.rdtype == wanted for r in rrset]


def rcode(response: dns.message.Message) -> str:
    return dns.rcode.to_text(response.rcode())
