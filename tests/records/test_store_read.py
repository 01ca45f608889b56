"""Corrupt or foreign records in the store are skipped, never fatal to the controller/agent."""

from __future__ import annotations

from dataclasses import replace

from corral.core.scheduler import Maintenance
from corral.records import (
    AssignedInstance,
    AssignRecord,
    MaintenanceRecord,
    encode,
    node_states,
    read_records,
    snapshot_from_kvs,
)
from corral.records.view import covering, maintenance_lines, maintenance_view
from corral.spec import load_spec_text
from corral.store import Keys, KeyValue

SPEC = load_spec_text(
    "cluster: t\nnodes:\n  n1: {address: 198.18.0.1}\n  n2: {address: 198.18.0.2, kind: remote}\n"
    "resources:\n  web: {process: /bin/web}\n"
)
KEYS = Keys("t")


def kv(key: bytes, value: bytes) -> KeyValue:
    return KeyValue(key, value, 1, 1, 1)


def test_corrupt_and_unknown_records_are_skipped() -> None:
    kvs = [
        kv(KEYS.node("n1"), encode({"address": "198.18.0.1"})),
        kv(KEYS.node("n2"), b"\xff not json"),  # corrupt value, but its lease lives
        kv(KEYS.status("n1", "web"), encode({"instances": [{"health": "healthy"}, "junk"]})),
        kv(KEYS.status("n1", "ghost"), encode({"instances": [{}]})),  # unknown resource
        kv(KEYS.failcount("n1", "web"), encode({"count": 2, "last": 5})),
        kv(KEYS.admin("maintenance"), encode(["not", "a", "mapping"])),
    ]
    snap = snapshot_from_kvs(SPEC, KEYS, kvs, now=10.0, lost={"n1"})
    assert snap.node("n1").state == "unclean"  # leased, but gossip holds it dead
    # rule 2: a live registration is online whatever its value says (a corrupt record must
    # not make its exclusive instances move while its lease lives)
    assert snap.node("n2").state == "online"
    assert snapshot_from_kvs(SPEC, KEYS, kvs[:1], now=10.0).node("n2").state == "offline"
    assert [(i.resource, i.node, i.health) for i in snap.instances] == [("web", "n1", "healthy")]
    assert snap.failures[("web", "n1")].count == 2
    assert not snap.maintenance.cluster
    skipped = read_records(KEYS, kvs).skipped
    assert [(s.key, s.reason) for s in skipped] == [
        (KEYS.admin("maintenance"), "not a JSON object but list")
    ]


def test_assignment_parsing_tolerates_garbage() -> None:
    assert AssignRecord.parse(b"{") is None
    record = AssignRecord.parse(encode({"instances": [{"node": 3}, {"node": "n1"}]}))
    assert record is not None and record.instances == (AssignedInstance("n1", "started"),)


def test_corral_status_shows_a_fenced_registration_as_fenced() -> None:
    """``corral status`` once called every registered node online, even the registration a
    fence record names (the node was powered off, its lease not expired yet); the scheduler
    never did. Both read the same rule now."""
    from corral.records.view import cluster_view

    kvs = [
        KeyValue(KEYS.node("n1"), encode({}), 7, 7, 1),
        KeyValue(KEYS.fenced("n1"), encode({"revision": 7}), 9, 9, 1),  # that registration
        KeyValue(KEYS.node("n2"), encode({}), 12, 12, 1),
        KeyValue(KEYS.fenced("n2"), encode({"revision": 8}), 9, 9, 1),  # an earlier one
    ]
    assert node_states(SPEC, KEYS, kvs) == {"n1": "fenced", "n2": "online"}
    assert cluster_view(SPEC, KEYS, kvs)["nodes"] == {"n1": "fenced", "n2": "online"}
    assert snapshot_from_kvs(SPEC, KEYS, kvs, now=1.0).node("n1").state == "offline"
    assert node_states(SPEC, KEYS, kvs[2:])["n1"] == "offline"


def test_one_reading_of_maintenance_for_the_scheduler_and_the_agents() -> None:
    """The agent once re-implemented maintenance coverage on the raw record (a string where a
    list belongs matched by substring there); both read it through MaintenanceRecord now."""

    def parse_maintenance(value: object) -> Maintenance:
        return (MaintenanceRecord.parse_value(value) or MaintenanceRecord()).maintenance()

    m = parse_maintenance(
        {"cluster": "false", "nodes": "n1", "resources": ["web", 7], "instances": ["db@n2", 3]}
    )
    assert not m.cluster and m.nodes == frozenset()  # a string is not a list of nodes
    assert m.resources == {"web"} and m.instances == {("db", "n2")}
    assert m.covers("web", "n1") and m.covers("db", "n2") and not m.covers("db", "n1")
    assert parse_maintenance(["junk"]) == parse_maintenance(None)


def test_corral_status_names_the_records_it_left_out() -> None:
    from corral.records.view import cluster_view

    kvs = [kv(KEYS.node("n1"), encode({})), kv(KEYS.status("n1", "web"), b"{oops")]
    view = cluster_view(SPEC, KEYS, kvs)
    assert view["skipped_records"] == ["/corral/t/status/n1/web (revision 1): not JSON"]
    assert view["resources"]["web"]["running"] == []


def test_maintenance_marks_the_most_specific_level_that_covers_a_row() -> None:
    record = MaintenanceRecord(
        False,
        ("n1",),
        ("web",),
        ("db@n2",),
        (("node:n1", "alice", 1.0), ("resource:web", "bob", 2.0)),
    )
    assert covering(record, "n1", "web") == {"level": "node", "by": "alice", "at": 1.0}
    assert covering(record, "n2", "web") == {"level": "resource", "by": "bob", "at": 2.0}
    assert covering(record, "n2", "db") == {"level": "instance", "by": None, "at": None}
    assert covering(record, "n3", "db") is None and covering(record, node="n2") is None
    assert covering(replace(record, cluster=True), "n3", "db") == {
        "level": "cluster", "by": None, "at": None,
    }  # fmt: skip
    lines = maintenance_lines(maintenance_view(record))
    assert lines[0].startswith("maintenance node n1 (alice, ") and len(lines) == 3
    assert lines[2] == "maintenance instance db@n2 (set by an unknown hand)"
