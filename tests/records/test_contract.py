"""The version contract of :mod:`corral.records`: every record round-trips and is written with
``"v": 1``; a field this version does not know is ignored; a record of a higher version is read
for the fields it knows; a malformed record is skipped with a reason, never a crash."""

from __future__ import annotations

import json

import pytest

from corral.records import (
    VERSION,
    AssignedInstance,
    AssignRecord,
    BansRecord,
    Event,
    FailCountRecord,
    FencedRecord,
    LbRecord,
    MaintenanceRecord,
    Malformed,
    MemberRow,
    MembersRecord,
    MovesRecord,
    Record,
    RegistrationRecord,
    RequestRecord,
    StandbyRecord,
    StatusInstance,
    StatusRecord,
    SystemicRecord,
    TicketsRecord,
    encode,
)
from corral.records.agent import RecentFailure
from corral.records.galera import BootstrapClaim, ReportRecord, WriterRecord
from tests.galera_core.transcript import report

EXAMPLES: list[Record] = [
    RegistrationRecord("198.18.0.1", 4242, 1700000000.5),
    RegistrationRecord(),
    FencedRecord(7, 1700000000.25, "ipmi"),
    StatusRecord(
        (
            StatusInstance("promoted", "healthy", "answers", None, 12),
            StatusInstance("started", "unknown", "", "198.18.0.100"),
        )
    ),
    StatusRecord(),
    AssignRecord((AssignedInstance("n1", "started", None, 3), AssignedInstance("n2", "promoted"))),
    FailCountRecord(2, 1700000000.0, "start failed: exit status 1"),
    FailCountRecord(
        1,
        1700000002.5,
        "check failed",
        (RecentFailure(1700000001.0, True), RecentFailure(1700000002.5)),
        systemic=1,
        counted_before=1699999000.0,
    ),
    SystemicRecord(1700000001.0, ("n1", "n2"), 3),
    RequestRecord("restart", "ab12"),
    LbRecord({"web": {"n1": "ready", "n2": "drain"}}),
    MembersRecord((MemberRow("n1", "alive", 3, None), MemberRow("n2", "dead", 1, 2.5))),
    MaintenanceRecord(True, ("n1",), ("web",), ("db@n2",)),
    MaintenanceRecord(False, ("n1",), (), (), (("node:n1", "alice", 1700000000.5),)),
    StandbyRecord(("n3",)),
    BansRecord(("db@n2",)),
    MovesRecord({"db": "n1", "web": "n2"}),
    TicketsRecord({"east": "site-a"}),
    Event(1700000000.0, "n1", "web", "assign", "web -> n1"),
    ReportRecord.from_state(report(["n1", "grastate=5ee3:-1", "safe", "recovered=5ee3:9"]), 1.5),
    ReportRecord.from_state(report(["n1", "grastate=none", "view=4@a", "running"])),
    BootstrapClaim("n1", 12, "5ee3", 9, True, True, "n1 bootstraps: ...", "n2", 1700000000.0),
    WriterRecord("n2", "n1 was lost", 1700000000.0),
]


@pytest.mark.parametrize("record", EXAMPLES, ids=lambda r: type(r).__name__)
def test_every_record_round_trips_and_carries_its_version(record: Record) -> None:
    raw = record.dump()
    assert type(record).read(raw) == record
    assert json.loads(raw)["v"] == VERSION
    assert raw == encode(json.loads(raw)), "compact JSON, keys sorted (as etcdctl shows it)"


@pytest.mark.parametrize("record", EXAMPLES, ids=lambda r: type(r).__name__)
def test_a_newer_field_is_ignored_and_a_higher_version_read_for_what_it_knows(
    record: Record,
) -> None:
    value = json.loads(record.dump())
    value["coming_soon"] = {"a": [1, 2]}
    value["v"] = VERSION + 1
    assert type(record).read(encode(value)) == record


@pytest.mark.parametrize("record", EXAMPLES, ids=lambda r: type(r).__name__)
def test_not_json_or_not_an_object_is_malformed_with_a_reason(record: Record) -> None:
    kind = type(record)
    for raw, reason in ((b"\xff{", "not JSON"), (b"[1]", "not a JSON object but list")):
        with pytest.raises(Malformed) as caught:
            kind.read(raw)
        assert caught.value.reason == reason
        assert kind.parse(raw) is None


