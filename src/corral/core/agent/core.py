"""The agent's decisions (pure): what one node does about its instances, given ``now``.

The asyncio shell (:mod:`corral.agent.node`) feeds :class:`AgentCore` what it learns (lease
renewals and losses, the assignments it read, what its drivers and checks say, operator
requests) and carries out the effects it returns (:mod:`.effects`), reporting back what
happened to them (a start refused, failed or done). Every time is on the agent's monotonic
clock, passed in as ``now``: the core reads no clock, so every decision below replays in
virtual time (``tests/transcripts/agent``).

Rules kept here (``docs/safety-rules.md``):
- Rule 1: nothing exclusive starts or is promoted without a fresh lease (:meth:`may_start`,
  :func:`~corral.core.reconcile.reconcile`); what runs stops at the keep deadline
  (:meth:`self_fence`).
- Rule 1g: a Galera member its driver says *joined* a Primary component (not the bootstrap
  node while its claim names it), or a RabbitMQ broker serving (in a cluster that handles its
  partitions with ``pause_minority``), is not held to the lease (:meth:`guarded`,
  :mod:`corral.core.galera.hold`): their own quorum keeps them safe, so a store outage does
  not stop the database or the queues. Their starts and promotes still need a fresh lease.
- Rule 4: nothing in maintenance here is touched (reconcile; operator requests refused).
- Rule 7: a start refused for a node-level reason, or an instance the lease guard stopped
  while the agent renewed late, is the node's event: not counted as the service's failure.
- Liveness: an adopted or held-over active-active service is not stopped for want of an
  assignment while the controller may not have seen this registration yet; restarts in place
  back off (:class:`~corral.core.agent.backoff.RestartBackoff`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass

from corral.core.agent.backoff import RestartBackoff
from corral.core.agent.effects import (
    CountFailure,
    Demote,
    Effect,
    Event,
    Note,
    Promote,
    Restart,
    Start,
    Stop,
    Why,
)
from corral.core.agent.lease import LeaseState
from corral.core.reconcile import LocalAction, LocalInstance, reconcile
from corral.core.ref import InstanceRef
from corral.core.scheduler.actions import resource_ranks
from corral.core.scheduler.model import Snapshot
from corral.core.scheduler.scores import Context
from corral.spec import Spec

ADOPT_GRACE = 5.0  # seconds an adopted active-active service waits for its assignment
NODE_FAULT_RETRY = 0.5  # seconds before a start refused for a node-level reason is tried again


def resource_of(key: str) -> str:
    """The resource of instance key ``key`` (``api-vips[198.18.0.100]`` -> ``api-vips``)."""
    ref = InstanceRef.parse(key, node=False)
    return ref.resource if ref is not None else key


@dataclass(frozen=True)
class RequestPlan:
    """What to do about one operator request: ``stop`` the instance (a drained stop; the
    request is deleted only once it worked), and/or say ``event``. The request is deleted
    after either."""

    stop: Stop | None = None
    event: Event | None = None


class AgentCore:
    """One node's decisions. ``lease``: the lease state (:mod:`.lease`), kept here so that
    every rule-1 question is answered from one place; ``adopted``: active-active instances
    held without an assignment (adopted at start, or held over a lapse)."""

    def __init__(self, spec: Spec, node: str) -> None:
        self.node = node
        self.lease = LeaseState()
        self.adopted: set[str] = set()
        self.wake_at = math.inf  # a round is due then even if nothing changed
        self._restarts = RestartBackoff()
        self._node_faults: dict[str, str] = {}  # instance -> its last start refusal
        self.joined: set[str] = set()  # joined Galera members, serving brokers (rule 1g)
        self.spec = spec
        self.set_spec(spec)

    def set_spec(self, spec: Spec) -> None:
        """Run ``spec`` from now on (its timing, its resources and their order)."""
        self.spec = spec
        timing = spec.effective_timing
        self.lease.ttl = max(1, math.ceil(timing.lease_ttl))
        self.lease.margin = timing.safety_margin
        self._ranks = resource_ranks(Context(spec, Snapshot()))

    # --- rule 1 ---------------------------------------------------------------------------

    def exclusive(self, key: str) -> bool:
        res = self.spec.resources.get(resource_of(key))
        return res is not None and res.exclusive

    def guarded(self, key: str) -> bool:
        """Whether rule 1 holds this running instance to the lease (stopped at the keep
        deadline, listed for the lease guard): every exclusive one but a joined Galera member
        or a serving RabbitMQ broker (rule 1g)."""
        return self.exclusive(key) and key not in self.joined

    def member_joined(self, key: str, joined: bool) -> bool:
        """The driver's word on a running instance (``DriverStatus.joined``). Heeded for a
        Galera member or a RabbitMQ broker only (rule 1g): no other kind may take itself off
        the lease. True when it changed (the guard's listing must follow)."""
        res = self.spec.resources.get(resource_of(key))
        quorate = res is not None and (res.galera is not None or res.rabbitmq is not None)
        now_joined = joined and quorate
        was = key in self.joined
        if now_joined:
            self.joined.add(key)
        else:
            self.joined.discard(key)
        return was != now_joined

    def may_start(self, key: str, now: float) -> Note | None:
        """None when ``key`` may start now; else why not (an exclusive instance needs a fresh
        lease at this very moment: a round's earlier actions may have taken long)."""
        if self.exclusive(key) and not self.lease.may_hold(now):
            return Note(f"not starting {key}: the node lease is not fresh (rule 1)")
        return None

    def self_fence(self, now: float, running: Iterable[str], keep_deadline: float) -> list[Stop]:
        """Rule 1: the stops due at ``now`` (every exclusive instance once the keep deadline
        passed). A lease past its renewal deadline also holds over the active-active ones."""
        keys = list(running)
        if not self.lease.may_hold(now):
            self.hold_over(keys)
        if self.lease.may_keep(now, keep_deadline):
            return []
        return [Stop(k, Why.SELF_FENCE) for k in keys if self.guarded(k)]

    def fence_deadline(
        self, now: float, running: Iterable[str], keep_deadline: float, tick: float
    ) -> float:
        """When :meth:`self_fence` must run next (``inf`` while nothing exclusive runs); past
        the deadline (no lease, a stop that failed): every ``tick``, never a spin."""
        if not any(self.guarded(k) for k in running):
            return math.inf
        return keep_deadline if keep_deadline > now else now + tick

    def hold_over(self, running: Iterable[str]) -> None:
        """The lease may have lapsed: the controller may withdraw this node's assignments. Its
        running active-active services are held like adopted ones until it assigns them to the
        next registration: stopping them would turn a lapse (a frozen node, an etcd election)
        into an outage of the node's every service. Exclusive ones are :meth:`self_fence`'s."""
        self.adopted |= {k for k in running if not self.guarded(k)}

    def lease_lost(self, running: Iterable[str]) -> Event:
        """etcd says the lease is gone (expired, or revoked by a fence)."""
        self.hold_over(running)
        self.lease.lost()
        return Event("lease", "node lease lost (expired): registering again")

    def wants_proof(self, late: bool, running: Iterable[str]) -> bool:
        """Whether to run a proof round that the store has no leader: renewals are ``late``
        and exclusive instances run here under a lease (:mod:`corral.core.quorum`)."""
        return late and self.lease.lease is not None and any(map(self.guarded, running))

    def refuse_spec(self, spec: Spec) -> str | None:
        """Why a new spec from the store is not run here (None: it may be)."""
        if spec.cluster != self.spec.cluster or self.node not in spec.nodes:
            return "it is for another cluster or does not name this node"
        return None

    # --- rounds ---------------------------------------------------------------------------

    def round(
        self,
        now: float,
        desired: Mapping[str, str],
        frozen: Set[str],
        running: Mapping[str, LocalInstance],
        keep_deadline: float,
        stale: Set[str] = frozenset(),
    ) -> list[Effect]:
        """The effects that take this node toward ``desired`` (instance key -> role; read for
        this registration), leaving alone instances of resources in ``frozen`` (rule 4).
        ``stale``: exclusive instances assigned to an earlier registration of this node, left
        out of ``desired`` (rule 2: they may be moving elsewhere; stopped if they run)."""
        effects: list[Effect] = [
            Note(f"not running {key}: assigned to an earlier registration") for key in sorted(stale)
        ]
        self.adopted -= set(desired)  # assigned again: an ordinary service from now on
        self.adopted &= set(running)  # stopped: nothing to hold any more
        self.joined &= set(running)
        keys = set(desired) | set(running)
        exclusive = {k for k in keys if self.exclusive(k)}
        guarded = {k for k in exclusive if self.guarded(k)}
        actions = reconcile(
            desired,
            running,
            may_hold_exclusive=self.lease.may_hold(now),
            may_keep_exclusive=self.lease.may_keep(now, keep_deadline),
            exclusive=exclusive,
            guarded=guarded,
            frozen={k for k in keys if resource_of(k) in frozen},
            rank={k: self._ranks.get(resource_of(k), 0) for k in keys},
        )
        for action in actions:
            if action.kind == "stop" and self._keep_adopted(action.resource, guarded, now):
                continue
            if action.kind != "start":  # its role changes: held until the driver says again
                self.joined.discard(action.resource)
            effects += self._effects(action, now)
        return effects

    def _effects(self, action: LocalAction, now: float) -> list[Effect]:
        key, why = action.resource, action.why
        if action.kind == "stop":
            return [Stop(key, why)]
        if action.kind == "start":
            return [Start(key, why)]
        if action.kind == "promote":
            return [Promote(key, why)]
        if action.kind == "demote":
            return [Demote(key, why)]
        later = self._restarts.due(key, now)
        if later is not None:  # no change will come to say the backoff is over: wake then
            self.wake(later)
            return []
        return [CountFailure(resource_of(key), why.text), Restart(key, why)]

    def _keep_adopted(self, key: str, exclusive: Set[str], now: float) -> bool:
        """An adopted or held-over active-active service is not stopped for want of an
        assignment while the controller may not have seen this registration yet: no lease, a
        lease past its renewal deadline, or registered less than ``ADOPT_GRACE`` ago (a
        restart slower than the lease TTL makes the node look gone for a moment). Exclusive
        ones get no such grace: another node may hold them (rule 1)."""
        if key not in self.adopted or key in exclusive:
            return False
        self.wake(self.lease.registered_at + ADOPT_GRACE)
        return not self.lease.may_hold(now) or self.lease.since_registered(now) < ADOPT_GRACE

    def wake(self, at: float) -> None:
        """Ask for a round at ``at`` at the latest (a decision that depends on time alone)."""
        self.wake_at = min(self.wake_at, at)

    def take_wake(self) -> float:
        """The round asked for, forgotten (the shell runs a round now)."""
        at, self.wake_at = self.wake_at, math.inf
        return at

    # --- what the shell reports back ------------------------------------------------------

    def start_refused(self, key: str, problem: str, now: float) -> list[Effect]:
        """A start refused for a node-level reason (rule 7): tried again soon, not counted;
        one event per distinct refusal, not per retry."""
        self.wake(now + NODE_FAULT_RETRY)
        if self._node_faults.get(key) == problem:
            return []
        self._node_faults[key] = problem
        return [Event("waiting", f"not starting {key} yet (not counted): {problem}", key)]

    def start_failed(self, key: str, problem: str, begun: float, now: float) -> list[Effect]:
        """A start that failed. If the rule-1 deadline passed during it, the lease guard
        stopped it: not counted. Else it is the service's failure, counted."""
        name = resource_of(key)
        if self.exclusive(key) and (not self.lease.may_hold(now) or self.lease.lapsed_at >= begun):
            return [Event("stop", f"start of {key} cut short by rule 1 (not counted)")]
        return [
            CountFailure(name, f"start failed: {problem}"),
            Event("failed", f"could not start {key}: {problem}", name),
        ]

    def started(self, key: str) -> None:
        self._node_faults.pop(key, None)

    def stopped_by_guard(
        self, key: str, started_at: float, guard_stopped: float | None = None
    ) -> bool:
        """A service found not running: True when the lease guard stopped it (exclusive, and
        started before the last late renewal or before the guard's own record of stopping it,
        ``guard_stopped``): the node's event, started again as assigned and not counted (rule
        7); False: the service's failure. The guard's record decides when the agent's view
        does not: a starved agent can see its renewal back in time while the guard, on the
        deadline written before, already stopped the instance."""
        if not self.exclusive(key):
            return False
        stopped = guard_stopped is not None and guard_stopped >= started_at
        return stopped or started_at <= self.lease.lapsed_at

    def request(self, key: str, valid: bool, frozen: Set[str], running: Set[str]) -> RequestPlan:
        """An operator's restart request for ``key`` (``valid``: it parsed as one): a drained
        stop of a running instance (not counted; the next round starts it again through
        reconcile, with the lease, assignment and maintenance checked there). An instance in
        maintenance here is not touched (rule 4)."""
        if not valid:
            return RequestPlan(event=Event("request", f"ignored a malformed request for {key}"))
        if resource_of(key) in frozen:
            return RequestPlan(event=Event("request", f"not restarting {key}: in maintenance", key))
        if key in running:
            return RequestPlan(stop=Stop(key, Why.OPERATOR_RESTART))
        return RequestPlan()
