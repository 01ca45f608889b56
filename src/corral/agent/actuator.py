"""Carrying out the agent core's effects on this node's services (shell).

:class:`Actuator` owns the local services (:class:`~corral.agent.instances.LocalService`) and
does what :class:`~corral.core.agent.core.AgentCore` decided: starts (an exclusive one claimed
first, see :meth:`Actuator._claim`), stops (drained first when the reason says so), restarts,
promotions, failure counts and events. It decides nothing: whether an exclusive start may
begin, whether a failed start counts, what a stopped service means, are asked of the core,
and its answers are carried out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from corral.agent.assigned import Registration, still_assigned
from corral.agent.events import EventLog
from corral.agent.galera import StoreGaleraLink
from corral.agent.guard import stopped_at
from corral.agent.instances import Checker, LocalService, split_key
from corral.agent.lb import LbDuty
from corral.agent.network import NetworkDuties
from corral.agent.publish import StatusPublisher
from corral.agent.rabbit import StoreRabbitLink
from corral.agent.snapshot import ActionTimes
from corral.clocks import sleep_until
from corral.core.agent.core import AgentCore
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
from corral.core.clock import Clock, Grid
from corral.core.stall import StallLog
from corral.drivers.base import Driver, DriverError, NodeContext, NodeFault
from corral.drivers.galera_member import GaleraMember, GaleraServerFactory, default_galera_server
from corral.drivers.rabbitmq_member import RabbitFactory, RabbitMember, rabbit_member
from corral.records import FailCountRecord, RequestRecord
from corral.spec import Resource, Spec
from corral.store import Compare, Delete, Keys, Put, Store, StoreError

log = logging.getLogger(__name__)
DriverFactory = Callable[[str, Resource, NodeContext, str | None], Driver]
DRAIN_TIMEOUT = 3.0  # seconds a planned stop waits for every HAProxy to drain the backend
DRAIN_GRACE = 0.3  # seconds in-flight requests get after the last HAProxy drained it
STALL_TOLD = 0.5  # seconds: a stall beat this late is told in the decisions and the log
COUNT_TRIES = 5  # compare-and-swap tries to add a failure (the controller may rewrite it)


class Actuator:
    def __init__(
        self,
        core: AgentCore,
        store: Store,
        keys: Keys,
        ctx: NodeContext,
        *,
        clock: Clock,
        wall: Callable[[], float],
        events: EventLog,
        drivers: DriverFactory,
        checker: Checker,
        lb: LbDuty,
        network: NetworkDuties,
        lease: Callable[[], int | None],
        me: Callable[[], Registration],
    ) -> None:
        """``lease``/``me``: the current lease and registration (read at each use)."""
        self.core, self.store, self.keys, self.ctx = core, store, keys, ctx
        self.clock, self.wall, self.events = clock, wall, events
        self.driver_factory, self.checker = drivers, checker
        self.lb, self.network, self._me, self._lease = lb, network, me, lease
        # how a galera member's server is made (None: a galera resource cannot run here)
        self.galera_server: GaleraServerFactory | None = default_galera_server
        self.rabbit_member: RabbitFactory = rabbit_member  # how a rabbitmq member is made
        self.services: dict[str, LocalService] = {}
        self.starting: set[str] = set()  # instances whose start is under way
        self.claiming: dict[str, LocalService] = {}  # exclusive starts reported as starting
        self.status = StatusPublisher(
            store, keys, ctx.name, lambda: [*self.services.values(), *self.claiming.values()], lease
        )
        self.stalls = StallLog()  # the agent's own lateness: beats and check watches
        self.times = ActionTimes()  # how long actions took (metrics, :mod:`.snapshot`)
        self.grid: Grid | None = None
        self.on_change: Callable[[], None] = lambda: None  # wake the main loop
        self.on_guard: Callable[[], None] = lambda: None  # tell the lease guard what runs
        self.sync_network: Callable[[], Awaitable[None]] = _nothing

    @property
    def spec(self) -> Spec:
        return self.core.spec

    async def carry_out(self, effects: list[Effect]) -> None:
        """Carry out ``effects`` in order (a restart starts again only if its stop worked);
        the time each action took goes to ``times`` (metrics)."""
        for effect in effects:
            started = self.clock.now()
            await self._carry_out(effect)
            if isinstance(effect, Stop | Start | Restart | Promote | Demote):
                self.times.observe(type(effect).__name__.lower(), self.clock.now() - started)

    async def _carry_out(self, effect: Effect) -> None:
        if isinstance(effect, Stop):
            await self.stop(effect.key, effect.why.text, drain=effect.why.drain)
        elif isinstance(effect, Start):
            await self.start(effect.key, effect.why.text)
        elif isinstance(effect, Restart):
            if await self.stop(effect.key, f"restart: {effect.why.text}"):
                await self.start(effect.key, f"restart: {effect.why.text}")
        elif isinstance(effect, Promote | Demote):
            await self._role(effect)
        elif isinstance(effect, CountFailure):
            await self.count_failure(effect.resource, effect.reason)
        elif isinstance(effect, Event):
            await self.events.event(effect.kind, effect.text, effect.resource)
        elif isinstance(effect, Note):
            self.events.decide(effect.text)

    async def _role(self, effect: Promote | Demote) -> None:
        svc = self.services.get(effect.key)
        if svc is None:
            return
        kind = "promote" if isinstance(effect, Promote) else "demote"
        try:
            await (svc.driver.promote() if kind == "promote" else svc.driver.demote())
            svc.role = "promoted" if kind == "promote" else "started"
            await self.events.event(kind, f"{effect.key}: {effect.why.text}", svc.resource)
        except DriverError as exc:
            await self.events.event("failed", f"{kind} {effect.key} failed: {exc}", svc.resource)

    # --- services -----------------------------------------------------------------------

    def driver(self, name: str, res: Resource, item: str | None) -> Driver:
        if res.kind == "haproxy":
            self.lb.forget()  # a new HAProxy: apply configuration and states again
            return self.network.haproxy_driver(name, res, self.ctx, lambda: self.spec)
        if res.kind == "galera" and self.galera_server is not None:
            link = StoreGaleraLink(self.store, self.keys, name, self._me, self._lease, self.wall)
            return GaleraMember(name, self.galera_server(name, res, self.ctx, self.spec), link)
        if res.kind == "rabbitmq":
            rlink = StoreRabbitLink(self.store, self.keys, name, self._me, self._lease, self.wall)
            return self.rabbit_member(name, res, self.ctx, self.spec, rlink)
        return self.driver_factory(name, res, self.ctx, item)

    def service(self, name: str, res: Resource, driver: Driver) -> LocalService:
        svc = LocalService(
            name, driver, list(res.health), stalls=self.stalls, on_event=self.on_check_event
        )
        svc.reset(self.clock.now())
        self.start_checks(svc)
        return svc

    def start_checks(self, svc: LocalService) -> None:
        svc.start_checks(self.ctx, self.checker, self.clock, self.on_verdict, self.grid)
        if svc.task is not None:
            svc.task.add_done_callback(self._check_task_done)

    def _check_task_done(self, task: asyncio.Task[None]) -> None:
        """A loop that ended by itself wakes the main loop, which starts it again at once."""
        if not task.cancelled():
            self.on_change()

    async def on_verdict(self, svc: LocalService) -> None:
        reason = f": {svc.detail}" if svc.detail and svc.verdict == "unhealthy" else ""
        with contextlib.suppress(StoreError):
            await self.status.publish()  # operators see the verdict before the agent acts on it
        await self.events.event("health", f"{svc.name} is {svc.verdict}{reason}", svc.resource)
        self.on_change()

    async def on_check_event(self, svc: LocalService, text: str) -> None:
        """What the health core tells about a result (a timeout while the agent was late)."""
        await self.events.event("health", f"{svc.name}: {text}", svc.resource)

    async def adopt(self, candidates: dict[str, tuple[str, str | None]]) -> None:
        """Adopt the ``candidates`` (instance key -> (resource, item)) already running here,
        left by a previous agent: taken over, not restarted (the core holds them until the
        controller assigns them, see :meth:`~corral.core.agent.core.AgentCore.round`)."""
        for key, (name, item) in candidates.items():
            res = self.spec.resources[name]
            try:
                driver = self.driver(name, res, item)
                if await driver.adopt():
                    self.services[key] = self.service(key, res, driver)
                    self.core.adopted.add(key)
                    self.events.decide(f"adopted {key}: already running")
            except DriverError as exc:
                self.events.decide(f"cannot inspect {key}: {exc}")

    async def supervise_checks(self) -> None:
        """Start again the checks of every service whose checks do not run (their task ended
        by itself, or a failed stop kept the service): without them it would keep its last
        verdict forever. Each restart is an event."""
        for svc in list(self.services.values()):
            why = svc.checks_down()
            if why is None:
                continue
            log.error(
                "%s: the checks of %s are down (%s); starting them", self.ctx.name, svc.name, why
            )
            self.start_checks(svc)
            await self.events.event(
                "health", f"the checks of {svc.name} were down ({why}); started again", svc.resource
            )

    async def poll(self) -> bool:
        """Ask every driver for its status; True when a service newly turned out dead (the
        round must act now) or a Galera member's readiness changed (to be published). One the
        lease guard stopped is dropped, as the core says (rule 7:
        started again as assigned, not counted); another is marked failed (restarted and
        counted by the next round)."""
        died = False
        for svc in list(self.services.values()):
            try:
                status = await svc.driver.status()
            except Exception as exc:  # a driver's surprise (its store link away) is a status
                status, svc.detail = None, str(exc)
            running = status is not None and status.state == "running"
            if self.core.member_joined(svc.name, running and status is not None and status.joined):
                died = True  # rule 1g: the guard's listing follows at the round
            if status is not None and running:
                member = isinstance(svc.driver, GaleraMember | RabbitMember)
                if member and svc.detail != status.detail:
                    # synced and Primary or not: the controller's writer choice reads it
                    svc.detail, died = status.detail, True
                continue
            exclusive = self.core.exclusive(svc.name)
            by_guard = stopped_at(self.ctx.state_dir, svc.name) if exclusive else None
            if self.core.stopped_by_guard(svc.name, svc.started_at, by_guard):
                self.services.pop(svc.name, None)
                await svc.stop_checks()
                text = f"{svc.name} was stopped by the lease guard (rule 1)"
                await self.events.event("stop", text)
                died = True
            elif not svc.failed:
                svc.failed, died = True, True
                svc.detail = status.detail if status else svc.detail
                text = f"{svc.name} is not running: {svc.detail}"
                await self.events.event("failed", text, svc.resource)
        return died

    async def requests(self, prefix: bytes, frozen: set[str]) -> bool:
        """Operator requests under ``prefix`` (``requests/<node>/``), as the core judges them
        (:meth:`~corral.core.agent.core.AgentCore.request`). Each is deleted once done (only
        that version of it: a newer request stays); True when a service was stopped."""
        stopped = False
        for request in await read_requests(self.store, prefix):
            plan = self.core.request(request.name, request.valid, frozen, set(self.services))
            if plan.stop is not None:
                if not await self.stop(plan.stop.key, plan.stop.why.text, drain=True):
                    continue  # kept: tried again at the next change
                await self.status.publish()
                stopped = True
            if plan.event is not None:
                await self.carry_out([plan.event])
            await delete_request(self.store, request)
        return stopped

    async def beat_loop(self, grid: Grid) -> None:
        """Beat the stall log every ``keepalive_interval``, at the grid instants the renewals
        wake for (not inside the renewal loop, whose store calls may block for seconds without
        the agent being late): how late each beat woke for its instant is the agent's own lag
        (with the ticks of the check watches, what excuses a timeout: rule 7); a beat later
        than ``STALL_TOLD`` is told."""
        due = self.clock.now()
        while True:
            late = self.stalls.late(due, self.clock.now())
            if late > STALL_TOLD:
                text = f"the agent was {late:.2f}s late (frozen or starved)"
                log.warning("%s: %s", self.ctx.name, text)
                self.events.decide(text)
            period = self.spec.effective_timing.keepalive_interval
            due = grid.near(self.clock.now() + period)
            await sleep_until(self.clock, due)

    # --- start ----------------------------------------------------------------------------

    async def start(self, key: str, reason: str) -> None:
        """Start one instance, if the core says it may at this very moment; an exclusive one
        is listed for the lease guard before its start begins and until it is running (an
        agent killed meanwhile leaves nothing unguarded)."""
        refused = self.core.may_start(key, self.clock.now())
        if refused is not None:
            self.events.decide(refused.text)
            return
        name, item = split_key(key)
        res = self.spec.resources[name]
        self.starting.add(key)
        begun = self.clock.now()
        try:
            if res.exclusive:
                self.on_guard()
            driver = self.driver(name, res, item)
            if res.exclusive and not await self._claim(key, res, driver):
                return
            await driver.start()
        except NodeFault as exc:  # rule 7: the node's (or another node's) event
            await self.carry_out(self.core.start_refused(key, str(exc), self.clock.now()))
            return
        except DriverError as exc:
            await self.carry_out(self.core.start_failed(key, str(exc), begun, self.clock.now()))
            return
        finally:
            self.starting.discard(key)
            self.claiming.pop(key, None)
        self.core.started(key)
        self.services[key] = self.service(key, res, driver)
        await self.events.event("start", f"started {key}: {reason}", name)

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
        self.claiming[key] = placeholder
        await self.status.publish()
        if await still_assigned(self.store, self.keys, name, item, self._me()):
            return True
        self.claiming.pop(key, None)
        self.events.decide(f"not starting {key}: its assignment moved on meanwhile")
        await self.status.publish()
        return False

    # --- stop -----------------------------------------------------------------------------

    async def stop(self, name: str, reason: str, *, drain: bool = False) -> bool:
        """Stop one instance; True when it is stopped. With ``drain``, a balanced, healthy
        service is drained first: its status says ``draining``, and the stop waits until
        every HAProxy took it out of rotation (at most ``DRAIN_TIMEOUT``) and in-flight
        requests had ``DRAIN_GRACE``. A stop that fails keeps the instance (failed, still
        reported, still guarded): it may run on, and the next round tries again."""
        svc = self.services.get(name)
        if svc is None:
            return True
        res = self.spec.resources.get(svc.resource)
        if drain and res is not None and res.balance is not None and svc.verdict == "healthy":
            await self._drain(svc)
        await svc.stop_checks()
        try:
            await svc.driver.stop()
        except Exception as exc:  # any driver surprise: a failed stop, never a dead loop
            # (the self-fence's other stops in the same batch must still run: rule 1)
            svc.failed, svc.detail = True, f"stop failed: {exc}"
            await self.events.event("failed", f"stop of {name} failed: {exc}", svc.resource)
            return False
        self.services.pop(name, None)
        await self.events.event("stop", f"stopped {name}: {reason}", svc.resource)
        return True

    async def stop_all(self) -> None:
        """Stop every local service, drained (``corral agent --stop-on-exit``, tests)."""
        for name in list(self.services):
            await self.stop(name, Why.SHUTDOWN.text, drain=Why.SHUTDOWN.drain)

    async def _drain(self, svc: LocalService) -> None:
        svc.draining = True
        try:
            await self.status.publish()
            await self.sync_network()  # this node's own HAProxy too, before waiting for all
            if await self.lb.wait_drained(svc.resource, self.ctx.name, DRAIN_TIMEOUT):
                await asyncio.sleep(DRAIN_GRACE)
                self.events.decide(f"drained {svc.name} from every load balancer")
            else:
                await self.events.event(
                    "drain",
                    f"{svc.name}: not every load balancer confirmed the drain within "
                    f"{DRAIN_TIMEOUT:g}s; stopping anyway",
                    svc.resource,
                )
        except StoreError as exc:
            self.events.decide(f"cannot drain {svc.name} (store: {exc}); stopping anyway")
        finally:
            svc.draining = False

    async def count_failure(self, name: str, reason: str) -> None:
        key = self.keys.failcount(self.ctx.name, name)
        with contextlib.suppress(StoreError):
            if not await add_failure(self.store, key, self.wall(), reason):
                log.warning("%s: failure of %s lost: its record kept changing", self.ctx.name, name)


async def add_failure(store: Store, key: bytes, wall: float, reason: str) -> bool:
    """Add one failure at ``wall`` to the failure record at ``key``, compared with the record
    as read: the controller rewrites these records too (it moves systemic failures out of the
    count), and neither may undo the other. Tried again on a race, ``COUNT_TRIES`` times;
    False when every try lost one. Store errors are the caller's."""
    for _ in range(COUNT_TRIES):
        kv = await store.get(key)
        stored = FailCountRecord.parse_kv(kv) if kv is not None else None
        revision = kv.mod_revision if kv is not None else 0
        record = (stored or FailCountRecord()).increment(wall, reason)
        guard = Compare.unchanged_since(key, revision)
        if (await store.txn([guard], [Put(key, record.dump())])).succeeded:
            return True
    return False


@dataclass(frozen=True)
class Request:
    """One operator request as read (``valid``: it parsed as a restart request)."""

    key: bytes
    revision: int
    name: str
    valid: bool


async def read_requests(store: Store, prefix: bytes) -> list[Request]:
    """The requests under ``prefix`` (``requests/<node>/``)."""
    out = []
    for kv in (await store.range(prefix)).kvs:
        name = kv.key.decode(errors="replace").rsplit("/", 1)[-1]
        record = RequestRecord.parse_kv(kv)
        out.append(Request(kv.key, kv.mod_revision, name, record is not None and record.restart))
    return out


async def delete_request(store: Store, request: Request) -> None:
    """Delete that version of the request (a newer one stays)."""
    await store.txn(
        [Compare(request.key, "mod_revision", "==", request.revision)], [Delete(request.key)]
    )


async def _nothing() -> None:
    return None
