"""One local resource instance: its driver, its health checks and their verdict (shell).

The agent owns one :class:`LocalService` per resource running (or starting) on this node. A
check loop per service starts each check every ``interval`` on a fixed schedule (a hung check
fails at its timeout; runs overlap while a target hangs), feeds the pure
:class:`~corral.core.health.InstanceHealth`, and tells the agent about every change of verdict
through ``on_change``.

Each run is watched (:class:`LagWatch`): while it runs, a timer ticks every quarter of the
check's timeout and tells the agent's :class:`~corral.core.stall.StallLog` how late it ran, so
a timeout comes with the agent's own lag during the check, which the core uses to tell a slow
agent from a dead service (``InstanceHealth.judge``). A check that answers at once never
ticks: the watch costs nothing on an idle agent. What the core says about a late result goes
to ``on_event`` (an event) or to the log.

A check loop never ends by itself: a checker that raises (a bug: the checkers' contract is to
return an outcome) fails that check with the exception as its detail; an ``on_change`` that
raises is logged and the checks go on (the verdict stands). If a loop still ends (a stray
cancellation, a bug here), :meth:`LocalService.checks_down` says so and the agent starts it
again: a service whose checks stopped would otherwise keep its last verdict forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from corral.core.clock import Clock, Grid
from corral.core.health import CheckOutcome, InstanceHealth
from corral.core.ref import InstanceRef
from corral.core.stall import StallLog
from corral.drivers.base import Driver, NodeContext
from corral.spec import HealthCheck

log = logging.getLogger(__name__)
Checker = Callable[[HealthCheck, NodeContext], Awaitable[CheckOutcome]]
Verdict = Literal["starting", "healthy", "unhealthy"]


def instance_key(resource: str, item: str | None) -> str:
    """The local name of an instance: ``web``, or ``api-vips[198.18.0.100]`` for a set member."""
    return InstanceRef(resource, item).key


def split_key(key: str) -> tuple[str, str | None]:
    """The inverse of :func:`instance_key` (:class:`~corral.core.ref.InstanceRef` parses)."""
    ref = InstanceRef.parse(key, node=False)
    return (ref.resource, ref.item) if ref is not None else (key, None)


@dataclass
class LocalService:
    """``name`` is the instance key (:func:`instance_key`) of ``resource`` / ``item``."""

    name: str
    driver: Driver
    checks: list[HealthCheck]
    resource: str = ""
    item: str | None = None
    draining: bool = False  # a planned stop is under way: load balancers take it out first
    role: Literal["started", "promoted"] = "started"
    detail: str = ""
    failed: bool = False
    health: InstanceHealth = field(default_factory=lambda: InstanceHealth([]))
    task: asyncio.Task[None] | None = None
    stalls: StallLog | None = None  # the agent's own lateness, measured over each check
    on_event: Callable[[LocalService, str], Awaitable[None]] | None = None  # a late result
    started_at: float = -math.inf  # when the agent (re)started or adopted it (its clock)

    def __post_init__(self) -> None:
        if not self.resource:
            self.resource, self.item = split_key(self.name)

    @property
    def verdict(self) -> Verdict:
        return self.health.state

    @property
    def reported_health(self) -> str:
        """What the status record says: ``draining`` during a planned stop, ``unhealthy`` once
        the service manager says it died, else the checks' verdict."""
        if self.draining:
            return "draining"
        return "unhealthy" if self.failed else self.health.state

    def reset(self, now: float) -> None:
        """A fresh start: no verdict yet, grace periods start now."""
        self.health = InstanceHealth.create(self.checks, now)
        self.detail = self.health.reason
        self.failed = False
        self.started_at = now

    async def check_loop(
        self,
        node: NodeContext,
        checker: Checker,
        clock: Clock,
        on_change: Callable[[LocalService], Awaitable[None]],
        grid: Grid | None = None,
    ) -> None:
        """Run every check forever (until cancelled); call ``on_change`` on a new verdict.
        ``grid``: checks start on its instants (the agent's timer grid: checks whose interval
        is a whole number of ticks share their wake-ups with the agent's other timers).

        Returns at once when there are no checks. If the loop of one check ends anyway, the
        others are stopped and :class:`CheckLoopEnded` is raised: all or nothing, so a
        restart of the whole loop leaves no orphan running beside it."""
        if not self.checks:
            return
        first = clock.now() if grid is None else grid.at_or_after(clock.now())
        loops = [
            asyncio.create_task(
                self._check_forever(i, check, node, checker, clock, on_change, first)
            )
            for i, check in enumerate(self.checks)
        ]
        try:
            done, _ = await asyncio.wait(loops, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
        ended = next(iter(done))
        cause = None if ended.cancelled() else ended.exception()
        raise CheckLoopEnded(
            f"the loop of check {loops.index(ended) + 1} ended: "
            + ("cancelled from inside" if ended.cancelled() else repr(cause))
        ) from cause

    def start_checks(
        self,
        node: NodeContext,
        checker: Checker,
        clock: Clock,
        on_change: Callable[[LocalService], Awaitable[None]],
        grid: Grid | None = None,
    ) -> None:
        """Start (or start again) :meth:`check_loop` as this service's task (none when the
        service has no checks: nothing would run)."""
        if not self.checks:
            self.task = None
            return
        self.task = asyncio.create_task(
            self.check_loop(node, checker, clock, on_change, grid), name=f"checks {self.name}"
        )

    def checks_down(self) -> str | None:
        """Why this service's checks are not running (None while they run, or when there are
        none): never started, stopped by :meth:`stop_checks` (and the service kept: a stop
        that failed), or the task ended by itself."""
        task = self.task
        if not self.checks or (task is not None and not task.done()):
            return None
        if task is None:
            return "not running"
        if task.cancelled():
            return "cancelled"
        exc = task.exception()
        return str(exc) if isinstance(exc, CheckLoopEnded) else f"ended ({exc!r})"

    async def _check_forever(
        self,
        index: int,
        check: HealthCheck,
        node: NodeContext,
        checker: Checker,
        clock: Clock,
        on_change: Callable[[LocalService], Awaitable[None]],
        first: float,
    ) -> None:
        """Start the check at ``first``, then every ``interval`` on a fixed schedule, even
        while an earlier one hangs (at most ``ceil(timeout / interval) + 1`` in flight), and
        judge results in start order: a hang is detected within ``interval x fall +
        timeout``. A schedule that fell behind skips the starts it missed (no burst)."""
        in_flight: list[asyncio.Task[tuple[CheckOutcome, float]]] = []  # in start order
        limit = math.ceil(check.timeout / check.interval) + 1 if check.interval > 0 else 1
        next_start = first
        await asyncio.sleep(max(0.0, first - clock.now()))

        async def judge_done() -> None:
            while in_flight and in_flight[0].done():
                outcome, lag = in_flight.pop(0).result()
                await self._judge(index, outcome, lag, clock, on_change)

        try:
            while True:
                if len(in_flight) < limit:
                    in_flight.append(asyncio.create_task(self._run(check, node, checker, clock)))
                await judge_done()
                next_start += check.interval
                delay = max(0.0, next_start - clock.now())
                if in_flight:
                    await asyncio.wait([in_flight[0]], timeout=delay)
                    await judge_done()
                    delay = max(0.0, next_start - clock.now())
                await asyncio.sleep(delay)
                behind = clock.now() - check.interval - next_start
                if behind > 0 and check.interval > 0:  # no catch-up burst; same phase
                    next_start += math.ceil(behind / check.interval) * check.interval
                elif behind > 0:
                    next_start = clock.now()
        finally:
            for pending in in_flight:
                pending.cancel()

    async def _run(
        self, check: HealthCheck, node: NodeContext, checker: Checker, clock: Clock
    ) -> tuple[CheckOutcome, float]:
        """Run ``check`` once, watched: its outcome, and for a timeout the agent's lag during
        the run (0.0 for any other outcome, whose lag the core ignores, or without a stall
        log)."""
        if self.stalls is None:
            return await _bounded(checker, check, node), 0.0
        started = clock.now()
        watch = LagWatch(clock, self.stalls, check.timeout / 4)
        try:
            outcome = await _bounded(checker, check, node)
        finally:
            watch.stop()
        if outcome.status != "timeout":
            return outcome, 0.0
        return outcome, self.stalls.lag_during(started, clock.now())

    async def _judge(
        self,
        index: int,
        outcome: CheckOutcome,
        lag: float,
        clock: Clock,
        on_change: Callable[[LocalService], Awaitable[None]],
    ) -> None:
        """Record one result taken with the agent ``lag`` seconds late: the core says whether
        it counts (a timeout while the agent itself was late does not, up to a bound: rule 7)
        and what to tell about it; ``on_change`` is called on a new verdict. A callback that
        raises is logged: the verdict stands (the agent's next round reads it)."""
        judged = self.health.judge(index, outcome, clock.now(), lag)
        if judged.note is not None:
            log.info("%s: %s", self.name, judged.note)
        if judged.event is not None and self.on_event is not None:
            try:
                await self.on_event(self, judged.event)
            except Exception:
                log.exception("%s: the event of a late result failed", self.name)
        if judged.transition is not None:
            self.detail = judged.transition.reason
            try:
                await on_change(self)
            except Exception:
                log.exception("%s: the callback of a new verdict failed", self.name)

    async def stop_checks(self) -> None:
        """Stop the check task and wait until it has ended (whatever it ended with)."""
        task, self.task = self.task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class CheckLoopEnded(Exception):
    """A check loop ended although it runs until cancelled (a bug, or a stray cancellation)."""


class LagWatch:
    """Measures the event loop's lag while one check runs: a timer every ``step`` seconds of
    ``clock`` tells ``stalls`` how late it ran, and :meth:`stop` tells it of the tick still
    pending (overdue when the result is handled first thing after a freeze) and cancels it.

    A loop that stopped for ``L`` seconds is measured late by at least ``L - step`` (the tick
    due first after the stall began ran at its end), never more than it was: the lag is under-
    rather than over-estimated, so a lag can excuse a timeout only when it was real. ``step``
    is at least the stall log's threshold (a shorter one could never tell a lag it records)."""

    def __init__(self, clock: Clock, stalls: StallLog, step: float) -> None:
        self._clock, self._stalls = clock, stalls
        self._step = max(step, stalls.threshold)
        self._loop = asyncio.get_running_loop()
        self._due = clock.now() + self._step
        self._handle = self._loop.call_later(self._step, self._tick)

    def _tick(self) -> None:
        now = self._clock.now()
        self._stalls.late(self._due, now)
        self._due = now + self._step  # from now: a late tick does not fire again at once
        self._handle = self._loop.call_later(self._step, self._tick)

    def stop(self) -> None:
        self._handle.cancel()
        self._stalls.late(self._due, self._clock.now())


async def _bounded(checker: Checker, check: HealthCheck, node: NodeContext) -> CheckOutcome:
    """The checker with a hard bound: a checker that overruns its own timeout still fails.
    A checker that raises fails the check too (``unknown``, the exception as the detail), and
    so does a cancellation that did not come from outside (a library's stray CancelledError):
    only a cancellation of this task itself goes through."""
    try:
        return await asyncio.wait_for(checker(check, node), check.timeout + 1.0)
    except TimeoutError:
        return CheckOutcome("timeout", f"no answer within {check.timeout:g}s", check.timeout)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        return CheckOutcome("unknown", "the check was cancelled from inside (a bug?)")
    except Exception as exc:
        log.warning("a %s check raised", check.kind, exc_info=True)
        return CheckOutcome("unknown", f"the check raised {exc!r} (a bug?)")
