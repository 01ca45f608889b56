"""The controller duty of an agent: one at a time, elected through the store (DESIGN.md).

Contract:
- ``campaign(lease)`` takes the controller key if it is free, bound to the agent's lease, so a
  dead controller's key disappears with its lease and another agent takes over within one TTL.
- ``step()`` reads the cluster prefix in one range, builds the snapshot, runs the scheduler,
  stages the assignments (:mod:`corral.core.assign`) and writes the changed ones in ONE
  transaction that compares the controller key's create revision with the one this controller
  won: a deposed controller's write fails (fencing token), and it learns it was deposed.
- Fencing (safety rule 2's fast path): when the plan fences an unclean node, ``step()``
  starts a background task that runs the node's fence devices in order until one succeeds and
  records ``fenced/<node>`` naming the fenced registration (in a transaction comparing the
  controller key and that registration), then revokes its lease; meanwhile the step plans
  around the fence under way (what ran there waits; the rest of the cluster goes on), and the
  fence's store writes wake the next step, in which that registration is offline. A node whose fence
  failed is not fenced again for ``FENCE_RETRY`` seconds; meanwhile its exclusive instances
  wait for its lease to expire.
- Every step returns a decision string (what it did), for logs and tests.
- Records that do not read (:mod:`corral.records`) are left out of the plan; the step emits one
  ``record`` event per such key and mod revision (not one per step).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable

from corral.agent.inputlog import InputLog
from corral.clocks import MonotonicClock
from corral.core.assign import Assigned, staged_assignments
from corral.core.clock import Clock
from corral.core.scheduler import Instance, Plan, Snapshot, schedule
from corral.core.scheduler.scores import Context, node_score
from corral.drivers.base import DriverError, NodeContext
from corral.drivers.fence import fence_node
from corral.records import (
    AssignedInstance,
    AssignRecord,
    Event,
    FencedRecord,
    Skipped,
    read_records,
    snapshot_from_kvs,
)
from corral.spec import Spec
from corral.store import Compare, Delete, Keys, KeyValue, Put, Store, StoreError

log = logging.getLogger(__name__)
MAX_EVENTS = 1000
FENCE_RETRY = 10.0  # seconds before a failed fence is tried again


class Controller:
    def __init__(
        self,
        store: Store,
        keys: Keys,
        node: str,
        spec: Callable[[], Spec],
        wall: Callable[[], float] = time.time,
        deaths: Callable[[], dict[str, float]] = dict,
        inputs: InputLog | None = None,
        clock: Clock | None = None,
    ) -> None:
        """``wall``: the time records carry (failure times, shown to people); ``clock``: the
        monotonic clock every window of the controller runs on (a wall clock step must not
        move the fence-retry window)."""
        self._store = store
        self._keys = keys
        self._node = node
        self._spec = spec
        self._wall = wall
        self._deaths = deaths  # node -> when gossip came to hold it dead (monotonic)
        self._inputs = inputs  # the last transitions' inputs (like Pacemaker's pe-input)
        self._clock = clock or MonotonicClock()
        self._seen: dict[bytes, tuple[int, float]] = {}  # key -> (revision, first seen)
        self.token: int | None = None  # create revision of our controller key
        self._last_notes: set[str] = set()
        self._fence_failed: dict[str, float] = {}  # node -> when its fence failed (clock)
        self._fencing: dict[str, asyncio.Task[bool]] = {}  # fences under way, by node
        self._skipped: set[tuple[bytes, int]] = set()  # malformed records said (key, revision)

    @property
    def active(self) -> bool:
        return self.token is not None

    async def campaign(self, lease: int) -> bool:
        key = self._keys.controller
        result = await self._store.txn(
            [Compare.missing(key)], [Put(key, self._node.encode(), lease)]
        )
        if result.succeeded:
            self.token = result.revision
            await self._event("controller", f"{self._node} became the controller")
            return True
        current = await self._store.get(key)
        if current is not None:
            self._first_seen(current)
        if current is not None and current.value == self._node.encode() and current.lease == lease:
            self.token = current.create_revision  # ours already (e.g. after a lost reply)
            return True
        self.token = None
        return False

    def resign(self) -> None:
        self.token = None

    async def step(self) -> str:
        if self.token is None:
            return "not the controller"
        spec = self._spec()
        result = await self._store.range(self._keys.root.encode())
        snap, plan = self._plan(spec, result.kvs)
        assigned, notes = staged_assignments(spec, snap, plan)
        ops, changed = self._assignment_ops(assigned, result.kvs)
        for note in sorted(set(notes) - self._last_notes):
            ops.append(self._event_op("waiting", note))
        self._last_notes = set(notes)
        ops += self._explanations(spec, snap, plan, assigned, changed)
        ops += self._skipped_events(read_records(self._keys, result.kvs).skipped)
        if not ops:
            return "no change"
        if self._inputs is not None:
            self._inputs.record(snap, plan, changed)
        return await self._write(spec, ops, assigned, changed, result.kvs)

    def _plan(self, spec: Spec, kvs: list[KeyValue]) -> tuple[Snapshot, Plan]:
        """The snapshot and the plan; fences the plan asks for start in the background (a
        slow fence agent must not stop the cluster) and the plan is made again around them
        as fences under way (their success wakes a new step)."""
        now = self._wall()
        lost = self._lost(kvs)
        failed = {n for n in self._fence_failed if self._fence_recent(n)}
        fencing = {n for n, task in self._fencing.items() if not task.done()}
        snap = snapshot_from_kvs(spec, self._keys, kvs, now, lost, failed, fencing)
        plan = schedule(spec, snap)
        started = [a.node for a in plan.actions if a.kind == "fence"]
        for node in started:
            self._fencing[node] = asyncio.create_task(self._fence_task(spec, node, kvs))
        if started:
            fencing |= set(started)
            snap = snapshot_from_kvs(spec, self._keys, kvs, now, lost, failed, fencing)
            plan = schedule(spec, snap)
        return snap, plan

    def _assignment_ops(
        self, assigned: Assigned, kvs: list[KeyValue]
    ) -> tuple[list[Put | Delete], list[str]]:
        """The writes that take ``assign/`` to ``assigned`` (and delete the assignments of
        resources no longer in the spec), and the resources whose assignment changes. Each
        instance names the registration it is for: an agent whose node registered again
        since (a fenced node that rebooted fast) does not act on an exclusive assignment meant
        for its previous life (rule 2: the fence ended that one)."""
        regs = {
            kv.key[len(self._keys.nodes()) :].decode(errors="replace"): kv.mod_revision
            for kv in kvs
            if kv.key.startswith(self._keys.nodes())
        }
        current = {kv.key: kv.value for kv in kvs if kv.key.startswith(self._keys.prefix("assign"))}
        ops: list[Put | Delete] = []
        changed = []
        for name, instances in assigned.items():
            record = AssignRecord(
                tuple(AssignedInstance(i.node, i.role, i.item, regs.get(i.node)) for i in instances)
            )
            key = self._keys.assign(name)
            old = current.pop(key, None)
            # compared as records: one written before versions, or by a newer controller with
            # more fields, is not rewritten (nor explained) for saying the same
            if old is None or AssignRecord.parse(old) != record:
                ops.append(Put(key, record.dump()))
                changed.append(name)
        ops += [Delete(key) for key in current]  # resources no longer in the spec
        return ops, changed

    def _explanations(
        self,
        spec: Spec,
        snap: Snapshot,
        plan: Plan,
        assigned: Assigned,
        changed: list[str],
    ) -> list[Put | Delete]:
        """An ``assign`` event per changed resource: where it goes, and why it leaves the
        nodes it ran on (the score that excludes them, if any)."""
        ctx = Context(spec, snap)
        placed = {n: {i.node for i in insts} for n, insts in assigned.items()}
        ops: list[Put | Delete] = []
        for name in changed:
            decision = plan.decisions[name]
            running_on = {i.node for i in ctx.observed.get(name, [])}
            left = [
                f"{node}: {score.why}"
                for node in sorted(running_on - placed[name])
                if (
                    score := node_score(ctx, name, node, with_nodes=placed, apart_nodes=placed)
                ).total
                is None
            ]
            reasons = "; ".join(left + decision.reasons + decision.blocked)
            where = ", ".join(f"{i.node}" for i in assigned[name]) or "nowhere"
            ops.append(self._event_op("assign", f"{name} -> {where}: {reasons}", name))
        return ops

    async def _write(
        self,
        spec: Spec,
        ops: list[Put | Delete],
        assigned: Assigned,
        changed: list[str],
        kvs: list[KeyValue],
    ) -> str:
        """One transaction, fenced by this controller's token and by the status records of
        exclusive instances' other nodes (see :meth:`_holder_compares`)."""
        assert self.token is not None  # step() returned before, otherwise
        token = Compare(self._keys.controller, "create_revision", "==", self.token)
        holders = self._holder_compares(spec, assigned, changed, kvs)
        fenced = await self._store.txn([token, *holders], ops)
        if not fenced.succeeded:
            mine = await self._store.get(self._keys.controller)
            if holders and mine is not None and mine.create_revision == self.token:
                # a node reported an exclusive instance since our read (an agent about to
                # start it): plan again from a fresh read (its write wakes the next round)
                return "not written: a holder appeared since the read; planning again"
            self.token = None
            return "deposed: the controller key is no longer ours"
        await self._trim_events(kvs)
        return f"wrote {len(changed)} assignment(s)" + (
            f": {', '.join(changed)}" if changed else ""
        )

    def _holder_compares(
        self,
        spec: Spec,
        assigned: dict[str, list[Instance]],
        changed: list[str],
        kvs: list[KeyValue],
    ) -> list[Compare]:
        """For every exclusive resource whose assignment this step changes: its status record
        on each node it is not assigned to is as the read saw it (absent: mod revision 0).
        An agent reports an exclusive instance as starting before it starts it (and reads its
        assignment again); so a new assignment is never written over a report this step did
        not see: the handoff waits for that holder instead (rule 1 across nodes)."""
        seen = {kv.key: kv.mod_revision for kv in kvs}
        out = []
        for name in changed:
            if not spec.resources[name].exclusive:
                continue
            targets = {i.node for i in assigned[name]}
            for node in spec.nodes:
                if node not in targets:
                    key = self._keys.status(node, name)
                    out.append(Compare(key, "mod_revision", "==", seen.get(key, 0)))
        return out

    def _fence_recent(self, node: str) -> bool:
        """A fence of ``node`` failed less than ``FENCE_RETRY`` ago: not tried again yet."""
        failed = self._fence_failed.get(node)
        return failed is not None and self._clock.now() - failed < FENCE_RETRY

    async def _fence_task(self, spec: Spec, node: str, kvs: list[KeyValue]) -> bool:
        """A background fence: a store that fails mid-way counts as a failed fence (retried
        after ``FENCE_RETRY``, the lease path meanwhile), never as an unobserved exception."""
        try:
            return await self._fence(spec, node, kvs)
        except StoreError as exc:
            self._fence_failed[node] = self._clock.now()
            log.warning("%s: fencing %s: the store failed: %s", self._node, node, exc)
            return False

    async def _fence(self, spec: Spec, node: str, kvs: list[KeyValue]) -> bool:
        """Fence ``node`` (as the controller) and record the fenced registration."""
        key = self._keys.node(node)
        found = next((kv for kv in kvs if kv.key == key), None)
        token = self.token
        if found is None or token is None:
            return False  # its lease expired meanwhile (offline without a fence), or deposed
        guard = Compare(self._keys.controller, "create_revision", "==", token)
        return await self._fence_registration(spec, node, found, guard, "lost with a live lease")

    def _first_seen(self, kv: KeyValue) -> float:
        """When this agent first saw this version of the key (this creation of it)."""
        return self.noticed(kv.key, kv.mod_revision)

    def noticed(self, key: bytes, revision: int) -> float:
        """Note that ``key`` was written at ``revision`` (from a read or the watch: a new
        controller key is seen when it is made, not when its holder dies). Registrations and
        controller keys are written once each (a re-registration is a new write under a new
        lease, even when the key still existed): the revision names one of them."""
        seen = self._seen.get(key)
        if seen is None or seen[0] != revision:
            seen = (revision, self._clock.now())
            self._seen[key] = seen
        return seen[1]

    def _lost(self, kvs: list[KeyValue]) -> set[str]:
        """Registered nodes that gossip came to hold dead after their registration was first
        seen here, unless gossip holds most of the other nodes dead (see :func:`plausible`).

        A rebooted node registers before its gossip member has refuted its old death; that
        death is not about this registration, so it does not make it unclean."""
        deaths = self._deaths()
        prefix = self._keys.nodes()
        out = set()
        for kv in kvs:
            if kv.key.startswith(prefix):
                node = kv.key[len(prefix) :].decode(errors="replace")
                seen = self._first_seen(kv)  # on every step: a registration is seen early
                if node in deaths and deaths[node] > seen:
                    out.add(node)
        return out if plausible(out, self._spec().nodes, self._node) else set()

    async def replace_dead(self) -> str | None:
        """The controller's own death, fast: when gossip holds the controller dead, the first
        node of the spec that gossip holds alive fences it and revokes its lease, so that a new
        controller is elected now instead of after the lease's expiry (rule 2: the lease may go
        early only because the fence succeeded). The read of the controller key is
        linearizable: a node cut off from the store's quorum never fences. None when there is
        nothing to do."""
        if self.token is not None:
            return None
        deaths = self._deaths()
        if not deaths:
            return None
        spec = self._spec()
        kv = await self._store.get(self._keys.controller)
        holder = kv.value.decode(errors="replace") if kv is not None else ""
        if kv is None or holder == self._node or holder not in spec.nodes:
            return None
        if deaths.get(holder, -math.inf) <= self._first_seen(kv):
            return None  # not held dead, or dead before this controller key was made
        alive = [n for n in spec.nodes if n not in deaths]
        if not alive or alive[0] != self._node:
            return None  # another node's duty
        if not plausible(set(deaths), spec.nodes, self._node):
            return None  # our own gossip is the likelier one to be cut off

        if self._fence_recent(holder):
            return None
        target = spec.nodes[holder]
        if not (spec.fencing if target.fence is None else target.fence):
            return None  # no device: the controller key goes with its lease
        found = await self._store.get(self._keys.node(holder))
        if found is None:
            return None
        guard = Compare(self._keys.controller, "create_revision", "==", kv.create_revision)
        if await self._fence_registration(spec, holder, found, guard, "the controller was lost"):
            return f"fenced the lost controller {holder}"
        return f"could not fence the lost controller {holder}"

    async def _fence_registration(
        self, spec: Spec, node: str, found: KeyValue, guard: Compare, why: str
    ) -> bool:
        """Run ``node``'s fence devices in order until one succeeds; then record the fenced
        registration (if ``guard`` and the registration still hold) and revoke its lease."""
        target = spec.nodes[node]
        ctx = NodeContext(node, str(target.address), dict(target.attrs))
        devices = spec.fencing if target.fence is None else target.fence
        errors = []
        for name in devices:
            device = spec.fencing[name]
            began = self._clock.now()
            try:
                await fence_node(device, ctx)
            except DriverError as exc:
                errors.append(f"{name}: {exc}")
                continue
            took = self._clock.now() - began
            record = FencedRecord(found.mod_revision, self._wall(), name).dump()
            reason = f"{node} fenced by {name} ({device.action}, {took:.2f}s): {why}"
            fenced = await self._store.txn(
                [guard, Compare(found.key, "mod_revision", "==", found.mod_revision)],
                [Put(self._keys.fenced(node), record), self._event_op("fence", reason, "")],
            )
            self._fence_failed.pop(node, None)
            if fenced.succeeded and found.lease:
                # the fenced registration's keys go now, not at its lease's expiry: it is
                # offline for everyone at once (its status, and its controller key if it held it)
                with contextlib.suppress(StoreError):
                    await self._store.revoke(found.lease)
            return fenced.succeeded
        self._fence_failed[node] = self._clock.now()
        await self._event(
            "fence", f"fencing {node} failed, waiting for its lease: {'; '.join(errors)}"
        )
        return False

    def _event_op(self, kind: str, reason: str, resource: str = "") -> Put:
        now = self._wall()
        key = self._keys.event_key(time.time_ns(), self._node)
        return Put(key, Event(now, self._node, resource, kind, reason).dump())

    def _skipped_events(self, skipped: list[Skipped]) -> list[Put | Delete]:
        """A ``record`` event for each malformed record the step left out, once per key and
        revision (a record rewritten malformed again is said again)."""
        seen = {(s.key, s.mod_revision) for s in skipped}
        new = [s for s in skipped if (s.key, s.mod_revision) not in self._skipped]
        self._skipped = seen  # only what is still there: the memory stays bounded
        return [self._event_op("record", f"skipped a malformed record: {s}") for s in new]

    async def _event(self, kind: str, reason: str, resource: str = "") -> None:
        op = self._event_op(kind, reason, resource)
        await self._store.put(op.key, op.value)

    async def _trim_events(self, kvs: list) -> None:  # type: ignore[type-arg]
        prefix = self._keys.event_prefix()
        events = [kv.key for kv in kvs if kv.key.startswith(prefix)]
        if len(events) > MAX_EVENTS + 100:  # trim in batches, oldest first
            for key in sorted(events)[: len(events) - MAX_EVENTS]:
                await self._store.delete(key)


def plausible(dead: set[str], nodes: Iterable[str], me: str) -> bool:
    """Whether deaths that one agent's gossip reports can be believed enough to fence on: not
    when they are most of the other nodes. An agent whose own gossip is cut off (a filtered
    UDP port, a full socket buffer) sees every peer die at once; fencing them all would take
    the cluster down. Such deaths wait for the leases instead (rule 2's slow path). Up to
    half of the others may be fenced at once (one of two, two of four); with two nodes a
    peer's death cannot be told from our own isolation: it waits for the lease too."""
    others = [n for n in nodes if n != me]
    return len(dead - {me}) * 2 <= len(others) and len(others) > 1
