"""The pure answers: every kind of reply a client can get, and the zone built from a spec."""

from __future__ import annotations

import struct
from pathlib import Path

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.tsigkeyring
import dns.update
import pytest

from corral.dns import EDNS_PAYLOAD, Zone, answer, name_problem, zone_for
from corral.dns.zone import error_reply
from corral.spec import load_spec, load_spec_text

from .helpers import addresses, ask, rcode

EXAMPLE = Path(__file__).parents[2] / "examples" / "openstack.yaml"
VIPS = ["198.18.0.100", "198.18.0.101", "198.18.0.102"]
ZONE = Zone(
    {
        "api.cloud1.example": [*VIPS, "2001:db8::1", "2001:db8::2"],
        "db.cloud1.example.": [],  # every VIP down
        "v4only.cloud1.example": ["198.18.0.110"],
        "deep.in.cloud1.example": ["198.18.0.120"],
    }
)


def soa_minimum(response: dns.message.Message) -> tuple[str, int, int]:
    """(owner, record TTL, SOA minimum) of the single SOA in the authority section."""
    [rrset] = response.authority
    assert rrset.rdtype == dns.rdatatype.SOA
    [soa] = list(rrset)
    return rrset.name.to_text(), rrset.ttl, soa.minimum


# --- answers from the zone --------------------------------------------------------------------


def test_a_records_of_live_vips_are_authoritative_with_a_one_second_ttl() -> None:
    response = ask(ZONE, "api.cloud1.example")
    assert rcode(response) == "NOERROR"
    assert response.flags & dns.flags.AA
    assert not response.flags & dns.flags.TC
    assert addresses(response) == VIPS
    assert [rrset.ttl for rrset in response.answer] == [1]
    assert response.authority == []


def test_round_robin_rotates_the_start_and_keeps_the_cycle() -> None:
    seen = [addresses(ask(ZONE, "api.cloud1.example", rotate=r)) for r in range(4)]
    assert seen[0] == VIPS
    assert seen[1] == [VIPS[1], VIPS[2], VIPS[0]]
    assert seen[2] == [VIPS[2], VIPS[0], VIPS[1]]
    assert seen[3] == seen[0]
    # Every VIP comes first equally often: that is what spreads the clients.
    assert sorted(s[0] for s in seen[:3]) == VIPS
    big = ask(ZONE, "api.cloud1.example", rotate=10**12 + 1)  # huge counters are fine
    assert addresses(big) == seen[(10**12 + 1) % 3]


def test_aaaa_records_rotate_on_their_own() -> None:
    assert addresses(ask(ZONE, "api.cloud1.example", "AAAA"), "AAAA") == [
        "2001:db8::1",
        "2001:db8::2",
    ]
    rotated = ask(ZONE, "api.cloud1.example", "AAAA", rotate=1)
    assert addresses(rotated, "AAAA") == ["2001:db8::2", "2001:db8::1"]
    assert addresses(rotated, "A") == []


def test_any_returns_both_families() -> None:
    response = ask(ZONE, "api.cloud1.example", "ANY")
    assert addresses(response, "A") == VIPS
    assert addresses(response, "AAAA") == ["2001:db8::1", "2001:db8::2"]


def test_names_match_in_any_case_and_the_question_keeps_the_clients_case() -> None:
    # Resolvers randomise the case (DNS 0x20) and check the question they get back.
    response = ask(ZONE, "ApI.CLOUD1.example")
    assert addresses(response) == VIPS
    assert response.question[0].name.to_text() == "ApI.CLOUD1.example."
    assert response.answer[0].name.to_text() == "ApI.CLOUD1.example."


def test_nodata_for_a_type_the_name_does_not_have() -> None:
    for name, rdtype in [
        ("api.cloud1.example", "MX"),
        ("api.cloud1.example", "TXT"),
        ("v4only.cloud1.example", "AAAA"),
    ]:
        response = ask(ZONE, name, rdtype)
        assert rcode(response) == "NOERROR", (name, rdtype)
        assert response.answer == []
        assert response.flags & dns.flags.AA
        assert soa_minimum(response) == ("cloud1.example.", 1, 1)


