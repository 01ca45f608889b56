"""The controller's decisions (pure): what a step writes, whom to fence, when to retry.

The shell (:mod:`corral.agent.controller`) reads the store, calls these functions with what it
read and the injected clocks' readings, and carries out what they return; nothing here reads a
clock or does I/O, so every decision can be table-tested and replayed in virtual time.

Contracts:

- :func:`plausible`: gossip deaths are believed (may lead to a fence) only when they are at
  most half of the other nodes and there are at least two others.
- :func:`lost_nodes`: a registered node is unclean when gossip came to hold it dead *after* its
  registration was first seen here, and the deaths are plausible.
- :func:`fence_recent`: a node whose fence failed is not fenced again for ``FENCE_RETRY``
  seconds of the monotonic clock (a wall-clock step does not move the window).
- :func:`replace_dead`: when gossip holds the controller dead, exactly one node (the first of
  the spec that gossip holds alive) fences it; every other case says why not (:class:`Why`).
- :func:`step_writes`: the assignment records a step puts and deletes, its events, and the
  holder guards its one transaction carries (rule 1 across nodes: no new assignment of an
  exclusive resource over a status report the step did not see); a ``systemic`` event and a
  ``systemic/<resource>`` record when a systemic episode starts, one more event and the
  record's delete when it ends (:mod:`corral.core.systemic`), in the same transaction, so
  each is said once even across a change of controller.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple, TypeVar

from corral.core import systemic
from corral.core.assign import Assigned
from corral.core.scheduler import Plan, Snapshot, schedule
from corral.core.scheduler.scores import Context, node_score
from corral.spec import Spec

FENCE_RETRY = 10.0  # seconds (monotonic) before a failed fence is tried again
MAX_EVENTS = 1000  # events kept in the store; older ones are trimmed
EVENT_SLACK = 100  # trim in batches: only once this many more than MAX_EVENTS accumulated

T = TypeVar("T")


# --- whom gossip makes unclean ---------------------------------------------------------------


def plausible(dead: set[str], nodes: Iterable[str], me: str) -> bool:
    """Whether deaths that one agent's gossip reports can be believed enough to fence on: not
    when they are most of the other nodes. An agent whose own gossip is cut off (a filtered
    UDP port, a full socket buffer) sees every peer die at once; fencing them all would take
    the cluster down. Such deaths wait for the leases instead (rule 2's slow path). Up to
    half of the others may be fenced at once (one of two, two of four); with two nodes a
    peer's death cannot be told from our own isolation: it waits for the lease too."""
    others = [n for n in nodes if n != me]
    return len(dead - {me}) * 2 <= len(others) and len(others) > 1


def lost_nodes(
    first_seen: Mapping[str, float], deaths: Mapping[str, float], nodes: Iterable[str], me: str
) -> set[str]:
    """Registered nodes (``first_seen``: node -> when this registration was first seen, on
    the monotonic clock) that gossip came to hold dead (``deaths``: node -> since when, same
    clock) after that, unless the deaths are not :func:`plausible`.

    A rebooted node registers before its gossip member has refuted its old death; that death
    is not about this registration, so it does not make it unclean."""
    out = {n for n, seen in first_seen.items() if n in deaths and deaths[n] > seen}
    return out if plausible(out, nodes, me) else set()


def fence_recent(failed_at: float | None, now: float) -> bool:
    """A fence that failed at ``failed_at`` (monotonic; None: none failed) is less than
    ``FENCE_RETRY`` old at ``now``: the node is not fenced again yet."""
    return failed_at is not None and now - failed_at < FENCE_RETRY


def fence_devices(spec: Spec, node: str) -> list[str]:
    """The fence devices of ``node``, in the order they are tried: its own list, else every
    device of the spec."""
    own = spec.nodes[node].fence
    return list(spec.fencing if own is None else own)


# --- the lost controller ---------------------------------------------------------------------


class Why(enum.Enum):
    """Why :func:`replace_dead` decided as it did (one guard per member, in the order checked)."""

    CONTROLLER = "this node is the controller"
    NO_DEATHS = "gossip holds no node dead"
    NO_KEY = "no controller key"
    HOLDER_IS_ME = "this node holds the controller key"
    HOLDER_UNKNOWN = "the key's holder is not a node of the spec"
    HOLDER_ALIVE = "gossip does not hold the holder dead"
    DEATH_BEFORE_KEY = "the holder died before this controller key was made"
    NO_ALIVE_NODE = "gossip holds every node dead"
    NOT_FIRST_ALIVE = "another node is the first alive: its duty"
    IMPLAUSIBLE = "the deaths are most of the peers: our own gossip is likelier cut off"
    FENCE_FAILED_RECENTLY = "a fence of the holder failed less than FENCE_RETRY ago"
    NO_DEVICE = "the holder has no fence device: its key goes with its lease"
    FENCE = "the controller is lost and this node is the first alive"


@dataclass(frozen=True)
class Replace:
    """The decision of :func:`replace_dead`: fence ``fence`` (a node) or nothing (None)."""

    fence: str | None
    why: Why


@dataclass(frozen=True)
class ControllerKey:
    """The controller key as read: its holder and when this node first saw that key
    (monotonic; a new key is seen when it is made, not when its holder dies)."""

    holder: str
    first_seen: float


def before_read(controller: bool, deaths: Mapping[str, float]) -> Why | None:
    """The guards :func:`replace_dead` checks before the controller key is needed; the shell
    reads the key only when this is None (no store read on a quiet round)."""
    if controller:
        return Why.CONTROLLER
    if not deaths:
        return Why.NO_DEATHS
    return None


def replace_dead(
    me: str,
    controller: bool,
    key: ControllerKey | None,
    deaths: Mapping[str, float],
    devices: Mapping[str, Sequence[str]],
    fence_failed_at: float | None,
    now: float,
) -> Replace:
    """Whether ``me`` fences the lost controller now (rule 2's fast path for the controller).

    ``controller``: ``me`` holds the controller duty; ``key``: the controller key as read
    linearizably (None: absent); ``deaths``: gossip's dead nodes with since when (monotonic);
    ``devices``: every node of the spec, in the spec's order, with its fence devices
    (:func:`fence_devices`); ``fence_failed_at``: when a fence of the holder last failed
    (monotonic, None: never); ``now``: the monotonic clock. Exactly one node has the
    duty (the first node of the spec gossip holds alive), deaths that are most of the peers are
    not believed, a failed fence waits ``FENCE_RETRY``, and a holder without fence devices is
    left to its lease."""
    early = before_read(controller, deaths)
    if early is not None:
        return Replace(None, early)
    if key is None:
        return Replace(None, Why.NO_KEY)
    why = _holder_guard(me, key, deaths, devices)
    if why is None:
        why = _duty_guard(me, key.holder, deaths, devices, fence_failed_at, now)
    return Replace(key.holder, Why.FENCE) if why is None else Replace(None, why)


def _holder_guard(
    me: str, key: ControllerKey, deaths: Mapping[str, float], nodes: Mapping[str, object]
) -> Why | None:
    """Is the key's holder a lost controller?"""
    if key.holder == me:
        return Why.HOLDER_IS_ME
    if key.holder not in nodes:
        return Why.HOLDER_UNKNOWN
    if key.holder not in deaths:
        return Why.HOLDER_ALIVE
    if deaths[key.holder] <= key.first_seen:
        return Why.DEATH_BEFORE_KEY
    return None


def _duty_guard(
    me: str,
    holder: str,
    deaths: Mapping[str, float],
    devices: Mapping[str, Sequence[str]],
    fence_failed_at: float | None,
    now: float,
) -> Why | None:
    """Is fencing it this node's duty, believable and possible now?"""
    alive = [n for n in devices if n not in deaths]
    if not alive:
        return Why.NO_ALIVE_NODE
    if alive[0] != me:
        return Why.NOT_FIRST_ALIVE
    if not plausible(set(deaths), devices, me):
        return Why.IMPLAUSIBLE
    if fence_recent(fence_failed_at, now):
        return Why.FENCE_FAILED_RECENTLY
    if not devices[holder]:
        return Why.NO_DEVICE
    return None


# --- the step --------------------------------------------------------------------------------


def plan_around_fences(spec: Spec, snap: Snapshot) -> tuple[Snapshot, Plan, list[str]]:
    """The plan, and the unclean nodes it asks to fence (the shell starts those fences in the
    background: a slow fence agent must not stop the cluster). When there are any, the plan is
    made again with them as fences under way, so what ran there waits while the rest of the
    cluster goes on (their success wakes a new step)."""
    plan = schedule(spec, snap)
    started = [a.node for a in plan.actions if a.kind == "fence"]
    if not started:
        return snap, plan, started
    nodes = dict(snap.nodes)
    for node in started:
        nodes[node] = replace(snap.node(node), fencing=True)
    snap = replace(snap, nodes=nodes)
    return snap, schedule(spec, snap), started


class Placement(NamedTuple):
    """One instance of an ``assign/<resource>`` record: ``reg`` is the registration (mod
    revision of ``nodes/<node>``) it is for; None when the node is not registered."""

    node: str
    role: str
    item: str | None
    reg: int | None


@dataclass(frozen=True)
class EventNote:
    """An event for people: ``kind`` (``waiting``, ``assign``), the resource, the reason."""

    kind: str
    reason: str
    resource: str = ""


@dataclass(frozen=True)
class HolderGuard:
    """The precondition that ``status/<node>/<resource>`` still has ``mod_revision`` (0:
    absent) when the step's transaction runs."""

    node: str
    resource: str
    mod_revision: int


@dataclass(frozen=True)
class StepInputs:
    """What a step decides from. ``current``: the ``assign/`` records by resource (None: a
    record not in the form this controller writes, so it is written again);
    ``registrations``: node -> mod revision of ``nodes/<node>``; ``status_revisions``: (node,
    resource) -> mod revision of its status record; ``assigned``/``notes``: the staged
    assignments (:func:`corral.core.assign.staged_assignments`); ``last_notes``: the notes of
    the previous step (a waiting note becomes an event once, when it first appears);
    ``episodes``: the systemic episodes open now, ``announced``: those the store records as
    announced (``systemic/<resource>``)."""

    spec: Spec
    snap: Snapshot
    plan: Plan
    assigned: Assigned
    notes: Sequence[str]
    current: Mapping[str, tuple[Placement, ...] | None]
    registrations: Mapping[str, int]
    status_revisions: Mapping[tuple[str, str], int]
    last_notes: frozenset[str]
    episodes: Mapping[str, systemic.Episode] = field(default_factory=dict)
    announced: Mapping[str, systemic.Episode] = field(default_factory=dict)


@dataclass(frozen=True)
class StepWrites:
    """What a step writes, in ONE transaction fenced by the controller token and ``guards``:
    ``put`` (resource -> its new record, in plan order), ``delete`` (records of resources no
    longer in the spec), ``events`` (in order), ``notes`` to remember for the next step, and
    the systemic episodes that start (``episodes_put``: their records) and end
    (``episodes_delete``)."""

    put: dict[str, tuple[Placement, ...]]
    delete: tuple[str, ...]
    events: tuple[EventNote, ...]
    guards: tuple[HolderGuard, ...]
    notes: frozenset[str]
    episodes_put: dict[str, systemic.Episode] = field(default_factory=dict)
    episodes_delete: tuple[str, ...] = ()

    @property
    def changed(self) -> list[str]:
        """The resources whose assignment changes."""
        return list(self.put)

    @property
    def empty(self) -> bool:
        """Nothing to write: the step makes no transaction."""
        return not (
            self.put or self.delete or self.events or self.episodes_put or self.episodes_delete
        )


def step_writes(inputs: StepInputs) -> StepWrites:
    """The writes that take ``assign/`` to the staged assignments (each instance naming the
    registration it is for: an agent whose node registered again since, a fenced node that
    rebooted fast, does not act on an exclusive assignment meant for its previous life), the
    deletes of resources no longer in the spec, a ``waiting`` event per new note, an
    ``assign`` event per changed resource, and the holder guards of the changed exclusive
    resources."""
    put: dict[str, tuple[Placement, ...]] = {}
    for name, instances in inputs.assigned.items():
        record = tuple(
            Placement(i.node, i.role, i.item, inputs.registrations.get(i.node)) for i in instances
        )
        if inputs.current.get(name) != record:  # absent or not in our form: None
            put[name] = record
    delete = tuple(name for name in inputs.current if name not in inputs.assigned)
    starts, ends = systemic.transitions(inputs.episodes, inputs.announced)
    said = episode_events(inputs.spec, starts, {n: inputs.announced[n] for n in ends})
    waiting = [EventNote("waiting", n) for n in sorted(set(inputs.notes) - inputs.last_notes)]
    events = (*said, *waiting, *explanations(inputs, list(put)))
    guards = holder_guards(inputs.spec, inputs.assigned, list(put), inputs.status_revisions)
    return StepWrites(put, delete, events, guards, frozenset(inputs.notes), starts, tuple(ends))


def node_events(last: Mapping[str, str] | None, now: Mapping[str, str]) -> list[tuple[str, str]]:
    """(node, reason) of a ``node`` event for each node whose state changed since the
    controller's last step (``last``; None: its first step, nothing to compare, nothing said).
    The reason starts with Pacemaker's word for a node alert: ``member`` when a node turns
    online, ``lost`` when an online node turns unclean or offline. A lost node that turns
    offline (fenced, or its lease expired) says nothing more here: the fence has its own event."""
    if last is None:
        return []
    out = []
    for node, state in sorted(now.items()):
        before = last.get(node)
        if before is None or before == state:
            continue
        if state == "online":
            out.append((node, f"member: {node} is online (registered, lease live)"))
        elif before == "online":
            out.append((node, f"lost: {node} is {state} (its lease or gossip says it is gone)"))
    return out


def episode_events(
    spec: Spec, starts: Mapping[str, systemic.Episode], ends: Mapping[str, systemic.Episode]
) -> list[EventNote]:
    """A ``systemic`` event for each episode that starts, and one for each that ends."""
    out = []
    for name, episode in starts.items():
        policy = systemic.policy_of(spec.resources[name])
        out.append(EventNote("systemic", systemic.start_text(name, episode, policy), name))
    for name, episode in ends.items():
        res = spec.resources.get(name)
        rule = systemic.policy_of(res) if res is not None else None
        out.append(EventNote("systemic", systemic.end_text(name, episode, rule), name))
    return out


def explanations(inputs: StepInputs, changed: list[str]) -> list[EventNote]:
    """An ``assign`` event per changed resource: where it goes, and why it leaves the nodes it
    ran on (the score that excludes them, if any), then the plan's reasons."""
    ctx = Context(inputs.spec, inputs.snap)
    placed = {n: {i.node for i in insts} for n, insts in inputs.assigned.items()}
    out = []
    for name in changed:
        decision = inputs.plan.decisions[name]
        running_on = {i.node for i in ctx.observed.get(name, [])}
        left = []
        for node in sorted(running_on - placed[name]):
            score = node_score(ctx, name, node, with_nodes=placed, apart_nodes=placed)
            if score.total is None:
                left.append(f"{node}: {score.why}")
        reasons = "; ".join(left + decision.reasons + decision.blocked)
        where = ", ".join(i.node for i in inputs.assigned[name]) or "nowhere"
        out.append(EventNote("assign", f"{name} -> {where}: {reasons}", name))
    return out


def holder_guards(
    spec: Spec,
    assigned: Assigned,
    changed: Sequence[str],
    status_revisions: Mapping[tuple[str, str], int],
) -> tuple[HolderGuard, ...]:
    """For every exclusive resource whose assignment changes: its status record on each node
    it is not assigned to is as the read saw it (absent: 0). An agent reports an exclusive
    instance as starting before it starts it (and reads its assignment again); so a new
    assignment is never written over a report the step did not see: the handoff waits for
    that holder instead (rule 1 across nodes)."""
    out = []
    for name in changed:
        if not spec.resources[name].exclusive:
            continue
        targets = {i.node for i in assigned[name]}
        for node in spec.nodes:
            if node not in targets:
                out.append(HolderGuard(node, name, status_revisions.get((node, name), 0)))
    return tuple(out)


def to_trim(events: Sequence[T]) -> list[T]:
    """The oldest of ``events`` (given oldest first) to delete: none until ``EVENT_SLACK`` more
    than ``MAX_EVENTS`` have accumulated (trimmed in batches, not one per step), then all but
    the newest ``MAX_EVENTS``."""
    if len(events) <= MAX_EVENTS + EVENT_SLACK:
        return []
    return list(events[: len(events) - MAX_EVENTS])


def event_time_ns(wall: float, last: int) -> int:
    """An event key's time: the wall clock in nanoseconds, but after ``last`` (the previous
    event key of this controller), so that the events of one transaction never share a key
    (the store refuses a transaction that writes a key twice) and key order stays write order
    when the wall clock steps back."""
    return max(int(wall * 1e9), last + 1) if math.isfinite(wall) else last + 1
