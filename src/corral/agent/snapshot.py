"""What the agent's control loop publishes for readers in other threads (the HTTP API).

Contract:
- :class:`AgentSnapshot` is immutable (frozen dataclasses, tuples, frozensets): a reader in
  another thread may keep and read it while the loop goes on; nothing in it is shared with the
  agent's mutable state.
- :class:`SnapshotBox` holds the latest one. ``publish`` replaces a reference (atomic in
  CPython) and ``latest`` reads it: no lock, so a reader can never block the loop and a stalled
  loop can never block a reader; it only makes the snapshot older (``mono``), which readers
  judge against ``stale_after``.
- The loop publishes after each turn of its main loop (at least every ``STATUS_POLL``, 1 s,
  while it runs), so the age of the latest snapshot is how long the loop has been silent.

The stall hook (tests and ``bench/api.py`` reproduce a busy agent): when the file
``<state_dir>/stall-loop`` exists at the start of a turn, the loop removes it and blocks for the
number of seconds it holds (a float; bad text counts as 0). It blocks the whole event loop
(``time.sleep``), as a CPU-bound step or a hung syscall would: renewals stop too, and rule 1
(the lease guard) acts on it. Only root can create it (the state dir is root's alone).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from corral.spec import Spec

if TYPE_CHECKING:
    from corral.agent.node import Agent

log = logging.getLogger(__name__)

STALL_FILE = "stall-loop"
STALL_MAX = 600.0  # seconds: a test hook, not a way to hang an agent for good


@dataclass(frozen=True)
class InstanceView:
    """One instance running (or being adopted) here, as the loop last saw it. ``key``: its
    instance key (``web``, ``vips[198.18.0.100]``), as the lease guard lists it."""

    key: str
    resource: str
    item: str | None
    role: str  # started | promoted
    health: str  # the checks' verdict: healthy | unhealthy | unknown ...
    reported: str  # what the status record says (draining, unhealthy once it died, ...)
    failed: bool
    exclusive: bool  # active-passive, a VIP, or the promoted role of a promotable resource
    detail: str = ""


@dataclass(frozen=True)
class AgentSnapshot:
    """The agent as of one turn of its control loop. ``mono`` and ``lease_deadline`` are
    CLOCK_MONOTONIC seconds (the agent's clock and the lease guard's), ``wall`` Unix time.
    ``lease_deadline``: until when exclusive instances may run here (rule 1; -inf without a
    lease). ``guarded``: the lease guard runs and holds the deadline record that counts
    (``<state_dir>/guard.deadline``), which readers prefer to ``lease_deadline``."""

    cluster: str
    node: str
    mono: float
    wall: float
    stale_after: float
    lease: int | None = None
    lease_deadline: float = -math.inf
    controller: bool = False
    store_ok: bool = True
    store_error: str = ""
    guarded: bool = False
    state_dir: str = ""
    instances: tuple[InstanceView, ...] = ()
    maintenance: frozenset[str] = field(default_factory=frozenset)  # resources frozen here
    resources: frozenset[str] = field(default_factory=frozenset)  # the spec's
    spec: Spec | None = None  # the running spec (frozen): the read API's views need it
    events: tuple[tuple[str, int], ...] = ()  # events this agent wrote, by kind, since start
    actions: tuple[tuple[str, tuple[int, ...], float], ...] = ()  # ActionTimes.frozen()
    alerts: tuple[tuple[str, str, int], ...] = ()  # AlertDuty.frozen(): (sink, outcome, n)
    alert_latency: tuple[tuple[str, tuple[int, ...], float], ...] = ()  # by sink, as actions

    def age(self, now: float) -> float:
        return now - self.mono

    def stale(self, now: float) -> bool:
        return self.age(now) > self.stale_after

    def of(self, resource: str) -> tuple[InstanceView, ...]:
        return tuple(i for i in self.instances if i.resource == resource)


BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)  # seconds


class ActionTimes:
    """How long the agent's actions took, by kind (start, stop, restart, promote, demote):
    histogram buckets (``BUCKETS``, cumulative in :meth:`frozen`), sums and counts. Written by
    the agent's loop only; readers get :meth:`frozen` copies through the snapshot."""

    def __init__(self) -> None:
        self._buckets: dict[str, list[int]] = {}
        self._sums: dict[str, float] = {}

    def observe(self, kind: str, seconds: float) -> None:
        counts = self._buckets.setdefault(kind, [0] * (len(BUCKETS) + 1))
        counts[next((i for i, b in enumerate(BUCKETS) if seconds <= b), len(BUCKETS))] += 1
        self._sums[kind] = self._sums.get(kind, 0.0) + seconds

    def frozen(self) -> tuple[tuple[str, tuple[int, ...], float], ...]:
        """``(kind, cumulative counts per bucket and +Inf, sum)`` per kind, by kind."""
        out = []
        for kind, counts in sorted(self._buckets.items()):
            running, total = [], 0
            for n in counts:
                total += n
                running.append(total)
            out.append((kind, tuple(running), self._sums[kind]))
        return tuple(out)


