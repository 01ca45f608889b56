"""A store written by corral before versioned records (commit af3d4aa, recorded by
``record_dump.py`` into ``data/store-before-v1.json``) reads, with this version, as an operator
knew it: node states, assignments and their registrations, failcounts, maintenance, bans and
moves, the scheduler's snapshot; and a controller of this version rewrites none of it."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from corral.agent.assigned import Registration, read_desired
from corral.agent.controller import Controller
from corral.core.assign import staged_assignments
from corral.core.controller import StepInputs, step_writes
from corral.core.scheduler import FailCount, Instance, NodeStatus, schedule
from corral.records import (
    AssignedInstance,
    FailCountRecord,
    RequestRecord,
    read_records,
    snapshot_from_kvs,
    states,
)
from corral.spec import load_spec_text
from corral.store import KeyValue, MemoryStore
from tests.records.record_dump import KEYS, SPEC

DUMP = Path(__file__).parent / "data" / "store-before-v1.json"
SPEC_NOW = load_spec_text(SPEC.replace("FENCE_AGENT", "/bin/true"))
REASON = "start failed: exit status 1 (recorded on purpose)"


def recorded() -> list[KeyValue]:
    doc = json.loads(DUMP.read_text())
    return [
        KeyValue(
            kv["key"].encode(),
            base64.b64decode(kv["value"]),
            kv["create_revision"],
            kv["mod_revision"],
            1,
            kv["lease"],
        )
        for kv in doc["kvs"]
    ]


def test_the_dump_was_written_before_versions() -> None:
    values = [json.loads(kv.value) for kv in recorded() if kv.value.startswith(b"{")]
    assert values and not any("v" in v for v in values)


def test_an_operator_sees_the_cluster_as_before() -> None:
    kvs = recorded()
    records = read_records(KEYS, kvs)
    assert records.skipped == []
    assert states(SPEC_NOW, records) == {"n1": "online", "n2": "online", "n3": "fenced"}
    assert records.fenced["n3"].revision == records.registrations["n3"] == 15
    assert records.fenced["n3"].device == "power"
    assert {name: a.instances for name, a in records.assign.items()} == {
        "db": (AssignedInstance("n1", "started", None, 2),),
        "front": (AssignedInstance("n1", "started", None, 2),),
        "web": (
            AssignedInstance("n1", "started", None, 2),
            AssignedInstance("n2", "started", None, 14),
        ),
    }
    assert records.registrations == {"n1": 2, "n2": 14, "n3": 15}
    (failure,) = records.failcounts.items()
    assert failure[0] == ("n3", "web") and failure[1].count == 1 and failure[1].reason == REASON
    maintenance = records.admin.maintenance.maintenance()
    covered = {
        (r, n) for r in SPEC_NOW.resources for n in SPEC_NOW.nodes if maintenance.covers(r, n)
    }
    assert covered == {("web", "n2")}
    assert records.admin.bans.pairs() == {("db", "n2")}
    assert dict(records.admin.moves.entries) == {"db": "n1"}
    assert records.admin.standby.nodes == ()
    assert records.requests == {("n3", "web"): RequestRecord("restart", "0" * 32)}
    assert dict(records.lb["n1"].servers) == {}
    assert [e.kind for e in records.events][:2] == ["controller", "assign"]
    assert records.events[-1].reason.startswith("web -> n1, n2: web@n2 in maintenance")
    for (node, res), status in records.status.items():
        assert [i.known_health for i in status.instances] == ["healthy"], (node, res)


def test_the_scheduler_snapshot_is_what_it_should_be() -> None:
    kvs = recorded()
    last = FailCountRecord.read(next(kv.value for kv in kvs if b"/failcounts/" in kv.key)).last
    snap = snapshot_from_kvs(SPEC_NOW, KEYS, kvs, now=last + 60)
    assert snap.nodes == {
        "n1": NodeStatus(state="online"),
        "n2": NodeStatus(state="online"),
        "n3": NodeStatus(state="offline", fenced=True),
    }
    assert set(snap.instances) == {
        Instance("db", "n1"),
        Instance("front", "n1"),
        Instance("web", "n1"),
        Instance("web", "n2"),
    }  # what ran on n3 (fenced) is not counted
    assert snap.failures == {("web", "n3"): FailCount(1, last)}
    assert snap.bans == {("db", "n2")} and snap.moves == {"db": "n1"} and not snap.tickets
    assert snap.maintenance.instances == {("web", "n2")}
    assert not any(s.standby for s in snap.nodes.values())


def test_a_new_controller_keeps_every_assignment_and_rewrites_none() -> None:
    """After the upgrade the plan is the same, and the records that say it are not rewritten
    for lacking ``v`` (no burst of writes and ``assign`` events at an upgrade)."""
    kvs = recorded()
    snap = snapshot_from_kvs(SPEC_NOW, KEYS, kvs, now=2e9)
    assigned, _notes = staged_assignments(SPEC_NOW, snap, schedule(SPEC_NOW, snap))
    controller = Controller(MemoryStore(), KEYS, "n1", lambda: SPEC_NOW)
    read = controller._parse(SPEC_NOW, kvs)
    plan = schedule(SPEC_NOW, snap)
    writes = step_writes(
        StepInputs(
            SPEC_NOW, snap, plan, assigned, _notes, read.current, read.registrations,
            read.status_revisions, frozenset(_notes),
        )
    )  # fmt: skip
    assert not writes.put and not writes.delete and not writes.changed


async def test_an_upgraded_agent_reads_its_assignments_and_maintenance() -> None:
    store = MemoryStore()
    for kv in recorded():  # the recorded revisions as they were (reg names one of them)
        store._kv[kv.key] = kv
    desired, frozen, stale = await read_desired(
        store, KEYS, SPEC_NOW, Registration("n2", 14), running={}
    )
    assert desired == {"web": "started"} and frozen == {"web"} and stale == set()
    desired, frozen, stale = await read_desired(
        store, KEYS, SPEC_NOW, Registration("n1", 2), running={}
    )
    assert desired == {"db": "started", "front": "started", "web": "started"}
    assert frozen == set() and stale == set()


def test_corral_status_of_the_recorded_store() -> None:
    from corral.records.view import cluster_view

    view = cluster_view(SPEC_NOW, KEYS, recorded())
    assert view["controller"] == "n1"
    assert view["nodes"] == {"n1": "online", "n2": "online", "n3": "fenced"}
    assert view["resources"]["web"]["assigned"] == ["n1", "n2"]
    assert view["resources"]["web"]["failcounts"] == {"n3": 1}
    assert [r["node"] for r in view["resources"]["web"]["running"]] == ["n1", "n2", "n3"]
    assert view["last_events"][-1]["kind"] == "assign" and view["skipped_records"] == []
