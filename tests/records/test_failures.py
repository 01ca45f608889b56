"""Failure records and systemic failures: what the agent adds (listed, at most RECENT), what the
controller moves out of the count (and only that), the time a ban runs from, and the
judgement over a whole range read (corral.records.failures)."""

from __future__ import annotations

from corral.records import FailCountRecord, StoreRecords, SystemicRecord, snapshot
from corral.records.agent import RECENT, RecentFailure
from corral.records.failures import judge_failures, with_judged
from corral.spec import load_spec_text
from corral.store import Keys, KeyValue
from tests.controller.harness import SPECS

SPEC = load_spec_text(SPECS["failures"])


def failures(*times: float) -> FailCountRecord:
    record = FailCountRecord()
    for at in times:
        record = record.increment(at, "check failed")
    return record


def test_the_agent_lists_its_last_failures_and_keeps_the_count() -> None:
    record = failures(*range(RECENT + 3))
    assert record.count == RECENT + 3
    assert [r.at for r in record.recent] == list(range(3, RECENT + 3))
    assert record.counted_before == 2  # the newest counted failure no longer listed
    assert record.last == record.last_counted == RECENT + 2


def test_a_systemic_failure_moves_out_of_the_count_once() -> None:
    record = failures(10, 20, 30).excuse({20, 30, 99})
    assert (record.count, record.systemic) == (1, 2)
    assert record.recent == (RecentFailure(10), RecentFailure(20, True), RecentFailure(30, True))
    assert record.last == 30  # people see the last failure of any kind
    assert record.last_counted == 10  # a ban runs from the last counted one
    assert record.excuse({20, 30}) is record  # judged once: nothing moves twice


def test_the_last_counted_failure_survives_when_it_is_no_longer_listed() -> None:
    record = failures(5)
    for at in range(100, 100 + RECENT):
        record = record.increment(at, "x").excuse({at})
    assert record.count == 1 and record.systemic == RECENT
    assert record.last_counted == 5
    everything = failures(1, 2).excuse({1, 2})
    assert everything.count == 0 and everything.last_counted == 0


def records_of(**by_node: FailCountRecord) -> StoreRecords:
    records = StoreRecords(registrations={"n1": 2, "n2": 3, "n3": 4})
    records.failcounts = {(node, "web"): record for node, record in by_node.items()}
    return records


def test_failures_on_two_of_three_nodes_are_excused_in_the_same_step() -> None:
    """The snapshot of the same step sees them excused: no ban, not even for one step."""
    records = records_of(n1=failures(10, 11, 12), n2=failures(20))
    judged = judge_failures(SPEC, records, now=21)
    assert set(judged.excused) == {("n1", "web"), ("n2", "web")}
    assert judged.excused[("n1", "web")].count == 0
    assert judged.episodes["web"].nodes == ("n1", "n2")
    snap = snapshot(SPEC, with_judged(records, judged), now=21)
    assert {key: fail.count for key, fail in snap.failures.items()} == {
        ("web", "n1"): 0,
        ("web", "n2"): 0,
    }


def test_failures_on_one_node_stay_counted_and_offline_nodes_do_not_make_most() -> None:
    alone = records_of(n1=failures(10, 11, 12))
    assert judge_failures(SPEC, alone, now=13).excused == {}
    # n3 is offline (no registration): two online nodes, both must fail
    records = records_of(n1=failures(10), n2=failures(11))
    records.registrations.pop("n3")
    assert set(judge_failures(SPEC, records, now=12).excused) == {("n1", "web"), ("n2", "web")}
    records.registrations.pop("n2")  # one online node: nothing is most of it but itself
    assert judge_failures(SPEC, records, now=12).excused == {}


def test_a_record_written_before_recent_is_counted_as_it_was() -> None:
    old = FailCountRecord.read(b'{"count":3,"last":20}')
    records = records_of(n1=old, n2=failures(21))
    judged = judge_failures(SPEC, records, now=22)
    assert judged.excused == {} and judged.episodes == {}
    assert snapshot(SPEC, records, now=22).failures[("web", "n1")].last == 20


def test_corral_status_says_a_resource_is_in_a_systemic_episode() -> None:
    from corral.records.view import cluster_view

    keys = Keys("t")
    rows = [
        (keys.node("n1"), b"{}"),
        (keys.failcount("n1", "web"), failures(10).excuse({10}).dump()),
        (keys.systemic("web"), SystemicRecord(10, ("n1", "n2"), 3).dump()),
    ]
    kvs = [KeyValue(key, value, i + 2, i + 2, 1) for i, (key, value) in enumerate(rows)]
    view = cluster_view(SPEC, keys, kvs)
    assert view["resources"]["web"]["systemic"] == ["n1", "n2"]
    assert view["resources"]["web"]["failcounts"] == {"n1": 0}