@pytest.mark.parametrize(
    ("kind", "value", "reason"),
    [
        (FencedRecord, {}, "no revision"),
        (FencedRecord, {"revision": "7"}, "revision is not an integer: '7'"),
        (FencedRecord, {"revision": True}, "revision is not an integer: True"),
        (FailCountRecord, {"count": "x"}, "count is not an integer or null: 'x'"),
        (FailCountRecord, {"count": -1}, "count is negative: -1"),
        (FailCountRecord, {"count": 1, "last": "now"}, "last is not a number: 'now'"),
        (FailCountRecord, {"systemic": -2}, "systemic is negative: -2"),
        (FailCountRecord, {"recent": [{"systemic": True}]}, "recent: no at"),
        (
            FailCountRecord,
            {"recent": [{"at": 1, "systemic": 1}]},
            "recent: systemic is not true or false: 1",
        ),
        (FailCountRecord, {"recent": 5}, "recent is not a list of objects: 5"),
        (SystemicRecord, {"nodes": ["n1"]}, "no since"),
        (SystemicRecord, {"since": 1, "nodes": "n1"}, "nodes is not a list of strings: 'n1'"),
        (RequestRecord, {}, "no action"),
        (LbRecord, {"servers": []}, "servers is not an object: []"),
        (
            LbRecord,
            {"servers": {"web": {"n1": 1}}},
            "servers.web is not an object of strings: {'n1': 1}",
        ),
        (StandbyRecord, {"nodes": "n1"}, "nodes is not a list of strings: 'n1'"),
        (StatusRecord, {"instances": 3}, "instances is not a list: 3"),
        (AssignRecord, {"instances": {}}, "instances is not a list: {}"),
        (Event, {"time": "x"}, "time is not a number: 'x'"),
        (MembersRecord, {"view": [{"state": "alive"}]}, "no name"),
        (RegistrationRecord, {"v": "one"}, "v is not a version number: 'one'"),
        (ReportRecord, {"grastate": {"uuid": "u"}}, "no seqno"),
        (ReportRecord, {"grastate": []}, "grastate is not an object: []"),
        (ReportRecord, {"recovered": {"uuid": "u", "seqno": "1"}}, "seqno is not an integer: '1'"),
        (ReportRecord, {"view": {"my_uuid": "m", "view_id": 3}}, "view_id is not a string: 3"),
        (ReportRecord, {"running": "yes"}, "running is not true or false: 'yes'"),
        (BootstrapClaim, {"node": "n1", "uuid": "u", "seqno": 1}, "no reg"),
        (WriterRecord, {}, "no node"),
    ],
)
def test_a_field_of_the_wrong_type_is_malformed(
    kind: type[Record], value: dict[str, object], reason: str
) -> None:
    with pytest.raises(Malformed) as caught:
        kind.read(encode(value))
    assert caught.value.reason == reason


def test_what_runs_and_what_is_frozen_is_read_entry_by_entry_as_before() -> None:
    """A status entry with a bad field still counts as running (health unknown); an assign
    entry without a node is dropped; a maintenance entry that is not a string freezes nothing
    and the rest holds: one bad field never hides what runs or lifts a maintenance."""
    status = StatusRecord.read(
        encode({"instances": [{"role": 1, "health": None, "item": 5, "score": "9"}, "junk"]})
    )
    assert status.instances == (StatusInstance("started", "unknown", "", None, None),)
    assign = AssignRecord.read(encode({"instances": [{"node": 1}, {"node": "n2", "reg": True}]}))
    assert assign.instances == (AssignedInstance("n2", "started", None, None),)
    maint = MaintenanceRecord.read(encode({"nodes": ["n1", 2], "resources": "web"}))
    assert maint.maintenance().nodes == {"n1"} and not maint.maintenance().resources
    authors = {"node:n1": {"by": 3, "at": 1}, "cluster": {"by": "a", "at": True}, "x": 5,
               "node:n2": {"by": "b", "at": 2}}  # fmt: skip
    maint = MaintenanceRecord.read(encode({"nodes": ["n2"], "set": authors}))
    assert maint.set_by == (("node:n2", "b", 2.0),) and maint.author("cluster") is None
    assert MaintenanceRecord.read(encode({"cluster": True, "set": [1]})).set_by == ()


def test_version_0_records_read_as_before() -> None:
    """Layouts as the code before versions wrote them (no ``v``)."""
    assert MovesRecord.read(b'{"db":"n1","web":3}').entries == {"db": "n1"}  # as before
    assert TicketsRecord.read(b'{"east":"site-a"}').entries == {"east": "site-a"}
    # the layout did not change: version 0 readers (dict, string values) read version 1
    assert json.loads(MovesRecord({"db": "n1"}).dump()) == {"v": 1, "db": "n1"}
    moved_v = MovesRecord({"v": "n2", "db": "n1"})  # a resource called v
    assert json.loads(moved_v.dump()) == {"v": "n2", "db": "n1"}
    assert MovesRecord.read(moved_v.dump()) == moved_v
    fc = FailCountRecord.read(b'{"count":2,"last":1700000000.5}')  # before reasons
    assert fc == FailCountRecord(2, 1700000000.5, "", counted_before=1700000000.5)
    assert fc.last_counted == 1700000000.5  # before `recent`: all it counted stays counted
    assert StatusRecord.read(b'{"instances":[{"health":"healthy"}]}').instances[0].known_health == (
        "healthy"
    )
    assert RegistrationRecord.read(b"{}") == RegistrationRecord()


def test_a_failure_is_counted_over_whatever_is_stored() -> None:
    """What the agent writes on a failure (:meth:`FailCountRecord.after`): one more over the
    stored count; none stored, or an unreadable one, starts at 1."""
    stored = FailCountRecord(2, 10.0, "old", counted_before=10.0).dump()
    assert FailCountRecord.after(stored, 20.0, "start failed") == FailCountRecord(
        3, 20.0, "start failed", (RecentFailure(20.0),), counted_before=10.0
    )
    assert FailCountRecord.after(None, 20.0, "x") == FailCountRecord(
        1, 20.0, "x", (RecentFailure(20.0),)
    )
    assert FailCountRecord.after(b"garbage", 20.0, "x").count == 1
    assert FailCountRecord().increment(5.0, "y").count == 1


def test_a_request_says_whether_it_is_a_restart() -> None:
    request = RequestRecord.parse(b'{"action":"restart","id":"1"}')
    assert request is not None and request.restart
    other = RequestRecord.parse(b'{"action":"reboot"}')
    assert other is not None and not other.restart  # the agent refuses it, with an event
    assert RequestRecord.parse(b'{"id":"1"}') is None