def test_a_name_whose_vips_are_all_down_is_nodata_not_nxdomain() -> None:
    for rdtype in ("A", "AAAA", "ANY"):
        response = ask(ZONE, "db.cloud1.example", rdtype)
        assert rcode(response) == "NOERROR"
        assert response.answer == []
        assert soa_minimum(response) == ("cloud1.example.", 1, 1)


def test_unknown_name_under_the_apex_is_nxdomain_with_the_soa() -> None:
    for name in ("nope.cloud1.example", "x.api.cloud1.example", "a.b.c.cloud1.example"):
        response = ask(ZONE, name)
        assert rcode(response) == "NXDOMAIN", name
        assert response.flags & dns.flags.AA
        assert response.answer == []
        owner, ttl, minimum = soa_minimum(response)
        assert owner == "cloud1.example." and ttl == 1 and minimum == 1


def test_the_apex_answers_its_soa_and_is_nodata_for_addresses() -> None:
    response = ask(ZONE, "cloud1.example", "SOA")
    assert rcode(response) == "NOERROR"
    [rrset] = response.answer
    [soa] = list(rrset)
    assert rrset.rdtype == dns.rdatatype.SOA and soa.minimum == 1
    assert soa.mname.to_text() == "cloud1.example."
    nodata = ask(ZONE, "cloud1.example", "A")
    assert rcode(nodata) == "NOERROR" and nodata.answer == []
    assert soa_minimum(nodata)[0] == "cloud1.example."


def test_an_ancestor_of_a_known_name_exists_and_is_nodata() -> None:
    # deep.in.cloud1.example makes in.cloud1.example its apex, and cloud1.example's child.
    response = ask(ZONE, "in.cloud1.example")
    assert rcode(response) == "NOERROR"
    assert response.answer == []
    assert soa_minimum(response)[0] == "in.cloud1.example."  # the closest apex
    assert rcode(ask(ZONE, "other.in.cloud1.example")) == "NXDOMAIN"


def test_a_custom_ttl_is_the_record_ttl_and_the_negative_ttl() -> None:
    zone = Zone({"api.cloud1.example": VIPS}, ttl=5)
    assert [r.ttl for r in ask(zone, "api.cloud1.example").answer] == [5]
    assert soa_minimum(ask(zone, "nope.cloud1.example"))[1:] == (5, 5)


# --- refusals and errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["example.org", "example", "cloud2.example", "cloud1.example.org", "."]
)
def test_names_outside_every_apex_are_refused_without_aa(name: str) -> None:
    response = ask(ZONE, name)
    assert rcode(response) == "REFUSED"
    assert not response.flags & dns.flags.AA
    assert response.answer == [] and response.authority == []


def test_refused_for_zone_transfers_and_other_classes() -> None:
    assert rcode(ask(ZONE, "cloud1.example", "AXFR")) == "REFUSED"
    assert rcode(ask(ZONE, "cloud1.example", "IXFR")) == "REFUSED"
    chaos = dns.message.make_query("version.bind", "TXT", rdclass=dns.rdataclass.CH)
    wire = answer(chaos.to_wire(), ZONE, 0)
    assert wire is not None
    assert dns.message.from_wire(wire).rcode() == dns.rcode.REFUSED
    in_zone_chaos = dns.message.make_query("api.cloud1.example", "A", rdclass=dns.rdataclass.CH)
    wire = answer(in_zone_chaos.to_wire(), ZONE, 0)
    assert wire is not None and dns.message.from_wire(wire).rcode() == dns.rcode.REFUSED


def test_tsig_signed_queries_are_refused() -> None:
    keyring = dns.tsigkeyring.from_text({"key.": "c2VjcmV0c2VjcmV0c2VjcmV0"})
    query = dns.message.make_query("api.cloud1.example", "A")
    query.use_tsig(keyring, keyname="key.")
    wire = answer(query.to_wire(), ZONE, 0)
    assert wire is not None
    reply = dns.message.from_wire(wire)
    assert reply.id == query.id and reply.rcode() == dns.rcode.REFUSED


