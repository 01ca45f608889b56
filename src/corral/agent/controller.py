"""The controller duty of an agent (shell): one at a time, elected through the store.

Every decision is made by the pure core :mod:`corral.core.controller` (what a step writes,
whom to fence, when a failed fence is retried, whether to replace a lost controller); this
module reads the store, feeds the core with what it read and the injected clocks (``clock``,
monotonic, for every window; ``wall`` only for what people see), and carries out what the
core returns.

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
  fence's store writes wake the next step, in which that registration is offline. A node
  whose fence failed is not fenced again for ``FENCE_RETRY`` seconds of the monotonic clock;
  meanwhile its exclusive instances wait for its lease to expire.
- Systemic failures (:mod:`corral.core.systemic`): each step first judges every node's listed
  failures (:func:`~corral.records.failures.judge_failures`) and plans on the judged counts;
  the failure records with failures newly judged systemic are rewritten each in its own
  transaction comparing the controller key and the record as read (an agent adds failures
  with a compare-and-swap too, so neither undoes the other); an episode's start and end are
  one event each, with the ``systemic/<resource>`` record, in the step's transaction.
- Every step returns a decision string (what it did), for logs and tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from corral.agent.galera_gate import GaleraGates, GaleraStep
from corral.agent.inputlog import InputLog
from corral.agent.rabbit_gate import RabbitGates, RabbitStep
from corral.agent.view import StoreView
from corral.clocks import MonotonicClock
from corral.core import controller as core
from corral.core.assign import staged_assignments
from corral.core.clock import Clock
from corral.core.controller import ControllerKey, HolderGuard, Placement, StepInputs, StepWrites
from corral.core.scheduler import Plan, Snapshot
from corral.drivers.base import DriverError, NodeContext
from corral.drivers.fence import fence_node
from corral.records import (
    DROPS,
    AssignedInstance,
    AssignRecord,
    Event,
    FencedRecord,
    Skipped,
    StoreRecords,
    SystemicRecord,
    read_records,
    snapshot,
)
from corral.records.alerts import NodeStates
from corral.records.failures import Judged, judge_failures, with_judged
from corral.records.galera import Txn
from corral.spec import Spec
from corral.spec.model import FenceDevice
from corral.store import Compare, Delete, Keys, KeyValue, Put, Store, StoreError

log = logging.getLogger(__name__)

FenceRunner = Callable[[FenceDevice, NodeContext], Awaitable[object]]
"""Runs one fence device against a node; returns on success, raises DriverError otherwise."""


def token_compare(keys: Keys, token: int) -> Compare:
    """The fencing token: the controller key is still the one created at ``token``. Every
    write of a controller carries it, so a deposed controller's write fails."""
    return Compare(keys.controller, "create_revision", "==", token)


def holder_compares(keys: Keys, guards: Iterable[HolderGuard]) -> list[Compare]:
    """The step's holder guards as store preconditions (see :func:`core.holder_guards`)."""
    return [
        Compare(keys.status(g.node, g.resource), "mod_revision", "==", g.mod_revision)
        for g in guards
    ]


def assign_record(placements: Iterable[Placement]) -> bytes:
    """An ``assign/<resource>`` value (:class:`~corral.records.AssignRecord`)."""
    return AssignRecord(
        tuple(AssignedInstance(p.node, p.role, p.item, p.reg) for p in placements)
    ).dump()


