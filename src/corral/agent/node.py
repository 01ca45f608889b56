"""The node agent (asyncio shell): it feeds the agent core and carries out its effects.

Contract (``docs/safety-rules.md``):
- The node is registered under a lease (``nodes/<node>``) renewed every ``keepalive_interval``
  (:mod:`.registrar`).
- Rule 1: exclusive instances run only while the lease is fresh: when ``lease_ttl -
  safety_margin`` passes without a successful renewal, the agent stops them by itself, without
  needing the store, and starts none until it holds a lease again. The deadlines and the stops
  are decided by :class:`~corral.core.agent.core.AgentCore`; this shell wakes for them.
- One agent is the controller (:mod:`corral.agent.controller`); every agent reconciles its node
  toward the assignments (the core's rounds), restarts failed or unhealthy services in place
  (with backoff), counts failures in ``failcounts/`` and reports what runs in
  ``status/<node>/<resource>`` under its lease (:mod:`.actuator`).
- At start it adopts services already running (left by a previous agent) instead of restarting
  them. An agent stopped with a lease hands it to the lease guard, and the next one takes it
  back before it adopts anything (:mod:`.handover`): a restart of corral moves nothing. A
  corrupt record, a dead store or a failing driver is logged as an event and retried; it never
  stops the agent.
- Spec changes come through the store's ``spec`` key; a spec that does not validate is refused
  with an event and the running spec is kept.

The shell decides nothing (``tests/agent/test_decides_nothing.py``): it reads only the
injected clocks, and what the store's records say is parsed by the records module and judged
by the core.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from corral.agent.actuator import Actuator, DriverFactory
from corral.agent.alerts import AlertDuty
from corral.agent.assigned import Registration, local_instances, read_desired
from corral.agent.controller import Controller
from corral.agent.duty import ControllerDuty
from corral.agent.events import EventLog
from corral.agent.guard import GuardWriter
from corral.agent.inputlog import InputLog
from corral.agent.instances import Checker, LocalService
from corral.agent.lb import LbDuty
from corral.agent.lock import AgentLock
from corral.agent.membership import AgentGossip
from corral.agent.network import NetworkDuties
from corral.agent.quorum import QuorumKeeper, QuorumProbe, StoreVoice
from corral.agent.registrar import Registrar
from corral.agent.snapshot import Publishes, publish_turn
from corral.agent.succession import Succession
from corral.agent.view import StoreView
from corral.agent.watch import WatchFeed
from corral.aio import forever
from corral.clocks import MonotonicClock, sleep_until
from corral.core.agent.core import AgentCore
from corral.core.clock import Clock, Grid, wall_grid
from corral.core.reconcile import LocalInstance
from corral.drivers.base import NodeContext
from corral.spec import Spec
from corral.store import Keys, Store, StoreError

__all__ = ["Agent", "DriverFactory"]
log = logging.getLogger(__name__)
STATUS_POLL = 1.0  # seconds between driver status polls (a dead service: a round at once)
ROUND_EVERY = 5.0  # seconds between full rounds when nothing changed: a safety net, since
# every change the agent must act on wakes it (watch, gossip, verdicts, driver polls)
LATE = 2.5  # renewal periods before the rule-1 deadline at which proof rounds begin
NETWORK_EVERY = 5.0  # seconds between load-balancer/DNS refreshes when nothing changed
TICK = 0.1  # seconds between the instants of the agent's timer grid (at most; see timer_grid)


def timer_grid(spec: Spec, clock: Clock, wall: Callable[[], float]) -> Grid:
    """The grid every periodic timer of an agent waits for (lease renewals, driver polls,
    health checks, rounds; its gossip member probes on whole multiples of it): whole
    multiples of ``TICK`` (or of the profile's probe interval if shorter) of the wall clock,
    so one wake-up serves all the timers due then, on every node whose clock agrees."""
    tick = min(TICK, spec.effective_gossip.probe_interval)
    return wall_grid(clock, tick, wall())


class Agent(Publishes):
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
        handover: float = 0.0,
    ) -> None:
        """``guard``: run the lease guard process (:mod:`corral.agent.guard`); it needs the
        real monotonic clock, since the guard compares deadlines with CLOCK_MONOTONIC.
        ``lock``: the state dir's agent lock, when the caller took it already (the CLI, before
        it starts the embedded store member); else :meth:`run` takes it. ``members``: the
        embedded store's member name -> client URL, for the proof rounds that keep exclusive
        instances while no member has a leader (:mod:`corral.agent.quorum`); None: never.
        ``member_down_since``: the supervisor's word on this node's member (it states, over
        gossip, how long the member has been down, for the peers' proof rounds).
        ``handover``: seconds the guard keeps the lease for the next agent when this one stops
        with it (:mod:`.handover`; needs ``guard`` and a store with etcd endpoints; 0: none)."""
        if node not in spec.nodes:
            raise ValueError(f"node {node!r} is not in the spec (known: {', '.join(spec.nodes)})")
        self.node, self.store, self.keys = node, store, Keys(spec.cluster)
        self.core = AgentCore(spec, node)
        self.clock, self.wall = clock or MonotonicClock(), wall
        self.grid = timer_grid(spec, self.clock, wall)
        n = spec.nodes[node]
        self.ctx = NodeContext(node, str(n.address), dict(n.attrs), state_dir)
        self.events = EventLog(store, self.keys, node, wall)
        self.gossip = AgentGossip(spec, node, store, self.keys, self.clock) if gossip else None
        self.view = StoreView()  # the cluster prefix as the watch saw it last
        self.controller = self._controller()
        self.duty = ControllerDuty(self.controller, self.clock, self.events)
        self.lb, self.network = LbDuty(store, self.keys, node, self.clock), NetworkDuties(state_dir)
        self.act = self._actuator(driver_factory, checker)
        self.status = self.act.status
        self.registrar = self._registrar(spec_text, guard)
        self._guard, self._lock, self._dirty = guard, lock, asyncio.Event()
        self.succession = Succession(state_dir, node, handover, self.events)
        self._guard_files = GuardWriter(state_dir, node) if guard else None
        self._request_prefix = self.keys.prefix("requests") + f"{node}/".encode()
        self._next_poll = self._last_network = -math.inf
        adopt_spec, prefix = self.registrar.adopt_spec, self._request_prefix
        self.watch = WatchFeed(store, self.keys, prefix, self.events, adopt_spec, self.view)
        self.watch.on_change, self.watch.on_controller = self._dirty_set, self.duty.key_changed
        if self.gossip is not None:  # the member follows the keyring (a key rotation)
            self.watch.on_keyring = self.gossip.follow
        probe = QuorumProbe(members, self.clock, getattr(store, "tls", None)) if members else None
        self.voice = StoreVoice(node, self.gossip, member_down_since, self.clock)
        self.keeper = QuorumKeeper(probe, self.clock, self.voice)
        self.alerts = AlertDuty.of(self)  # after the watch: it hooks the watch's events

    def _controller(self) -> Controller:
        deaths = self.gossip.deaths if self.gossip is not None else dict
        inputs = InputLog(self.ctx.state_dir / "controller-inputs", self.node)
        return Controller(
            self.store, self.keys, self.node, lambda: self.spec, self.wall,
            deaths=deaths, inputs=inputs, clock=self.clock, view=self.view,
        )  # fmt: skip

    def _registrar(self, spec_text: str | None, guard: bool) -> Registrar:
        copy = self.ctx.state_dir / "spec.yaml" if guard else None
        registrar = Registrar(
            self.core, self.store, self.keys, address=self.ctx.address, clock=self.clock,
            wall=self.wall, events=self.events, gossip=self.gossip, status=self.status,
            lb=self.lb, spec_text=spec_text, spec_copy=copy,
        )  # fmt: skip
        registrar.on_change, registrar.on_renewed = self._dirty_set, self._update_guard
        return registrar

    def _actuator(self, drivers: DriverFactory, checker: Checker) -> Actuator:
        act = Actuator(
            self.core, self.store, self.keys, self.ctx, clock=self.clock, wall=self.wall,
            events=self.events, drivers=drivers, checker=checker, lb=self.lb,
            network=self.network, lease=lambda: self.lease, me=self._me,
        )  # fmt: skip
        act.grid = self.grid
        act.on_change, act.on_guard = self._dirty_set, self._update_guard
        act.sync_network = self._network
        return act

    # --- what tests, the CLI and the lab read ---------------------------------------------------

    @property
    def spec(self) -> Spec:
        return self.core.spec

    @property
    def services(self) -> dict[str, LocalService]:
        return self.act.services

    @property
    def decisions(self) -> list[str]:
        return self.events.decisions

    @property
    def lease(self) -> int | None:
        return self.core.lease.lease

    @lease.setter
    def lease(self, lease: int | None) -> None:
        self.core.lease.lease = lease

    @property
    def registration(self) -> int | None:
        return self.core.lease.registration

    def may_hold_exclusive(self) -> bool:
        """Rule 1: the condition to start or promote an exclusive instance."""
        return self.core.lease.may_hold(self.clock.now())

    def may_keep_exclusive(self) -> bool:
        """The condition to keep running exclusive instances (:mod:`corral.core.quorum`)."""
        return self.core.lease.may_keep(self.clock.now(), self._keep_deadline())

    def _keep_deadline(self) -> float:
        return self.keeper.deadline(self.core.lease.deadline())

    def _me(self) -> Registration:
        """This node's registration as assignments are read against (:mod:`.assigned`)."""
        lease = self.core.lease
        return Registration(self.node, lease.registration, frozenset(lease.continuous))

    def _dirty_set(self) -> None:
        self._dirty.set()

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
            self.registrar.write_spec_copy()
            self.succession.start_guard()
            await self.succession.take(self.registrar, self._update_guard)
        await self.act.adopt(local_instances(self.spec, self.node))
        self.succession.inherited = frozenset()  # adopted: listed as services from now on
        loops = [self._keepalive_loop, self._watch_loop, self._main_loop, self._beat_loop]
        tasks = [
            asyncio.create_task(forever(loop, self.events.decide))
            for loop in [*loops, self._quorum_loop, self.alerts.run]
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            interval = self.spec.effective_timing.keepalive_interval
            files, now = self._guard_files, self.clock.now()
            self.succession.give(self.store, self.core.lease, files, interval, now)
            for svc in list(self.services.values()):  # the actuator may add one meanwhile
                await svc.stop_checks()
            if self.gossip is not None:  # leave: peers see a graceful stop, not a death
                with contextlib.suppress(Exception):
                    await self.gossip.stop()
            await self.network.close_dns()
            await self.keeper.close()
            if self._guard_files is not None:
                self._guard_files.close()

    async def stop_services(self) -> None:
        """Stop every local service (``corral agent --stop-on-exit``, tests)."""
        await self.act.stop_all()

    async def _sleep_until(self, when: float) -> None:
        await sleep_until(self.clock, when)

    # --- loops ----------------------------------------------------------------------------------

    async def _keepalive_loop(self) -> None:
        await self.registrar.keepalive_loop(self.grid, self._keep_deadline, self._lease_lost)

    async def _lease_lost(self) -> None:
        self.controller.resign()
        self._dirty.set()  # the main loop self-fences now (rule 1), not at its next wake
        await self.act.carry_out([self.core.lease_lost(self.services)])

    async def _quorum_loop(self) -> None:
        """Proof rounds while renewals are late (:meth:`QuorumKeeper.step`), every half
        renewal period."""
        while True:
            timing = self.spec.effective_timing
            late_after = LATE * timing.keepalive_interval
            kept, effects = await self.keeper.step(
                self.core, list(self.services), late_after, timing.etcd_election
            )
            if kept:
                self._update_guard()
            await self.act.carry_out(effects)
            await self._sleep_until(
                self.grid.near(self.clock.now() + timing.keepalive_interval / 2)
            )

    async def _watch_loop(self) -> None:
        await self.watch.run()

    async def _beat_loop(self) -> None:
        await self.act.beat_loop(self.grid)

    # --- main loop ------------------------------------------------------------------------------

    async def _main_loop(self) -> None:
        """Sleeps until something changed or the next thing is due: the self-fence deadline
        (rule 1, exact, while something exclusive runs here), a driver poll (every
        ``STATUS_POLL``, on the timer grid), a round the core asked for, or the safety-net
        round (``ROUND_EVERY``). A round (controller step, assignments, reconcile, report)
        runs when something changed or one is due."""
        next_round = -math.inf
        while True:
            publish_turn(self, STATUS_POLL)  # the stall hook, a snapshot for the API (.snapshot)
            fence = self.core.fence_deadline(
                self.clock.now(), self.services, self._keep_deadline(), self.grid.tick
            )
            await self._wait_dirty(min(self._next_poll, fence, next_round, self.core.wake_at))
            stops = self.core.self_fence(self.clock.now(), self.services, self._keep_deadline())
            await self.act.carry_out(list(stops))
            await self.act.supervise_checks()
            now = self.clock.now()
            if self.watch.take_fenced() or now >= self._next_poll:  # a fence: now (rule 2)
                self._next_poll = self.grid.near(now + STATUS_POLL)
                await self.succession.keep_guard()
                if await self.act.poll():
                    self._dirty.set()
            now = self.clock.now()
            if not self._dirty.is_set() and now < min(self.core.wake_at, next_round):
                continue
            changed = self._dirty.is_set()
            self._dirty.clear()
            next_round = self.grid.near(now + ROUND_EVERY)
            self.core.take_wake()
            try:
                await self._round(changed)
                self._store_error = ""
            except StoreError as exc:
                self._store_error = str(exc)
                self.events.decide(f"store unavailable, keeping what runs: {exc}")
                self.core.wake(self.clock.now() + 1.0)  # try again soon, not in ROUND_EVERY

    async def _wait_dirty(self, until: float) -> None:
        """Wait until ``_dirty`` is set or ``until`` (clock time)."""
        delay = until - self.clock.now()
        if delay <= 0 or self._dirty.is_set():
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):  # a scope, not wait_for: no task per wait
                await self._dirty.wait()

    async def _round(self, changed: bool = True) -> None:
        if self.lease is not None:
            await self.duty.run(self.lease)
        roles = {k: svc.role for k, svc in self.services.items()}
        desired, frozen, stale = await read_desired(
            self.store, self.keys, self.spec, self._me(), roles, self.core.joined
        )
        self._frozen = frozenset(frozen)
        running = {
            n: LocalInstance(role=s.role, health=s.verdict, failed=s.failed)
            for n, s in self.services.items()
        }
        now = self.clock.now()
        effects = self.core.round(now, desired, frozen, running, self._keep_deadline(), stale)
        await self.act.carry_out(effects)
        if self.watch.requests_pending:
            if await self.act.requests(self._request_prefix, frozen):
                self._dirty.set()  # a restart: the next round starts it again
            self.watch.requests_pending = False  # only once every request was handled
        self._update_guard()
        await self.status.publish()
        if self.gossip is not None:
            if self.gossip.member is None and self.lease is not None:
                await self.registrar.start_gossip()
            await self.gossip.publish(self.lease)
        now = self.clock.now()
        if changed or now - self._last_network > NETWORK_EVERY:
            self._last_network = now
            await self._network()

    async def _network(self) -> None:
        lost = self.gossip.lost() if self.gossip is not None else set()
        services = self.services.values()
        await self.network.sync(
            self.spec, self.ctx, services, self.lb, self.lease, lost, self.events
        )

    def _update_guard(self) -> None:
        """Tell the guard until when exclusive services may run, and which run or are being
        started here (an agent killed during a start leaves nothing unguarded)."""
        if self._guard_files is None:
            return
        keys = {*self.services, *self.act.starting, *self.succession.inherited}
        self._guard_files.update(self._keep_deadline(), sorted(filter(self.core.guarded, keys)))