def test_other_opcodes_are_notimp() -> None:
    update = dns.update.UpdateMessage("cloud1.example")
    update.add("api", 1, "A", "198.18.0.1")  # RFC 2136: exactly what we chose not to support
    for wire_in in [
        update.to_wire(),
        _with_opcode(dns.message.make_query("api.cloud1.example", "A"), dns.opcode.NOTIFY),
        _with_opcode(dns.message.make_query("api.cloud1.example", "A"), dns.opcode.STATUS),
        struct.pack(">HHHHHH", 7, 15 << 11, 0, 0, 0, 0),  # an unassigned opcode, header only
    ]:
        wire = answer(wire_in, ZONE, 0)
        assert wire is not None
        reply = dns.message.from_wire(wire)
        assert reply.rcode() == dns.rcode.NOTIMP
        assert reply.id == struct.unpack(">H", wire_in[:2])[0]
        assert reply.flags & dns.flags.QR


def _with_opcode(query: dns.message.Message, opcode: dns.opcode.Opcode) -> bytes:
    query.set_opcode(opcode)
    return query.to_wire()


def _header(qd: int, an: int = 0, ns: int = 0, ar: int = 0, ident: int = 0x1234) -> bytes:
    return struct.pack(">HHHHHH", ident, 0x0100, qd, an, ns, ar)