class SnapshotBox:
    """The latest snapshot (None before the first turn). See the module doc for the contract."""

    def __init__(self) -> None:
        self._latest: AgentSnapshot | None = None
        self.published = 0  # how many (tests wait on it)

    def publish(self, snap: AgentSnapshot) -> None:
        self._latest = snap
        self.published += 1

    def latest(self) -> AgentSnapshot | None:
        return self._latest


def take_stall(state_dir: Path) -> float:
    """The seconds the stall hook asks for (0 when there is no ``stall-loop`` file); the file
    is removed so that one request stalls one turn."""
    path = state_dir / STALL_FILE
    try:
        text = path.read_text()
        path.unlink()
    except OSError:
        return 0.0
    try:
        seconds = float(text.strip() or 0)
    except ValueError:
        return 0.0
    return min(seconds, STALL_MAX) if math.isfinite(seconds) and seconds > 0 else 0.0


class Publishes:
    """What an agent keeps for its snapshots (a mixin of :class:`~corral.agent.node.Agent`):
    its box (made on first use: the CLI hands it to the API before the first turn), and what
    its last round saw that the agent keeps nowhere else."""

    _frozen: frozenset[str] = frozenset()  # resources in maintenance here, as of the last round
    _store_error = ""  # why the last round could not reach the store ("" when it did)

    @cached_property
    def snapshots(self) -> SnapshotBox:
        return SnapshotBox()


def publish_turn(agent: Agent, poll: float) -> None:
    """Between two turns of the agent's main loop: the stall hook, then a fresh snapshot."""
    stall = take_stall(agent.ctx.state_dir)
    if stall:
        log.warning("control loop stalled for %.1f s by the test hook", stall)
        time.sleep(stall)  # blocks the event loop on purpose: that is what it reproduces
    agent.snapshots.publish(snapshot_of(agent, poll))


def snapshot_of(agent: Agent, poll: float) -> AgentSnapshot:
    """The agent as of now. The bound of its freshness: the loop republishes at least every
    ``poll`` (its ``STATUS_POLL``); silent for longer than that plus the self-fence window
    (``lease_ttl - safety_margin``) it is hung, not busy."""
    timing, now = agent.spec.effective_timing, agent.clock.now()
    deadline = -math.inf if agent.lease is None else agent._keep_deadline()
    instances = tuple(
        InstanceView(
            k, s.resource, s.item, s.role, str(s.verdict), s.reported_health, s.failed,
            agent.core.guarded(k) or (s.role == "promoted" and k not in agent.core.joined),
            s.detail,
        )
        for k, s in sorted(agent.services.items())
    )  # fmt: skip
    return AgentSnapshot(
        cluster=agent.spec.cluster, node=agent.node, mono=now, wall=agent.wall(),
        stale_after=poll + timing.lease_ttl - timing.safety_margin,
        lease=agent.lease, lease_deadline=deadline, controller=agent.controller.active,
        store_ok=not agent._store_error, store_error=agent._store_error,
        guarded=agent._guard, state_dir=str(agent.ctx.state_dir), instances=instances,
        maintenance=agent._frozen, resources=frozenset(agent.spec.resources), spec=agent.spec,
        events=tuple(sorted(agent.events.counts.items())), actions=agent.act.times.frozen(),
        alerts=agent.alerts.frozen(), alert_latency=agent.alerts.latency.frozen(),
    )  # fmt: skip
