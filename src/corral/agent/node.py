"""The node agent (asyncio shell): lease, controller duty, local reconcile, reporting.

Contract (DESIGN.md roles and rules):
- The node is registered under a lease (``nodes/<node>``) renewed every ``keepalive_interval``.
- Rule 1: exclusive instances run only while the lease is fresh: when ``lease_ttl -
  safety_margin`` passes without a successful renewal, the agent stops them by itself, without
  needing the store, and starts none until it holds a lease again.
- One agent is the controller (:mod:`corral.agent.controller`); every agent reconciles its node
  toward the assignments (:mod:`corral.core.reconcile`), restarts failed or unhealthy services in
  place (with backoff), counts failures in ``failcounts/`` (the scheduler bans after the
  threshold) and reports what runs in ``status/<node>/<resource>`` under its lease.
- At start it adopts services already running (left by a previous agent) instead of restarting
  them. A corrupt record, a dead store or a failing driver is logged as an event and retried; it
  never stops the agent.
- Spec changes come through the store's ``spec`` key; a spec that does not validate is refused
  with an event and the running spec is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from corral.agent.assigned import Registration, local_instances, read_desired, still_assigned
from corral.agent.controller import Controller
from corral.agent.guard import GuardWriter
from corral.agent.guard import spawn as guard_spawn
from corral.agent.inputlog import InputLog
from corral.agent.instances import Checker, LocalService, RestartBackoff, split_key
from corral.agent.lb import LbDuty
from corral.agent.lock import AgentLock
from corral.agent.membership import AgentGossip
from corral.agent.network import NetworkDuties
from corral.agent.publish import StatusPublisher
from corral.agent.quorum import QuorumKeeper, QuorumProbe, StoreVoice
from corral.agent.records import Event, dump, load
from corral.clocks import MonotonicClock
from corral.core.clock import Clock, Grid, wall_grid
from corral.core.reconcile import LocalAction, LocalInstance, reconcile
from corral.core.scheduler.actions import resource_ranks
from corral.core.scheduler.model import Snapshot
from corral.core.scheduler.scores import Context
from corral.core.stall import StallLog
from corral.drivers.base import Driver, DriverError, NodeContext, NodeFault
from corral.spec import Resource, Spec, SpecError, load_spec_text
from corral.store import Compare, Delete, Keys, LeaseNotFound, Put, Store, StoreError

log = logging.getLogger(__name__)
DriverFactory = Callable[[str, Resource, NodeContext, str | None], Driver]
STATUS_POLL = 1.0  # seconds between driver status polls (a dead service: a round at once)
ROUND_EVERY = 5.0  # seconds between full rounds when nothing changed: a safety net, since
# every change the agent must act on wakes it (watch, gossip, verdicts, driver polls)
LATE = 2.5  # renewal periods before the rule-1 deadline at which proof rounds begin
ADOPT_GRACE = 5.0  # seconds an adopted active-active service waits for its assignment
DRAIN_TIMEOUT = 3.0  # seconds a planned stop waits for every HAProxy to drain the backend
DRAIN_GRACE = 0.3  # seconds in-flight requests get after the last HAProxy drained it
JOIN_WAIT = 0.5  # seconds a (re)starting agent waits for gossip to join before registering
NETWORK_EVERY = 5.0  # seconds between load-balancer/DNS refreshes when nothing changed
NODE_FAULT_RETRY = 0.5  # seconds before a start refused for a node-level reason is tried again
STALL_SLACK = 0.6  # lateness beyond the stall beat's period that counts as a stall of the agent
TICK = 0.1  # seconds between the instants of the agent's timer grid (at most; see timer_grid)


def timer_grid(spec: Spec, clock: Clock, wall: Callable[[], float]) -> Grid:
    """The grid every periodic timer of an agent waits for (lease renewals, driver polls,
    health checks, rounds; its gossip member probes on whole multiples of it): whole
    multiples of ``TICK`` (or of the profile's probe interval if shorter) of the wall clock,
    so one wake-up serves all the timers due then, on every node whose clock agrees."""
    tick = min(TICK, spec.effective_gossip.probe_interval)
    return wall_grid(clock, tick, wall())


class Agent:
    def __init__(
        self,
        spec: Spec,
        node: str,
        store: Store,
        *,
        state_dir: Path,
        driver_factory: DriverFactory,
        checker: Checker,
        spec_text: str | None = None,
        clock: Clock | None = None,
        wall: Callable[[], float] = time.time,
        guard: bool = False,
        gossip: bool = False,
        lock: AgentLock | None = None,
        members: Mapping[str, str] | None = None,
        member_down_since: Callable[[], float | None] | None = None,
    ) -> None:
        """``guard``: run the lease guard process (:mod:`corral.agent.guard`); it needs the
        real monotonic clock, since the guard compares deadlines with CLOCK_MONOTONIC.
        ``lock``: the state dir's agent lock, when the caller took it already (the CLI, before
        it starts the embedded store member); else :meth:`run` takes it. ``members``: the
        embedded store's member name -> client URL, for the proof rounds that keep exclusive
        instances while no member has a leader (:mod:`corral.agent.quorum`); None: never.
        ``member_down_since``: the supervisor's word on this node's member (it states, over
        gossip, how long the member has been down, for the peers' proof rounds)."""
        if node not in spec.nodes:
            raise ValueError(f"node {node!r} is not in the spec (known: {', '.join(spec.nodes)})")
        self.spec, self.node, self.store = spec, node, store
        self.spec_text = spec_text
        self.keys = Keys(spec.cluster)
        self.clock = clock or MonotonicClock()
        self.wall = wall
        self.grid = timer_grid(spec, self.clock, wall)
        self.stalls = StallLog(spec.effective_timing.keepalive_interval + STALL_SLACK)
        self.driver_factory, self.checker = driver_factory, checker
        n = spec.nodes[node]
        self.ctx = NodeContext(node, str(n.address), dict(n.attrs), state_dir)
        self.services: dict[str, LocalService] = {}
        self.lease: int | None = None
        self.registration: int | None = None  # mod revision of our nodes/<node> record
        self._continuous: set[int] = set()  # earlier registrations ours replaced with no lapse
        self.renewed_at = -math.inf
        self.gossip = AgentGossip(spec, node, store, self.keys) if gossip else None
        self.controller = Controller(
            store,
            self.keys,
            node,
            lambda: self.spec,
            wall,
            deaths=self.gossip.deaths if self.gossip is not None else dict,
            inputs=InputLog(state_dir / "controller-inputs", node),
            clock=self.clock,
        )
        self.lb = LbDuty(store, self.keys, node)
        self.network = NetworkDuties(state_dir)
        self._last_network = -math.inf
        self._gossip_error: str | None = None
        self._guard_files = GuardWriter(state_dir, node) if guard else None
        self._starting: set[str] = set()  # instances whose start is under way
        self._node_faults: dict[str, str] = {}  # instance -> its last start refusal (rule 7)
        self._wake_at = math.inf  # a round is due then even if nothing changed
        self._requests_pending = True  # read requests/<node>/ at start and when it changes
        self._request_prefix = self.keys.prefix("requests") + f"{node}/".encode()
        self.decisions: list[str] = []  # recent loop decisions (tests, debugging)
        self._dirty = asyncio.Event()
        self._claiming: dict[str, LocalService] = {}  # exclusive starts reported as starting
        self.status = StatusPublisher(
            store,
            self.keys,
            node,
            lambda: [*self.services.values(), *self._claiming.values()],
            lambda: self.lease,
        )
        self._restarts = RestartBackoff()
        self._next_poll = -math.inf
        self._last_campaign = -math.inf
        self._guard = guard
        self._lock = lock
        self._adopted: set[str] = set()
        self._registered_at = -math.inf
        self._guard_lapse = -math.inf  # last renewal after the rule-1 deadline had passed
        probe = QuorumProbe(members, self.clock) if members else None
        self.voice = StoreVoice(node, self.gossip, member_down_since, self.clock)
        self.keeper = QuorumKeeper(probe, self.clock, self.voice)

    # --- timing -------------------------------------------------------------------------------

    @property
    def ttl(self) -> int:
        return max(1, math.ceil(self.spec.effective_timing.lease_ttl))

    def may_hold_exclusive(self) -> bool:
        """Rule 1: True while the last renewal is younger than ``ttl - safety_margin``. The
        condition to start or promote an exclusive instance."""
        return self.lease is not None and self.clock.now() < self._deadline()

    def may_keep_exclusive(self) -> bool:
        """The condition to keep running exclusive instances: the lease is fresh, or a proof
        that no store member has a leader keeps it alive (:mod:`corral.core.quorum`)."""
        return self.lease is not None and self.clock.now() < self._keep_deadline()

    def _keep_deadline(self) -> float:
        return self.keeper.deadline(self._deadline())

    def _me(self) -> Registration:
        """This node's registration as assignments are read against (:mod:`.assigned`)."""
        return Registration(self.node, self.registration, frozenset(self._continuous))

    def _deadline(self) -> float:
        """The rule-1 deadline of the last renewal: ``renewed_at + ttl - safety_margin``."""
        return self.renewed_at + self.ttl - self.spec.effective_timing.safety_margin

    # --- run ----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until cancelled. Services keep running when the agent stops (they are adopted
        by the next agent); exclusive ones are guarded by rule 1 only while an agent runs.

        First of all it takes the state dir's agent lock (unless the caller passed it in):
        :class:`~corral.agent.lock.AgentRunning` when another agent holds it, before anything
        is adopted or spawned."""
        lock = self._lock or AgentLock.acquire(self.ctx.state_dir)
        try:
            await self._run_locked()
        finally:
            if lock is not self._lock:
                lock.release()

    async def _run_locked(self) -> None:
        if self._guard:
            self._write_spec_copy()
            guard_spawn(self.ctx.state_dir)
        await self._adopt()
        loops = [
            self._keepalive_loop,
            self._watch_loop,
            self._main_loop,
            self._beat_loop,
            self._quorum_loop,
        ]
        tasks = [asyncio.create_task(self._forever(loop)) for loop in loops]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            for svc in self.services.values():
                await svc.stop_checks()
            if self.gossip is not None:  # leave: peers see a graceful stop, not a death
                with contextlib.suppress(Exception):
                    await self.gossip.stop()
            await self.network.close_dns()
            await self.keeper.close()
            if self._guard_files is not None:
                self._guard_files.close()

    async def _forever(self, loop: Callable[[], Awaitable[None]]) -> None:
        """Run ``loop``; if it ever fails, say so and run it again (an agent never dies of a
        surprise in one of its loops)."""
        while True:
            try:
                await loop()
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
                self._decide(f"{loop.__name__} was cancelled from inside; restarting it")
            except Exception as exc:
                log.exception("%s: %s failed", self.node, loop.__name__)
                self._decide(f"{loop.__name__} failed ({exc!r}); restarting it")
            await asyncio.sleep(0.5)

    async def stop_services(self) -> None:
        """Stop every local service (``corral agent --stop-on-exit``, tests)."""
        for name in list(self.services):
            await self._stop(name, "agent shutting down", planned=True)

    async def _adopt(self) -> None:
        for key, (name, item) in local_instances(self.spec, self.node).items():
            res = self.spec.resources[name]
            try:
                driver = self._driver(name, res, item)
                if await driver.adopt():
                    svc = self._service(key, res, driver)
                    self.services[key] = svc
                    self._adopted.add(key)
                    self._decide(f"adopted {key}: already running")
            except DriverError as exc:
                self._decide(f"cannot inspect {key}: {exc}")

    # --- lease ----------------------------------------------------------------------------------

    async def _keepalive_loop(self) -> None:
        """Renew every ``keepalive_interval``, on the timer grid (the grid instant nearest
        the interval: renewals share their wake-ups with the gossip probes)."""
        while True:
            interval = self.spec.effective_timing.keepalive_interval
            start = self.clock.now()
            try:
                if self.lease is None:
                    await self._register()
                else:
                    sent = self.clock.now()  # the lease runs from when etcd got the renewal,
                    await self.store.keepalive(self.lease)  # which is not before we sent it
                    done = self.clock.now()
                    if done >= self._keep_deadline():  # renewed too late (a slow renewal during an
                        # etcd election, a stall): the lease guard may have stopped exclusive
                        # instances meanwhile (rule 1); that is the node's event (rule 7)
                        self._guard_lapse = done
                    self.renewed_at = sent
                    self._update_guard()
            except LeaseNotFound:
                self._hold_over()
                self.lease, self.registration = None, None
                self.controller.resign()
                self._dirty.set()  # the main loop self-fences now (rule 1), not at its next wake
                await self._event("lease", "node lease lost (expired): registering again")
            except StoreError as exc:
                self._decide(f"keepalive failed: {exc}")
                # again a tick from now, not an interval: the self-fence deadline runs
                await self._sleep_until(self.grid.near(start + self.grid.tick))
                continue
            await self._sleep_until(self.grid.near(max(start + interval, self.clock.now())))

    async def _beat_loop(self) -> None:
        """Beat the stall log every ``keepalive_interval``, at the grid instants the renewals
        wake for (no wake-up of its own; not inside the renewal loop, whose store calls may
        block for seconds without the agent being stalled): a gap between beats longer than
        that plus ``STALL_SLACK`` is a stall of the agent itself, and check failures during it
        are not judged (rule 7)."""
        while True:
            gap = self.stalls.beat(self.clock.now())
            if gap > self.stalls.threshold:
                log.warning(
                    "%s: the agent was stalled for %.2fs (frozen or starved)", self.node, gap
                )
                self._decide(f"the agent was stalled for {gap:.2f}s (frozen or starved)")
            period = self.spec.effective_timing.keepalive_interval
            await self._sleep_until(self.grid.near(self.clock.now() + period))

    async def _quorum_loop(self) -> None:
        """While renewals are late (``LATE`` renewal periods before the rule-1 deadline, or
        past it) and exclusive instances run here, run proof rounds that no store member has
        a leader: each one keeps them ``ttl - safety_margin`` past its start
        (:mod:`corral.core.quorum`). Nothing is started meanwhile (rule 1 still holds for
        starts). Every pass also hears the peers' words about the store and says this node's
        (its round's nonce; how long its member has been down, for the peers' rounds)."""
        timing = self.spec.effective_timing
        while True:
            self.voice.listen()
            late = self.keeper.due(
                self.clock.now(), self._deadline(), LATE * timing.keepalive_interval
            )
            if late and self.lease is not None and any(map(self._exclusive, self.services)):
                was = self.keeper.kept_since
                if await self.keeper.round(
                    self._deadline(), self.ttl - timing.safety_margin, timing.etcd_election
                ):
                    self._update_guard()
                    if was is None:
                        self._keep_began()
                verdict = self.keeper.last_verdict
                self._decide(f"store proof round: {verdict.reason if verdict else '?'}")
            else:
                self.voice.ask = ""  # no round of ours: the peers need not answer one
            self.voice.speak()
            lasted = self.keeper.ended(self.clock.now())
            if lasted is not None:
                await self._event("store", self._keep_summary(lasted))
            await self._sleep_until(
                self.grid.near(self.clock.now() + timing.keepalive_interval / 2)
            )

    def _keep_began(self) -> None:
        held = sorted(k for k in self.services if self._exclusive(k))
        verdict = self.keeper.last_verdict
        text = (
            f"the store has no leader ({verdict.reason if verdict else '?'}): keeping "
            f"{', '.join(held)} past the lease deadline, starting nothing"
        )
        log.warning("%s: %s", self.node, text)
        self._decide(text)

    def _keep_summary(self, lasted: float) -> str:
        how = "renewals resumed" if self.may_hold_exclusive() else "no proof any more"
        verdict = self.keeper.last_verdict
        why = f" ({verdict.reason})" if verdict is not None and not verdict.proven else ""
        return (
            f"kept exclusive instances {lasted:.1f}s past the lease deadline while the store "
            f"had no leader; ended: {how}{why}"
        )

    async def _sleep_until(self, when: float) -> None:
        await asyncio.sleep(max(0.0, when - self.clock.now()))

    async def _register(self) -> None:
        """Register under a new lease. Gossip starts (and gets a moment to join) first: a
        rebooted node refutes its old death before its registration can look unclean."""
        if self.gossip is not None and self.gossip.member is None:
            await self._start_gossip()
            if self.gossip.member is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.gossip.member.wait_joined(), JOIN_WAIT)
        asked = self.clock.now()
        lease = await self.store.grant(self.ttl)
        record = dump({"address": self.ctx.address, "pid": os.getpid(), "since": self.wall()})
        key = self.keys.node(self.node)
        old = await self.store.get(key)
        # Registered only once the record is written (a lost put leaves an orphan lease that
        # expires, not an agent renewing a lease that names no registration). When a live
        # registration is replaced in one step (an agent restarted within its lease), the node
        # was never offline for the controller: instances assigned to the old registration
        # that still run here may be kept (rule 2 moved nothing away meanwhile). After a
        # lapse (the old lease expired, or a fence) they may not: see _desired.
        if old is not None:
            swap = await self.store.txn(
                [Compare(key, "mod_revision", "==", old.mod_revision)],
                [Put(key, record, lease.id)],
            )
            revision = swap.revision if swap.succeeded else None
        if old is None or revision is None:
            revision = await self.store.put(key, record, lease=lease.id)
            self._continuous = set()
        else:
            chain = self._continuous if old.mod_revision == self.registration else set()
            self._continuous = chain | {old.mod_revision}
        self.lease, self.renewed_at, self.registration = lease.id, asked, revision
        self._registered_at = self.renewed_at
        self.status.forget()  # a new lease: every leased record is written again
        self.lb.republish()
        if self.gossip is not None:
            self.gossip.republish()
        await self._load_spec_from_store()
        await self._start_gossip()
        self._dirty.set()
        self._decide(f"registered under lease {lease.id:x} (ttl {lease.ttl}s)")

    async def _start_gossip(self) -> None:
        if self.gossip is None or self.gossip.member is not None:
            return
        try:
            started = await self.gossip.start()
        except (OSError, StoreError, ValueError) as exc:
            text = f"cannot start gossip (retrying): {exc}"
            if text != self._gossip_error:  # one event per distinct problem, not per retry
                self._gossip_error = text
                await self._event("gossip", text)
            return
        self._gossip_error = None
        if not started or self.gossip.member is None:
            return
        self.gossip.member.subscribe(lambda _change: self._dirty.set())
        self._decide(f"gossip member bound to port {self.spec.gossip.port}")

    async def _load_spec_from_store(self) -> None:
        kv = await self.store.get(self.keys.spec)
        if kv is None and self.spec_text is not None:
            await self.store.txn(
                [Compare.missing(self.keys.spec)], [Put(self.keys.spec, self.spec_text.encode())]
            )
            return
        if kv is not None and kv.value.decode(errors="replace") != self.spec_text:
            await self._adopt_spec(kv.value)

    async def _adopt_spec(self, raw: bytes) -> None:
        text = raw.decode(errors="replace")
        try:
            spec = load_spec_text(text, "store:spec")
        except SpecError as exc:
            await self._event(
                "spec",
                f"refused the spec in the store, keeping the running one: "
                f"{exc.issues[0]} ({len(exc.issues)} problem(s))",
            )
            return
        if spec.cluster != self.spec.cluster or self.node not in spec.nodes:
            await self._event(
                "spec",
                "refused the spec in the store: it is for another "
                "cluster or does not name this node",
            )
            return
        self.spec, self.spec_text = spec, text
        self._write_spec_copy()
        await self._event("spec", "running a new spec from the store")

    # --- watch ----------------------------------------------------------------------------------

    async def _watch_loop(self) -> None:
        while True:
            try:
                start = (await self.store.range(self.keys.spec)).revision + 1
                async for event in self.store.watch(self.keys.root.encode(), start):
                    if event.key == self.keys.spec and event.kind == "put":
                        await self._adopt_spec(event.value)
                    if event.key == self.keys.controller and event.kind == "delete":
                        self._last_campaign = -math.inf
                    elif event.key == self.keys.controller:  # made once per term: a creation
                        self.controller.noticed(event.key, event.revision)
                    if event.key.startswith(self._request_prefix) and event.kind == "put":
                        self._requests_pending = True
                    if not event.key.startswith(self.keys.event_prefix()):
                        self._dirty.set()
            except StoreError as exc:
                self._decide(f"watch lost: {exc}")
                self._requests_pending = True  # a request may have come while we were away
            self._dirty.set()  # the watch starts again at the current revision: look now
            await asyncio.sleep(0.5)

    # --- main loop ------------------------------------------------------------------------------

    async def _main_loop(self) -> None:
        """Sleeps until something changed or the next thing is due: the self-fence deadline
        (rule 1, exact, while something exclusive runs here), a driver poll (every
        ``STATUS_POLL``, on the timer grid), a round asked for by :meth:`_wake`, or the
        safety-net round (``ROUND_EVERY``). A round (controller step, assignments, reconcile,
        report) runs when something changed or one is due."""
        next_round = -math.inf
        while True:
            await self._wait_dirty(min(self._next_poll, self._fence_deadline(), next_round))
            await self._self_fence()
            await self._supervise_checks()
            if await self._poll_drivers():
                self._dirty.set()
            now = self.clock.now()
            due = now >= min(self._wake_at, next_round)
            if not self._dirty.is_set() and not due:
                continue
            changed = self._dirty.is_set()
            self._dirty.clear()
            next_round = self.grid.near(now + ROUND_EVERY)
            self._wake_at = math.inf
            try:
                await self._round(changed)
            except StoreError as exc:
                self._decide(f"store unavailable, keeping what runs: {exc}")
                self._wake(self.clock.now() + 1.0)  # try again soon, not in ROUND_EVERY

    async def _wait_dirty(self, until: float) -> None:
        """Wait until ``_dirty`` is set, a round is asked for, or ``until`` (clock time)."""
        delay = min(until, self._wake_at) - self.clock.now()
        if delay <= 0 or self._dirty.is_set():
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):  # a scope, not wait_for: no task per wait
                await self._dirty.wait()

    def _fence_deadline(self) -> float:
        """When rule 1 stops the exclusive instances here unless the lease is renewed first
        (``inf`` while none runs)."""
        if not any(self._exclusive(k) for k in self.services):
            return math.inf
        deadline = self._keep_deadline()
        now = self.clock.now()
        # past it (no lease, or a stop that failed): try again every tick, never spin
        return deadline if deadline > now else now + self.grid.tick

    async def _self_fence(self) -> None:
        if not self.may_hold_exclusive():
            self._hold_over()
        if self.may_keep_exclusive():
            return
        for key, svc in list(self.services.items()):
            res = self.spec.resources.get(svc.resource)
            if res is not None and res.exclusive:
                await self._stop(key, "self-fence: node lease not renewed in time (rule 1)")

    async def _round(self, changed: bool = True) -> None:  # noqa: C901, PLR0912
        if self.lease is not None:
            now = self.clock.now()
            if not self.controller.active:
                replaced = await self.controller.replace_dead()
                if replaced is not None:
                    self._decide(replaced)
                    self._last_campaign = -math.inf
            if not self.controller.active and now - self._last_campaign > 1.0:
                self._last_campaign = now
                await self.controller.campaign(self.lease)
            if self.controller.active:
                try:
                    self._decide(await self.controller.step())
                except (ValueError, TypeError, AttributeError, KeyError) as exc:
                    # a record of a shape the scheduler cannot read: say so, and let the
                    # local work below (reconcile, reports) go on
                    await self._event("controller", f"cannot plan: a malformed record? {exc!r}")
        me = self._me()
        roles = {k: svc.role for k, svc in self.services.items()}
        desired, frozen, stale = await read_desired(self.store, self.keys, self.spec, me, roles)
        for key in sorted(stale):
            self._decide(f"not running {key}: assigned to an earlier registration")
        self._adopted -= set(desired)  # assigned again: an ordinary service from now on
        resource_rank = resource_ranks(Context(self.spec, Snapshot()))
        keys = set(desired) | set(self.services)
        ranks = {k: resource_rank.get(split_key(k)[0], 0) for k in keys}
        running = {
            n: LocalInstance(role=s.role, health=s.verdict, failed=s.failed)
            for n, s in self.services.items()
        }
        exclusive = {k for k in keys if self._exclusive(k)}
        frozen = {k for k in keys if split_key(k)[0] in frozen}
        actions = reconcile(
            desired,
            running,
            may_hold_exclusive=self.may_hold_exclusive(),
            may_keep_exclusive=self.may_keep_exclusive(),
            exclusive=exclusive,
            frozen=frozen,
            rank=ranks,
        )
        for action in actions:
            if action.kind == "stop" and self._keep_adopted(action.resource, exclusive):
                continue
            await self._apply(action)
        if self._requests_pending:
            await self._requests(frozen)
            self._requests_pending = False  # only once every request was handled
        self._update_guard()
        await self.status.publish()
        if self.gossip is not None:
            if self.gossip.member is None and self.lease is not None:
                await self._start_gossip()
            await self.gossip.publish(self.lease)
        now = self.clock.now()
        if changed or now - self._last_network > NETWORK_EVERY:
            self._last_network = now
            await self._network()

    async def _network(self) -> None:
        """This node's HAProxy server states and DNS zone, from one read of the store."""
        hap = next((s for s in self.services.values() if self._kind(s.resource) == "haproxy"), None)
        dns_here = self.network.dns_names(self.spec, self.node)
        if not dns_here:
            await self.network.close_dns()
        if hap is None and not dns_here:
            return
        view = await self.lb.view(self.spec)
        lost = self.gossip.lost() if self.gossip is not None else set()
        if hap is not None and not hap.failed:
            from corral.drivers.haproxy import HaproxyService

            assert isinstance(hap.driver, HaproxyService)  # made by _driver for this kind
            try:
                self._decide(await self.lb.sync(self.spec, hap.driver, self.lease, lost, view))
            except DriverError as exc:
                await self._event("haproxy", f"load balancer not updated: {exc}", hap.resource)
        if dns_here:
            await self.network.serve_dns(self.spec, self.ctx, view.live, self._event)

    def _driver(self, name: str, res: Resource, item: str | None) -> Driver:
        if res.kind == "haproxy":
            self.lb.forget()  # a new HAProxy: apply configuration and states again
            return self.network.haproxy_driver(name, res, self.ctx, lambda: self.spec)
        return self.driver_factory(name, res, self.ctx, item)

    def _kind(self, resource: str) -> str:
        res = self.spec.resources.get(resource)
        return res.kind if res is not None else ""

    def _exclusive(self, key: str) -> bool:
        res = self.spec.resources.get(split_key(key)[0])
        return res is not None and res.exclusive

    def _hold_over(self) -> None:
        """The lease may have lapsed (its renewal deadline passed, or etcd said it is gone):
        the controller may take the node as gone and withdraw its assignments. Its running
        active-active services are then held like adopted ones (:meth:`_keep_adopted`) until
        the controller assigns them to the next registration. Stopping them would turn a lapse
        (a frozen or starved node, an etcd election) into an outage of every service of the
        node; an active-active instance has no exclusivity to keep (rules 1 and 2 are about
        exclusive instances, which :meth:`_self_fence` stops)."""
        self._adopted |= {k for k in self.services if not self._exclusive(k)}

    def _keep_adopted(self, name: str, exclusive: set[str]) -> bool:
        """An adopted or held-over (:meth:`_hold_over`) active-active service is not stopped
        for want of an assignment while the controller may not have seen this agent's current
        registration yet: no lease, a lease past its renewal deadline, or registered less than
        ``ADOPT_GRACE`` ago (a restart slower than the lease TTL makes the node look gone for
        a moment). Exclusive ones get no such grace: another node may hold them (rule 1)."""
        if name not in self._adopted or name in exclusive:
            return False
        self._wake(self._registered_at + ADOPT_GRACE)
        return not self.may_hold_exclusive() or self.clock.now() - self._registered_at < ADOPT_GRACE

    async def _poll_drivers(self) -> bool:
        """Ask every driver for its status (at most every ``STATUS_POLL``); True when a
        service newly turned out dead (the round must act now)."""
        now = self.clock.now()
        if now < self._next_poll:
            return False
        self._next_poll = self.grid.near(now + STATUS_POLL)
        died = False
        for svc in list(self.services.values()):
            try:
                status = await svc.driver.status()
            except DriverError as exc:
                status = None
                svc.detail = str(exc)
            down = status is None or status.state != "running"
            if down and self._exclusive(svc.name) and svc.started_at <= self._guard_lapse:
                # rule 7: the lease guard stopped it while the agent renewed too late (a
                # stall): the node's event, not the resource's failure; started again as
                # assigned, not counted
                self.services.pop(svc.name, None)
                await svc.stop_checks()
                await self._event("stop", f"{svc.name} was stopped by the lease guard (rule 1)")
                died = True
            elif down and not svc.failed:
                svc.failed, died = True, True
                svc.detail = status.detail if status else svc.detail
                await self._event(
                    "failed", f"{svc.name} is not running: {svc.detail}", svc.resource
                )
        return died

    # --- actions --------------------------------------------------------------------------------

    def _service(self, name: str, res: Resource, driver: Driver) -> LocalService:
        svc = LocalService(name, driver, list(res.health), stalls=self.stalls)
        svc.reset(self.clock.now())
        self._start_checks(svc)
        return svc

    def _start_checks(self, svc: LocalService) -> None:
        svc.start_checks(self.ctx, self.checker, self.clock, self._on_verdict, self.grid)
        if svc.task is not None:
            svc.task.add_done_callback(self._check_task_done)

    def _check_task_done(self, task: asyncio.Task[None]) -> None:
        """A loop that ended by itself wakes the main loop, which starts it again at once."""
        if not task.cancelled():
            self._dirty.set()

    async def _supervise_checks(self) -> None:
        """Start again the checks of every service whose checks do not run (their task ended
        by itself, or a failed stop kept the service): without them it would keep its last
        verdict forever. Each restart is an event."""
        for svc in list(self.services.values()):
            why = svc.checks_down()
            if why is None:
                continue
            log.error("%s: the checks of %s are down (%s); starting them", self.node, svc.name, why)
            self._start_checks(svc)
            await self._event(
                "health", f"the checks of {svc.name} were down ({why}); started again", svc.resource
            )

    async def _on_verdict(self, svc: LocalService) -> None:
        reason = f": {svc.detail}" if svc.detail and svc.verdict == "unhealthy" else ""
        with contextlib.suppress(StoreError):
            await self.status.publish()  # operators see the verdict before the agent acts on it
        await self._event("health", f"{svc.name} is {svc.verdict}{reason}", svc.resource)
        self._dirty.set()

    async def _apply(self, action: LocalAction) -> None:
        name = action.resource
        if action.kind == "stop":
            await self._stop(name, action.reason, planned=action.drain)
        elif action.kind == "start":
            await self._start(name, action.reason)
        elif action.kind == "restart":
            if not self._restart_due(name):
                return
            await self._count_failure(split_key(name)[0], action.reason)
            if await self._stop(name, f"restart: {action.reason}"):
                await self._start(name, f"restart: {action.reason}")
        elif action.kind in ("promote", "demote"):
            svc = self.services.get(name)
            if svc is None:
                return
            try:
                await (svc.driver.promote() if action.kind == "promote" else svc.driver.demote())
                svc.role = "promoted" if action.kind == "promote" else "started"
                await self._event(action.kind, f"{name}: {action.reason}", svc.resource)
            except DriverError as exc:
                await self._event("failed", f"{action.kind} {name} failed: {exc}", svc.resource)

    def _wake(self, at: float) -> None:
        """Run a round at ``at`` (monotonic) at the latest: for decisions that depend on time
        alone (a restart backoff, the adoption grace), which no watch event announces."""
        self._wake_at = min(self._wake_at, at)

    def _restart_due(self, name: str) -> bool:
        """True when ``name`` may restart now (:class:`RestartBackoff`); else a round is
        asked for when it may (no change will come to say the backoff is over)."""
        later = self._restarts.due(name, self.clock.now())
        if later is not None:
            self._wake(later)
        return later is None

    async def _start(self, key: str, reason: str) -> None:
        """Start one instance. An exclusive one only while the lease is fresh at this very
        moment (a round's earlier actions may have taken long), and listed for the lease guard
        before its start begins and until it is running (an agent killed meanwhile leaves
        nothing unguarded)."""
        name, item = split_key(key)
        res = self.spec.resources[name]
        if res.exclusive and not self.may_hold_exclusive():
            self._decide(f"not starting {key}: the node lease is not fresh (rule 1)")
            return
        self._starting.add(key)
        begun = self.clock.now()
        try:
            if res.exclusive:
                self._update_guard()
            driver = self._driver(name, res, item)
            if res.exclusive and not await self._claim(key, res, driver):
                return
            await driver.start()
        except NodeFault as exc:  # rule 7: the node's (or another node's) event, not counted
            self._wake(self.clock.now() + NODE_FAULT_RETRY)
            if self._node_faults.get(key) != str(exc):  # one event per distinct refusal
                self._node_faults[key] = str(exc)
                await self._event("waiting", f"not starting {key} yet (not counted): {exc}", name)
            return
        except DriverError as exc:
            if res.exclusive and (not self.may_hold_exclusive() or self._guard_lapse >= begun):
                # the rule-1 deadline passed during the start: the lease guard stopped it
                await self._event("stop", f"start of {key} cut short by rule 1 (not counted)")
                return
            await self._count_failure(name, f"start failed: {exc}")
            await self._event("failed", f"could not start {key}: {exc}", name)
            return
        finally:
            self._starting.discard(key)
            self._claiming.pop(key, None)
        self._node_faults.pop(key, None)
        self.services[key] = self._service(key, res, driver)
        await self._event("start", f"started {key}: {reason}", name)

    async def _claim(self, key: str, res: Resource, driver: Driver) -> bool:
        """Before an exclusive start (rule 1 across nodes): report the instance as starting
        here, then read its assignment again; True when it still names this registration.
        The controller sees the report before it could assign the instance elsewhere (its
        handoff waits for a reported holder), or its write of another assignment fails on
        the status record that changed (it compares the status records of the resource on
        every node it does not assign it to), or this read sees that other assignment. A
        round whose earlier actions took seconds never starts from a stale read."""
        name, item = split_key(key)
        placeholder = LocalService(key, driver, list(res.health), stalls=self.stalls)
        placeholder.reset(self.clock.now())
        placeholder.detail = "starting"
        self._claiming[key] = placeholder
        await self.status.publish()
        me = self._me()
        if await still_assigned(self.store, self.keys, name, item, me):
            return True
        self._claiming.pop(key, None)
        self._decide(f"not starting {key}: its assignment moved on meanwhile")
        await self.status.publish()
        return False

    async def _stop(self, name: str, reason: str, *, planned: bool = False) -> bool:
        """Stop one instance; True when it is stopped. A ``planned`` stop of a balanced,
        healthy service drains it first: its status says ``draining``, and the stop waits until
        every HAProxy has taken it out of rotation (at most ``DRAIN_TIMEOUT``) and in-flight
        requests had ``DRAIN_GRACE``. A stop that fails keeps the instance (failed, still
        reported, still guarded): it may run on, and the next round tries again."""
        svc = self.services.get(name)
        if svc is None:
            return True
        res = self.spec.resources.get(svc.resource)
        if planned and res is not None and res.balance is not None and svc.verdict == "healthy":
            await self._drain(svc)
        await svc.stop_checks()
        try:
            await svc.driver.stop()
        except DriverError as exc:
            svc.failed, svc.detail = True, f"stop failed: {exc}"
            await self._event("failed", f"stop of {name} failed: {exc}", svc.resource)
            return False
        self.services.pop(name, None)
        with contextlib.suppress(StoreError):
            await self._event("stop", f"stopped {name}: {reason}", svc.resource)
        return True

    async def _drain(self, svc: LocalService) -> None:
        svc.draining = True
        try:
            await self.status.publish()
            await self._network()  # this node's own HAProxy too, before waiting for all
            if await self.lb.wait_drained(svc.resource, self.node, DRAIN_TIMEOUT):
                await asyncio.sleep(DRAIN_GRACE)
                self._decide(f"drained {svc.name} from every load balancer")
            else:
                await self._event(
                    "drain",
                    f"{svc.name}: not every load balancer confirmed the drain within "
                    f"{DRAIN_TIMEOUT:g}s; stopping anyway",
                    svc.resource,
                )
        except StoreError as exc:
            self._decide(f"cannot drain {svc.name} (store: {exc}); stopping anyway")
        finally:
            svc.draining = False

    async def _requests(self, frozen: set[str]) -> None:
        """Operator requests for this node (``requests/<node>/<resource>``): a restart of a
        running instance is a drained stop (not counted as a failure); the next round starts
        it again through reconcile (lease, assignment and maintenance checked there). The
        request is deleted once the stop is reported (only that version of it: a newer request
        stays). An instance in maintenance here is not touched (rule 4), its request refused."""
        result = await self.store.range(self._request_prefix)
        for kv in result.kvs:
            name = kv.key.decode(errors="replace").rsplit("/", 1)[-1]
            value = load(kv.value)
            action = value.get("action") if isinstance(value, dict) else None
            if action != "restart":
                await self._event("request", f"ignored a malformed request for {name}", "")
            elif name in frozen:
                await self._event("request", f"not restarting {name}: in maintenance", name)
            elif name in self.services:
                if not await self._stop(name, "restart requested by an operator", planned=True):
                    continue  # kept: tried again at the next change
                await self.status.publish()
                self._dirty.set()
            await self.store.txn(
                [Compare(kv.key, "mod_revision", "==", kv.mod_revision)], [Delete(kv.key)]
            )

    async def _count_failure(self, name: str, reason: str) -> None:
        key = self.keys.failcount(self.node, name)
        with contextlib.suppress(StoreError):
            kv = await self.store.get(key)
            value = load(kv.value) if kv is not None else None
            count = int(value.get("count", 0)) if isinstance(value, dict) else 0
            await self.store.put(
                key, dump({"count": count + 1, "last": self.wall(), "reason": reason})
            )

    # --- guard -------------------------------------------------------------------------------

    def _write_spec_copy(self) -> None:
        if self._guard and self.spec_text is not None:
            self.ctx.state_dir.mkdir(parents=True, exist_ok=True)
            (self.ctx.state_dir / "spec.yaml").write_text(self.spec_text)

    def _update_guard(self) -> None:
        """Tell the guard until when exclusive services may run, and which run or are being
        started here (an agent killed during a start leaves nothing unguarded)."""
        if self._guard_files is None:
            return
        exclusive = sorted(k for k in {*self.services, *self._starting} if self._exclusive(k))
        self._guard_files.update(self._keep_deadline(), exclusive)

    # --- events ---------------------------------------------------------------------------------

    def _decide(self, decision: str) -> None:
        self.decisions = [*self.decisions[-99:], decision]
        log.debug("%s: %s", self.node, decision)

    async def _event(self, kind: str, reason: str, resource: str = "") -> None:
        self._decide(f"{kind}: {reason}")
        with contextlib.suppress(StoreError):
            await self.store.put(
                self.keys.event_key(time.time_ns(), self.node),
                Event(self.wall(), self.node, resource, kind, reason).record(),
            )
