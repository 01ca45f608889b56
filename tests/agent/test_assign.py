"""Staged assignments: the controller never assigns a second holder, and keeps start order."""

from __future__ import annotations

from corral.core.assign import staged_assignments
from corral.core.scheduler import Instance, NodeStatus, Snapshot, schedule
from corral.spec import load_spec_text

SPEC = load_spec_text("""
cluster: t
nodes:
  n1: {address: 198.18.0.1}
  n2: {address: 198.18.0.2, kind: remote}
resources:
  db: {process: /bin/db}
  api: {process: /bin/api, mode: active-passive, prefer: {n2: 500}}
order: [db -> api]
""")


def nodes_of(assigned: dict, name: str) -> list[str]:  # type: ignore[type-arg]
    return [i.node for i in assigned[name]]


def test_dependency_first_then_dependent() -> None:
    snap = Snapshot()
    first, notes = staged_assignments(SPEC, snap, schedule(SPEC, snap))
    assert nodes_of(first, "db") == ["n1", "n2"] and nodes_of(first, "api") == []
    assert any("waits for db" in n for n in notes)
    running = Snapshot(instances=(Instance("db", "n1"),))
    second, _ = staged_assignments(SPEC, running, schedule(SPEC, running))
    assert nodes_of(second, "api") == ["n2"]


def test_exclusive_move_is_a_handoff() -> None:
    # api runs on n1, the plan wants n2 (prefer 500 beats stickiness): n1 must stop first
    snap = Snapshot(instances=(Instance("db", "n1"), Instance("db", "n2"), Instance("api", "n1")))
    assigned, notes = staged_assignments(SPEC, snap, schedule(SPEC, snap))
    assert nodes_of(assigned, "api") == []
    assert any("handoff" in n for n in notes)
    stopped = Snapshot(instances=(Instance("db", "n1"), Instance("db", "n2")))
    assigned, _ = staged_assignments(SPEC, stopped, schedule(SPEC, stopped))
    assert nodes_of(assigned, "api") == ["n2"]


def test_holder_on_an_offline_node_does_not_block() -> None:
    snap = Snapshot(
        nodes={"n2": NodeStatus(state="offline")},
        instances=(Instance("db", "n1"), Instance("api", "n2")),
    )
    assigned, _ = staged_assignments(SPEC, snap, schedule(SPEC, snap))
    assert nodes_of(assigned, "api") == ["n1"]