@dataclass(frozen=True)
class _Read:
    """The records a step decides from, parsed from its one range read."""

    registrations: dict[str, int]
    current: dict[str, tuple[Placement, ...] | None]  # None: not readable, written again
    assign_keys: dict[str, bytes]  # resource -> its assign/ key (to delete it)
    status_revisions: dict[tuple[str, str], int]


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
        fence: FenceRunner = fence_node,
        view: StoreView | None = None,
    ) -> None:
        """``wall``: the time records carry (failure times, event keys: shown to people);
        ``clock``: the monotonic clock every window of the controller runs on (a wall clock
        step must not move the fence-retry window); the controller reads no other clock.
        ``fence``: runs one fence device (tests inject a scripted one). ``view``: the
        agent's watch copy of the prefix, planned from instead of a read of the whole store
        (:meth:`_read`)."""
        self._store = store
        self._keys = keys
        self._node = node
        self._spec = spec
        self._wall = wall
        self._deaths = deaths  # node -> when gossip came to hold it dead (monotonic)
        self._inputs = inputs  # the last transitions' inputs (like Pacemaker's pe-input)
        self._clock = clock or MonotonicClock()
        self._fence_runner = fence
        self._seen: dict[bytes, tuple[int, float]] = {}  # key -> (revision, first seen)
        self.token: int | None = None  # create revision of our controller key
        self._last_notes: frozenset[str] = frozenset()
        self._last_event_ns = 0  # the time of our last event key (keys never repeat)
        self._fence_failed: dict[str, float] = {}  # node -> when its fence failed (clock)
        self._fencing: dict[str, asyncio.Task[bool]] = {}  # fences under way, by node
        self._skipped: set[tuple[bytes, int]] = set()  # malformed records said (key, revision)
        self.last_replace: core.Replace | None = None  # replace_dead's last decision (logs, tests)
        self._view = view
        self._galera = GaleraGates(keys, node, self._clock.now, wall)  # bootstrap gates
        self._rabbit = RabbitGates(keys, wall)  # RabbitMQ plans and force-boot claims
        self._written = 0  # the revision of our last write: a view must include it

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
        """One step: read, plan (:func:`core.plan_around_fences`), stage, decide the writes
        (:func:`core.step_writes`) and make them in one fenced transaction."""
        if self.token is None:
            return "not the controller"
        spec = self._spec()
        kvs = await self._read()
        records = read_records(self._keys, kvs, DROPS)
        judged = judge_failures(spec, records, self._wall())
        snap, plan = self._plan(spec, kvs, with_judged(records, judged))
        assigned, notes = staged_assignments(spec, snap, plan)
        galera = self._galera.apply(spec, records, kvs, assigned, notes, self.token)
        assigned, notes = galera.assigned, galera.notes
        rabbit = RabbitStep(assigned, notes)
        rabbit = self._rabbit.apply(spec, records, kvs, rabbit, self.token, self._event_op)
        assigned, notes = rabbit.assigned, rabbit.notes
        if not await self._rabbit_plans(rabbit):
            return "a rabbitmq plan was not written (deposed, or a newer plan): reading again"
        read = self._parse(spec, kvs)
        writes = core.step_writes(
            StepInputs(
                spec,
                snap,
                plan,
                assigned,
                notes,
                read.current,
                read.registrations,
                read.status_revisions,
                self._last_notes,
                judged.episodes,
                {name: record.episode for name, record in records.systemic.items()},
            )
        )
        self._last_notes = writes.notes
        moved = await self._excuse(judged, kvs)
        said = self._skipped_events(records.skipped) + self._node_events(spec, snap, kvs)
        said += [self._event_op("bootstrap", why, res) for res, _, why in galera.claims]
        if writes.empty and not said:
            cleared = (await self._galera_writes(galera)).removeprefix("; ")
            return cleared or moved or "no change"
        if self._inputs is not None:
            self._inputs.record(snap, plan, writes.changed)
        done = await self._write(writes, read, kvs, said, galera.claims)
        if done.startswith("wrote"):
            done += await self._galera_writes(galera)
        if done.startswith("wrote"):  # said once written: a refused write says them again
            self._skipped = {(s.key, s.mod_revision) for s in records.skipped}
        return f"{moved}; {done}" if moved else done

    def _node_events(self, spec: Spec, snap: Snapshot, kvs: list[KeyValue]) -> list[Put]:
        """A ``node`` event (about ``target``) per node whose state changed since the node
        events last said it (:func:`core.node_events`), and the ``alerts/nodes`` record of
        the states now when they changed: what node alerts are made of. The last said
        states come from the store, not from this controller's memory, so a change during a
        controller handover is said by the new controller, and a step whose write is refused
        says its changes again (none is said twice: the record moves in the same write)."""
        nodes: dict[str, str] = {n: snap.node(n).state for n in spec.nodes}
        kv = next((kv for kv in kvs if kv.key == self._keys.alert_nodes), None)
        record = NodeStates.parse_kv(kv) if kv is not None else None
        last = record.states if record is not None else None
        if last == nodes:
            return []
        said = [
            self._event_op("node", why, target=node) for node, why in core.node_events(last, nodes)
        ]
        return [*said, Put(self._keys.alert_nodes, NodeStates(nodes).dump())]

    async def _excuse(self, judged: Judged, kvs: list[KeyValue]) -> str:
        """Rewrite the failure records whose failures were judged systemic (moved out of
        their counts), each in a transaction that compares the controller key and the record
        as read: a deposed controller rewrites nothing, and a failure an agent added since is
        not undone (the next step judges again). Says what it rewrote ("" for nothing)."""
        if not judged.excused or self.token is None:
            return ""
        revisions = {kv.key: kv.mod_revision for kv in kvs}
        moved = []
        for (node, res), record in sorted(judged.excused.items()):
            key = self._keys.failcount(node, res)
            guards = [token_compare(self._keys, self.token)]
            guards.append(Compare.unchanged_since(key, revisions.get(key, 0)))
            result = await self._store.txn(guards, [Put(key, record.dump())])
            self._written = max(self._written, result.revision)
            if result.succeeded:
                moved.append(f"{res}@{node}")
        return f"systemic, not counted: {', '.join(moved)}" if moved else ""

    async def _read(self) -> list[KeyValue]:
        """The cluster prefix: the watch's copy when it is trusted and includes this
        controller's last write (a step never plans from a copy that misses it), else one
        range read. The copy costs nothing to read, so a step's cost follows what changed,
        not the size of the cluster. Its writes stay fenced as ever (token, holder guards),
        and a fence first confirms the registration with a linearizable read (:meth:`_fence`)."""
        if self._view is not None and self._view.sees(self._written):
            return self._view.kvs()
        return (await self._store.range(self._keys.root.encode())).kvs

    def _plan(
        self, spec: Spec, kvs: list[KeyValue], records: StoreRecords
    ) -> tuple[Snapshot, Plan]:
        """The snapshot (of ``records``, as read from ``kvs`` and judged) and the plan; the
        fences the plan asks for start in the background."""
        lost = self._lost(kvs)
        now = self._clock.now()
        failed = {n for n, at in self._fence_failed.items() if core.fence_recent(at, now)}
        fencing = {n for n, task in self._fencing.items() if not task.done()}
        snap = snapshot(spec, records, self._wall(), lost, failed, fencing)
        snap, plan, started = core.plan_around_fences(spec, snap)
        for node in started:
            self._fencing[node] = asyncio.create_task(self._fence_task(spec, node, kvs))
        return snap, plan

    def _parse(self, spec: Spec, kvs: list[KeyValue]) -> _Read:
        """Registrations, assignments (None: not readable, so written again) and status
        revisions, as the step's one read saw them."""
        nodes, assign = self._keys.nodes(), self._keys.prefix("assign")
        regs: dict[str, int] = {}
        current: dict[str, tuple[Placement, ...] | None] = {}  # None: not readable
        assign_keys: dict[str, bytes] = {}
        for kv in kvs:
            if kv.key.startswith(nodes):
                regs[kv.key[len(nodes) :].decode(errors="replace")] = kv.mod_revision
            elif kv.key.startswith(assign):
                name = kv.key[len(assign) :].decode(errors="replace")
                # compared as records, not bytes: a record an older version wrote (no "v")
                # that says the same is not rewritten, nor announced again, after an upgrade
                record = AssignRecord.parse(kv.value)
                current[name] = (
                    tuple(Placement(i.node, i.role, i.item, i.reg) for i in record.instances)
                    if record is not None
                    else None
                )
                assign_keys[name] = kv.key
        seen = {kv.key: kv.mod_revision for kv in kvs}
        status = {
            (node, res): seen[key]
            for node in spec.nodes
            for res in spec.resources
            if (key := self._keys.status(node, res)) in seen
        }
        return _Read(regs, current, assign_keys, status)

    async def _rabbit_plans(self, rabbit: RabbitStep) -> bool:
        """Write the RabbitMQ plans that changed, each in its own transaction (token, the
        plan as read, and its force-boot claim: :func:`corral.records.rabbit_plan.plan_txn`),
        before the step's assignments: an agent told to run a broker finds its decision.
        False when one failed (the step must not promote by a plan that is not stored)."""
        for _, txn in rabbit.plans:
            result = await self._store.txn(list(txn.compares), list(txn.ops))
            self._written = max(self._written, result.revision)
            if not result.succeeded:
                return False
        return True

    async def _galera_writes(self, galera: GaleraStep) -> str:
        """After the step's write: clear the bootstrap claims whose claimant is Primary and
        write the Galera writer records that change (each its own transaction: the token and
        the record as read, so a newer claim or writer is left alone; a writer change is an
        event in the same transaction)."""
        txns = [(t, "cleared a bootstrap claim") for t in galera.clears]
        for res, txn, why in galera.writers:
            event = self._event_op("writer", why, res)
            txns.append((Txn(txn.compares, (*txn.success, event)), f"writer of {res}: {why}"))
        done = []
        for txn, said in txns:
            result = await self._store.txn(list(txn.compares), list(txn.success))
            self._written = max(self._written, result.revision)
            if result.succeeded:
                done.append(said)
        return "".join(f"; {d}" for d in done)

    async def _write(
        self,
        writes: StepWrites,
        read: _Read,
        kvs: list[KeyValue],
        said: list[Put],
        claims: Sequence[tuple[str, Txn, str]] = (),
    ) -> str:
        """One transaction, fenced by this controller's token and by the holder guards; a
        Galera bootstrap claim goes in it with the assignment that promotes its node (rule
        6: the claim and the order to bootstrap are one write)."""
        assert self.token is not None  # step() returned before, otherwise
        ops: list[Put | Delete] = [
            Put(self._keys.assign(name), assign_record(p)) for name, p in writes.put.items()
        ]
        ops += [Delete(read.assign_keys[name]) for name in writes.delete]
        ops += [
            Put(self._keys.systemic(name), SystemicRecord.of(episode).dump())
            for name, episode in writes.episodes_put.items()
        ]
        ops += [Delete(self._keys.systemic(name)) for name in writes.episodes_delete]
        ops += [self._event_op(e.kind, e.reason, e.resource) for e in writes.events]
        ops += said
        holders = holder_compares(self._keys, writes.guards)
        holders += [c for _, txn, _ in claims for c in txn.compares]
        ops += [op for _, txn, _ in claims for op in txn.success]
        fenced = await self._store.txn([token_compare(self._keys, self.token), *holders], ops)
        # the next step plans from a copy that includes this write, or what refused it (a
        # refused transaction answers with the store's current revision)
        self._written = fenced.revision
        if not fenced.succeeded:
            mine = await self._store.get(self._keys.controller)
            if holders and mine is not None and mine.create_revision == self.token:
                # a node reported an exclusive instance since our read (an agent about to
                # start it): plan again from a fresh read (its write wakes the next round)
                return "not written: a holder appeared since the read; planning again"
            self.token = None
            return "deposed: the controller key is no longer ours"
        await self._trim_events(kvs)
        changed = writes.changed
        episodes = [f"{n} systemic" for n in writes.episodes_put]
        episodes += [f"{n} no longer systemic" for n in writes.episodes_delete]
        return (
            f"wrote {len(changed)} assignment(s)"
            + (f": {', '.join(changed)}" if changed else "")
            + (f" ({'; '.join(episodes)})" if episodes else "")
        )

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
        planned = next((kv for kv in kvs if kv.key == key), None)
        # a linearizable read before a fence: a controller cut off from the store's quorum
        # never fences, and never on a registration the plan's copy had wrong
        found = await self._store.get(key)
        token = self.token
        if found is None or token is None or planned is None:
            return False  # its lease expired meanwhile (offline without a fence), or deposed
        if found.mod_revision != planned.mod_revision:
            return False  # it registered again since the plan: that one is not unclean
        guard = token_compare(self._keys, token)
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
        """Registered nodes that gossip holds unclean (:func:`core.lost_nodes`); every
        registration is noted as seen on every step, so it is seen early."""
        prefix = self._keys.nodes()
        first_seen = {
            kv.key[len(prefix) :].decode(errors="replace"): self._first_seen(kv)
            for kv in kvs
            if kv.key.startswith(prefix)
        }
        return core.lost_nodes(first_seen, self._deaths(), self._spec().nodes, self._node)

    async def replace_dead(self) -> str | None:
        """The controller's own death, fast: when gossip holds the controller dead, the first
        node of the spec that gossip holds alive fences it and revokes its lease, so that a new
        controller is elected now instead of after the lease's expiry (rule 2: the lease may go
        early only because the fence succeeded). Decided by :func:`core.replace_dead`; the read
        of the controller key is linearizable: a node cut off from the store's quorum never
        fences. None when there is nothing to do."""
        deaths = self._deaths()
        early = core.before_read(self.token is not None, deaths)
        if early is not None:
            self.last_replace = core.Replace(None, early)
            return None  # no store read on a quiet round
        spec = self._spec()
        kv = await self._store.get(self._keys.controller)
        key = None
        if kv is not None:
            key = ControllerKey(kv.value.decode(errors="replace"), self._first_seen(kv))
        failed = self._fence_failed.get(key.holder) if key is not None else None
        devices = {n: core.fence_devices(spec, n) for n in spec.nodes}
        decision = core.replace_dead(
            self._node, self.active, key, deaths, devices, failed, self._clock.now()
        )
        self.last_replace = decision
        if decision.fence is None or kv is None:
            log.debug("%s: not replacing the controller: %s", self._node, decision.why.value)
            return None
        holder = decision.fence
        found = await self._store.get(self._keys.node(holder))
        if found is None:
            return None  # its registration expired meanwhile: nothing left to fence
        guard = token_compare(self._keys, kv.create_revision)
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
        errors = []
        for name in core.fence_devices(spec, node):
            device = spec.fencing[name]
            began = self._clock.now()
            try:
                await self._fence_runner(device, ctx)
            except DriverError as exc:
                errors.append(f"{name}: {exc}")
                continue
            took = self._clock.now() - began
            record = FencedRecord(found.mod_revision, self._wall(), name).dump()
            reason = f"{node} fenced by {name} ({device.action}, {took:.2f}s): {why}"
            fenced = await self._store.txn(
                [guard, Compare(found.key, "mod_revision", "==", found.mod_revision)],
                [Put(self._keys.fenced(node), record), self._event_op("fence", reason, "", node)],
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
            "fence", f"fencing {node} failed, waiting for its lease: {'; '.join(errors)}", "", node
        )
        return False

    def _event_op(self, kind: str, reason: str, resource: str = "", target: str = "") -> Put:
        """An event record; its key's time is the injected wall clock's (shown to people),
        after this controller's previous event (:func:`core.event_time_ns`); ``target``: the
        node it is about (a fence's, for the alerts)."""
        now = self._wall()
        self._last_event_ns = core.event_time_ns(now, self._last_event_ns)
        key = self._keys.event_key(self._last_event_ns, self._node)
        return Put(key, Event(now, self._node, resource, kind, reason, target=target).dump())

    def _skipped_events(self, skipped: list[Skipped]) -> list[Put]:
        """A ``record`` event for each malformed record the step left out that was not said
        yet (once per key and revision: a record rewritten malformed again is said again).
        The step remembers what it said once its write succeeded; the memory keeps only what
        is still there, so it stays bounded."""
        new = [s for s in skipped if (s.key, s.mod_revision) not in self._skipped]
        return [self._event_op("record", f"skipped a malformed record: {s}") for s in new]

    async def _event(self, kind: str, reason: str, resource: str = "", target: str = "") -> None:
        op = self._event_op(kind, reason, resource, target)
        await self._store.put(op.key, op.value)

    async def _trim_events(self, kvs: list[KeyValue]) -> None:
        prefix = self._keys.event_prefix()
        for key in core.to_trim(sorted(kv.key for kv in kvs if kv.key.startswith(prefix))):
            await self._store.delete(key)
