"""The controller's pure decisions (corral.core.controller), table-tested: every guard of
``replace_dead`` and every rule of ``step_writes`` has a row that names what it proves."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from corral.core.assign import staged_assignments
from corral.core.controller import (
    FENCE_RETRY,
    MAX_EVENTS,
    ControllerKey,
    EventNote,
    HolderGuard,
    Placement,
    Replace,
    StepInputs,
    Why,
    event_time_ns,
    fence_devices,
    fence_recent,
    lost_nodes,
    plan_around_fences,
    replace_dead,
    step_writes,
    to_trim,
)
from corral.core.scheduler import Instance, NodeStatus, Snapshot, schedule
from corral.spec import Spec, load_spec_text

NODES = """
cluster: t
nodes:
  n1: {address: 198.18.0.1}
  n2: {address: 198.18.0.2}
  n3: {address: 198.18.0.3}
  n4: {address: 198.18.0.4}
  n5: {address: 198.18.0.5, fence: []}
"""
FENCING = "fencing:\n  ipmi: {agent: fence_ipmilan, action: 'off'}\n"
SPEC = load_spec_text(NODES + FENCING)
NO_FENCING = load_spec_text(NODES)
TWO = load_spec_text(
    "cluster: t\nnodes:\n  n1: {address: 198.18.0.1}\n  n2: {address: 198.18.0.2, kind: remote}\n"
    + FENCING
)


@dataclass(frozen=True)
class Row:
    """One case of replace_dead. Defaults: n1 is asked, n2 holds a key first seen at 10 and
    died at 20 (gossip); no fence failed; now is 30. The default row fences n2."""

    proves: str
    want: Replace
    me: str = "n1"
    controller: bool = False
    holder: str | None = "n2"
    first_seen: float = 10.0
    deaths: dict[str, float] = field(default_factory=lambda: {"n2": 20.0})
    failed_at: float | None = None
    now: float = 30.0
    spec: Spec = SPEC


ROWS = [
    Row(
        "the first alive node fences a controller that died after its key was seen",
        Replace("n2", Why.FENCE),
    ),
    Row("the controller never replaces itself", Replace(None, Why.CONTROLLER), controller=True),
    Row("no death, nothing to do (and no store read)", Replace(None, Why.NO_DEATHS), deaths={}),
    Row("no controller key: a campaign, not a fence", Replace(None, Why.NO_KEY), holder=None),
    Row("a node never fences itself", Replace(None, Why.HOLDER_IS_ME), holder="n1"),
    Row(
        "a key held by a name outside the spec is not fenced",
        Replace(None, Why.HOLDER_UNKNOWN),
        holder="ghost",
        deaths={"ghost": 20.0},
    ),
    Row(
        "a holder gossip holds alive is not fenced",
        Replace(None, Why.HOLDER_ALIVE),
        deaths={"n3": 20.0},
    ),
    Row(
        "a death from before the key was made is about the holder's previous life",
        Replace(None, Why.DEATH_BEFORE_KEY),
        deaths={"n2": 5.0},
    ),
    Row(
        "a death at the very instant the key was seen does not count",
        Replace(None, Why.DEATH_BEFORE_KEY),
        deaths={"n2": 10.0},
    ),
    Row(
        "a node gossip holds dead itself has no duty",
        Replace(None, Why.NO_ALIVE_NODE),
        deaths={n: 20.0 for n in SPEC.nodes},
    ),
    Row(
        "only the first node gossip holds alive has the duty",
        Replace(None, Why.NOT_FIRST_ALIVE),
        me="n3",
    ),
    Row(
        "the duty passes on when the first node is the dead controller",
        Replace("n1", Why.FENCE),
        me="n2",
        holder="n1",
        deaths={"n1": 20.0},
    ),
    Row(
        "deaths that are most of the peers are not believed (our gossip is cut off)",
        Replace(None, Why.IMPLAUSIBLE),
        deaths={"n2": 20.0, "n3": 20.0, "n4": 20.0},
    ),
    Row(
        "two of four peers dead are believed",
        Replace("n2", Why.FENCE),
        deaths={"n2": 20.0, "n3": 20.0},
    ),
    Row(
        "with two nodes a death cannot be told from our own isolation",
        Replace(None, Why.IMPLAUSIBLE),
        spec=TWO,
    ),
    Row(
        "a failed fence is not tried again within FENCE_RETRY",
        Replace(None, Why.FENCE_FAILED_RECENTLY),
        failed_at=30.0 - FENCE_RETRY + 0.1,
    ),
    Row(
        "a failed fence is tried again once FENCE_RETRY has passed",
        Replace("n2", Why.FENCE),
        failed_at=30.0 - FENCE_RETRY,
    ),
    Row(
        "a holder whose own device list is empty goes with its lease",
        Replace(None, Why.NO_DEVICE),
        holder="n5",
        deaths={"n5": 20.0},
    ),
    Row(
        "no fence device in the spec: the key goes with its lease",
        Replace(None, Why.NO_DEVICE),
        spec=NO_FENCING,
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.proves for r in ROWS])
def test_replace_dead(row: Row) -> None:
    key = None if row.holder is None else ControllerKey(row.holder, row.first_seen)
    devices = {n: fence_devices(row.spec, n) for n in row.spec.nodes}
    got = replace_dead(row.me, row.controller, key, row.deaths, devices, row.failed_at, row.now)
    assert got == row.want


def test_every_reason_has_a_row() -> None:
    assert {r.want.why for r in ROWS} == set(Why)


def test_the_fence_retry_window_is_measured_on_the_clock_given() -> None:
    assert fence_recent(100.0, 100.0 + FENCE_RETRY - 0.001)
    assert not fence_recent(100.0, 100.0 + FENCE_RETRY)
    assert not fence_recent(None, 0.0)


def test_a_death_makes_a_registration_unclean_only_after_it_was_seen() -> None:
    nodes = ["n1", "n2", "n3"]
    assert lost_nodes({"n2": 10.0, "n3": 10.0}, {"n2": 5.0}, nodes, "n1") == set()
    assert lost_nodes({"n2": 10.0, "n3": 10.0}, {"n2": 15.0}, nodes, "n1") == {"n2"}
    both = {"n2": 15.0, "n3": 15.0}
    assert lost_nodes({"n2": 10.0, "n3": 10.0}, both, nodes, "n1") == set()  # implausible
    assert lost_nodes({"n3": 10.0}, {"n2": 15.0}, nodes, "n1") == set()  # not registered


def test_events_are_trimmed_in_batches_oldest_first() -> None:
    assert to_trim(list(range(MAX_EVENTS + 100))) == []
    assert to_trim(list(range(MAX_EVENTS + 101))) == list(range(101))


def test_event_keys_follow_the_wall_clock_and_never_repeat() -> None:
    assert event_time_ns(2.5, 0) == 2_500_000_000
    assert event_time_ns(2.5, 2_500_000_000) == 2_500_000_001  # two events in one step
    assert event_time_ns(1.0, 2_500_000_000) == 2_500_000_001  # the wall clock stepped back


STEP_SPEC = load_spec_text(
    "cluster: t\nnodes:\n  n1: {address: 198.18.0.1}\n  n2: {address: 198.18.0.2}\n"
    "  n3: {address: 198.18.0.3}\n"
    "resources:\n  web: {process: /bin/web}\n  db: {process: /bin/db, mode: active-passive}\n"
)
REGS = {"n1": 11, "n2": 12, "n3": 13}
WEB = (
    Placement("n1", "started", None, 11),
    Placement("n2", "started", None, 12),
    Placement("n3", "started", None, 13),
)
DB = (Placement("n1", "started", None, 11),)


def inputs(
    current: dict[str, tuple[Placement, ...] | None],
    regs: dict[str, int] = REGS,
    notes: tuple[str, ...] = (),
    last: frozenset[str] = frozenset(),
    status: dict[tuple[str, str], int] | None = None,
) -> StepInputs:
    """A three-node cluster with nothing running: web goes everywhere, db on n1."""
    snap = Snapshot()
    plan = schedule(STEP_SPEC, snap)
    assigned, _ = staged_assignments(STEP_SPEC, snap, plan)
    return StepInputs(STEP_SPEC, snap, plan, assigned, notes, current, regs, status or {}, last)


def test_an_unchanged_assignment_is_not_written() -> None:
    writes = step_writes(inputs({"web": WEB, "db": DB}))
    assert writes.empty and writes.changed == [] and writes.guards == ()


def test_a_missing_or_foreign_record_is_written() -> None:
    writes = step_writes(inputs({"web": None}))  # not in our form, and db absent
    assert writes.put == {"web": WEB, "db": DB}
    assert [e.resource for e in writes.events] == ["web", "db"]
    assert all(e.kind == "assign" for e in writes.events)
    assert writes.events[1].reason.startswith("db -> n1: ")


def test_each_instance_names_the_registration_it_is_for() -> None:
    writes = step_writes(inputs({"web": WEB}, regs={"n1": 11, "n2": 40, "n3": 13}))
    assert writes.put["web"][1] == Placement("n2", "started", None, 40)  # n2 registered anew
    unregistered = step_writes(inputs({}, regs={"n2": 12, "n3": 13}))
    assert unregistered.put["db"] == (Placement("n1", "started", None, None),)


def test_the_record_of_a_resource_gone_from_the_spec_is_deleted() -> None:
    writes = step_writes(inputs({"web": WEB, "db": DB, "old": ()}))
    assert writes.delete == ("old",) and writes.put == {} and not writes.empty


def test_a_waiting_note_is_an_event_once() -> None:
    note = "db on n1 waits for web to run"
    first = step_writes(inputs({"web": WEB, "db": DB}, notes=(note,)))
    assert first.events == (EventNote("waiting", note),) and first.notes == {note}
    again = step_writes(inputs({"web": WEB, "db": DB}, notes=(note,), last=first.notes))
    assert again.events == () and again.empty


def test_a_changed_exclusive_resource_is_guarded_on_every_other_node() -> None:
    status = {("n2", "db"): 7, ("n1", "db"): 3, ("n2", "web"): 9}
    writes = step_writes(inputs({"web": None}, status=status))
    # db goes to n1: its status on n2 (as read: 7) and n3 (absent: 0) must not change
    # meanwhile; web is active-active: no guard
    assert writes.guards == (HolderGuard("n2", "db", 7), HolderGuard("n3", "db", 0))
    unchanged = step_writes(inputs({"web": None, "db": DB}, status=status))
    assert unchanged.guards == ()  # db unchanged: nothing to guard


def test_a_fence_is_planned_once_and_the_plan_waits_for_it() -> None:
    spec = load_spec_text(
        "cluster: t\nnodes:\n  n1: {address: 198.18.0.1}\n  n2: {address: 198.18.0.2}\n"
        "  n3: {address: 198.18.0.3}\n"
        + FENCING
        + "resources:\n  db: {process: /bin/db, mode: active-passive}\n"
    )
    snap = Snapshot(nodes={"n3": NodeStatus(state="unclean")}, instances=(Instance("db", "n3"),))
    after, plan, started = plan_around_fences(spec, snap)
    assert started == ["n3"]
    assert after.node("n3").fencing
    assert not [a for a in plan.actions if a.kind == "fence"]  # not asked twice
    assert plan_around_fences(spec, Snapshot())[2] == []


def test_a_node_is_fenced_with_its_own_devices_else_every_device_of_the_spec() -> None:
    assert fence_devices(SPEC, "n1") == ["ipmi"]
    assert fence_devices(SPEC, "n5") == []  # its own (empty) list wins
    assert fence_devices(NO_FENCING, "n1") == []