@pytest.mark.parametrize(
    "wire",
    [
        _header(1),  # promises a question, has none
        _header(1) + b"\x03api\x06cloud1",  # name cut off
        _header(1) + b"\x03api\x00\x00",  # type/class cut off
        _header(1) + b"\xc0\x0c\x00\x01\x00\x01",  # compression pointer loop
        _header(1) + b"\x40" + b"x" * 64 + b"\x00\x00\x01\x00\x01",  # label type 0x40
        _header(0),  # no question at all
        dns.message.make_query("api.cloud1.example", "A").to_wire() + b"junk",  # trailing junk
        _header(0, ar=2)  # two OPT records
        + (b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00") * 2,
    ],
    ids=["no-question", "cut-name", "cut-type", "pointer-loop", "bad-label", "qd0", "junk", "2opt"],
)
def test_malformed_queries_with_a_header_get_formerr(wire: bytes) -> None:
    reply = answer(wire, ZONE, 0)
    assert reply is not None
    parsed = dns.message.from_wire(reply)
    assert parsed.rcode() == dns.rcode.FORMERR
    assert parsed.id == struct.unpack(">H", wire[:2])[0]
    assert parsed.flags & dns.flags.RD  # copied


def test_two_questions_or_a_meta_type_get_formerr() -> None:
    query = dns.message.make_query("api.cloud1.example", "A")
    query.question.append(dns.message.make_query("db.cloud1.example", "A").question[0])
    wire = answer(query.to_wire(), ZONE, 0)
    assert wire is not None and dns.message.from_wire(wire).rcode() == dns.rcode.FORMERR
    assert rcode(ask(ZONE, "api.cloud1.example", "OPT")) == "FORMERR"
    assert rcode(ask(ZONE, "api.cloud1.example", "TKEY")) == "FORMERR"


@pytest.mark.parametrize(
    "wire",
    [b"", b"\x00", b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00"],  # up to 11 bytes
    ids=["empty", "one-byte", "eleven-bytes"],
)
def test_garbage_without_a_header_is_dropped(wire: bytes) -> None:
    assert answer(wire, ZONE, 0) is None
    assert error_reply(wire, dns.rcode.SERVFAIL) is None


def test_responses_are_dropped_so_two_servers_never_loop() -> None:
    query = dns.message.make_query("api.cloud1.example", "A")
    response_wire = answer(query.to_wire(), ZONE, 0)
    assert response_wire is not None
    assert answer(response_wire, ZONE, 0) is None
    assert error_reply(response_wire, dns.rcode.SERVFAIL) is None


def test_error_reply_copies_id_opcode_and_rd() -> None:
    query = dns.message.make_query("api.cloud1.example", "A")
    reply = error_reply(query.to_wire(), dns.rcode.SERVFAIL)
    assert reply is not None
    parsed = dns.message.from_wire(reply)
    assert parsed.id == query.id and parsed.rcode() == dns.rcode.SERVFAIL
    assert parsed.flags & dns.flags.QR and parsed.flags & dns.flags.RD
    assert parsed.question == []


# --- EDNS and size ----------------------------------------------------------------------------


def test_opt_is_echoed_only_when_the_query_had_one() -> None:
    with_edns = ask(ZONE, "api.cloud1.example", use_edns=0, payload=4096)
    assert with_edns.edns == 0 and with_edns.payload == EDNS_PAYLOAD
    assert ask(ZONE, "api.cloud1.example").edns == -1
    # Also on errors and refusals, when the query parsed.
    assert ask(ZONE, "example.org", use_edns=0).edns == 0
    assert ask(ZONE, "nope.cloud1.example", use_edns=0).edns == 0


def test_an_unknown_edns_version_gets_badvers() -> None:
    response = ask(ZONE, "api.cloud1.example", use_edns=1)
    assert response.rcode() == dns.rcode.BADVERS
    assert response.edns == 0 and response.answer == []


MANY = [f"198.18.{i // 250}.{i % 250 + 1}" for i in range(100)]  # 100 A records: ~1650 bytes


@pytest.mark.parametrize(
    ("count", "edns", "limit", "fits"),
    [
        (3, None, 512, True),
        (40, None, 512, False),  # 40 * 16 bytes > 512: TC
        (40, 4096, EDNS_PAYLOAD, True),  # the client accepts more; we send up to 1232
        (40, 600, 600, False),  # the client's size is the limit
        (25, 100, 512, True),  # an EDNS size below 512 means 512
        (40, 100, 512, False),
        (100, 4096, EDNS_PAYLOAD, False),  # over our own cap
    ],
)
def test_udp_answers_fit_the_limit_or_are_truncated_with_tc(
    count: int, edns: int | None, limit: int, fits: bool
) -> None:
    zone = Zone({"api.cloud1.example": MANY[:count]})
    query = dns.message.make_query(
        "api.cloud1.example", "A", use_edns=edns is not None, payload=edns or 512
    )
    wire = answer(query.to_wire(), zone, 0)
    assert wire is not None and len(wire) <= limit
    response = dns.message.from_wire(wire)
    if fits:
        assert not response.flags & dns.flags.TC
        assert len(addresses(response)) == count
    else:
        # No partial RRset: the client sees TC and asks again over TCP.
        assert response.flags & dns.flags.TC
        assert response.answer == []
        assert rcode(response) == "NOERROR"
        assert response.question[0].name.to_text() == "api.cloud1.example."
    assert response.edns == (0 if edns is not None else -1)


def test_tcp_answers_are_never_truncated() -> None:
    zone = Zone({"api.cloud1.example": MANY})
    response = ask(zone, "api.cloud1.example", transport="tcp")
    assert not response.flags & dns.flags.TC
    assert addresses(response) == MANY
    assert addresses(ask(zone, "api.cloud1.example", transport="tcp", rotate=99))[0] == MANY[99]


# --- the zone ---------------------------------------------------------------------------------


def test_zone_normalises_names_and_drops_duplicate_addresses() -> None:
    zone = Zone(
        {"API.Cloud1.Example": ["198.18.0.1", "198.18.0.1"], "api.cloud1.example.": ["::1"]}
    )
    assert zone.records == {"api.cloud1.example.": ("198.18.0.1", "::1")}
    assert zone.apexes == ("cloud1.example.",)
    assert zone.ttl == 1
    assert zone == Zone({"api.cloud1.example": ["198.18.0.1", "::1"]})
    # The order is the round-robin base, so it is part of the zone.
    assert Zone({"a.b.c": ["198.18.0.1", "198.18.0.2"]}) != Zone(
        {"a.b.c": ["198.18.0.2", "198.18.0.1"]}
    )
    assert zone != Zone({"api.cloud1.example": ["198.18.0.1", "::1"]}, ttl=2)
    assert len({zone, Zone({"api.cloud1.example": ["198.18.0.1", "::1"]})}) == 1


def test_an_empty_zone_refuses_everything() -> None:
    zone = Zone()
    assert zone.records == {} and zone.apexes == ()
    assert rcode(ask(zone, "api.cloud1.example")) == "REFUSED"


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("example", "at least two labels"),
        (".", "at least two labels"),
        ("", "at least two labels"),
        ("*.cloud1.example", "wildcard"),
        ("a.*.cloud1.example", "wildcard"),
        ("x" * 64 + ".example", "not a DNS name"),
        (".".join(["abcdefghi"] * 30), "not a DNS name"),  # over 255 octets
        ("a..example", "not a DNS name"),
    ],
)
def test_bad_names_are_refused_with_the_reason(name: str, problem: str) -> None:
    found = name_problem(name)
    assert found is not None and problem in found
    with pytest.raises(ValueError, match=problem):
        Zone({name: []})


def test_good_names_and_bad_addresses() -> None:
    assert name_problem("api.cloud1.example") is None
    assert name_problem("API.cloud1.example.") is None
    assert name_problem("bücher.example") is None  # IDNA
    with pytest.raises(ValueError):
        Zone({"api.cloud1.example": ["198.18.0.300"]})
    with pytest.raises(ValueError):
        Zone({"api.cloud1.example": ["198.18.0.1/24"]})
    with pytest.raises(ValueError, match="scoped"):
        Zone({"api.cloud1.example": ["fe80::1%eth0"]})
    with pytest.raises(ValueError, match="TTL"):
        Zone({}, ttl=-1)


# --- from a spec ------------------------------------------------------------------------------


def test_zone_for_the_example_serves_the_live_vips_in_spec_order() -> None:
    spec = load_spec(EXAMPLE)
    live = {"api-vips": ["198.18.0.102/24", "198.18.0.100"]}
    zone = zone_for(spec, live)
    assert zone.records == {"api.cloud1.example.": ("198.18.0.100", "198.18.0.102")}
    assert addresses(ask(zone, "api.cloud1.example")) == ["198.18.0.100", "198.18.0.102"]
    # Nothing live: the name still exists (NODATA), it is just down.
    down = zone_for(spec, {})
    assert down.records == {"api.cloud1.example.": ()}
    response = ask(down, "api.cloud1.example")
    assert rcode(response) == "NOERROR" and response.answer == []


def test_zone_for_serves_only_the_addresses_the_spec_lists() -> None:
    spec = load_spec(EXAMPLE)
    # A stale or corrupt live record must not point clients at someone else's address.
    live = {"api-vips": ["10.0.0.1", "garbage", "", "198.18.0.101", "198.18.0.101/32"]}
    assert zone_for(spec, live).records == {"api.cloud1.example.": ("198.18.0.101",)}
    # Live addresses of a resource without dns: are not served; nor are unknown resources.
    assert zone_for(spec, {"haproxy": ["198.18.0.100"], "ghost": ["198.18.0.100"]}).records == {
        "api.cloud1.example.": ()
    }


def test_zone_for_several_vip_sets_and_families() -> None:
    spec = load_spec_text(
        "cluster: c1\n"
        "nodes:\n"
        "  n1: {address: 198.18.0.11, roles: [lb]}\n"
        "  n2: {address: 198.18.0.12, roles: [lb]}\n"
        "  n3: {address: '2001:db8::3', roles: [lb6]}\n"
        "  n4: {address: '2001:db8::4', roles: [lb6], kind: remote}\n"
        "resources:\n"
        "  api: {vip-set: [198.18.0.100/24, 198.18.0.101/24], on: {role: lb}, dns: API.c1.example}\n"
        "  v6: {vip-set: ['2001:db8::10/64', '2001:db8::11/64'], on: {role: lb6}, dns: v6.c1.example}\n"
        "  plain: {vip-set: [198.18.0.120/24]}\n"
    )
    live = {
        "api": ["198.18.0.101"],
        "v6": ["2001:db8::11", "2001:db8::10"],
        "plain": ["198.18.0.120"],
    }
    zone = zone_for(spec, live, ttl=3)
    assert zone.records == {
        "api.c1.example.": ("198.18.0.101",),
        "v6.c1.example.": ("2001:db8::10", "2001:db8::11"),
    }
    assert zone.ttl == 3
    assert addresses(ask(zone, "v6.c1.example", "AAAA", rotate=1), "AAAA") == [
        "2001:db8::11",
        "2001:db8::10",
    ]
    assert rcode(ask(zone, "v6.c1.example", "A")) == "NOERROR"
