"""Running the health checks of one instance on their schedule (shell around the pure
:class:`~corral.core.health.InstanceHealth`).

Contract of :class:`Monitor`:

- One :class:`CheckLoop` per check. A loop runs its check, feeds the result to the instance's
  trackers with ``now`` from the injected clock, waits until ``interval`` has passed since
  the check started (on the event loop's timer), and repeats. So at most one run of a check
  is in flight: a hung check is not stacked; it fails at its ``timeout`` and the next one
  starts at once if the interval is over. A service that hangs (or starts failing) is
  therefore unhealthy within ``interval x fall + timeout`` when ``timeout <= interval``
  (the issue's target), and within ``interval + fall x timeout`` otherwise.
- The first run of every check starts at :meth:`Monitor.start`; results count from then.
- Every change of the *instance's* state is reported once, in order, through
  ``await on_transition(resource, transition)``. The callback runs inside a check loop under a
  lock, so it may call :meth:`Monitor.restarted` and :meth:`Monitor.stop` (the loop it runs in
  then ends when it returns); a slow callback delays further checks. An exception in it is
  logged and does not end monitoring.
- :meth:`Monitor.restarted` starts every check over (grace from now), drops the results of
  checks started before it, runs every check at once, and *returns* the resulting transition
  (to ``starting``) instead of reporting it: the caller is the one that restarted the service.
- :meth:`Monitor.stop` cancels every loop and the checks in flight (an exec check's process
  group is killed) and returns when they have ended. A callback in progress is cancelled too,
  unless it is the caller, and none starts after it returns. ``start()`` after ``stop()``
  monitors again.
- A checker that overruns its timeout by :data:`OVERRUN` is cut off and the run counts as a
  ``timeout``; a checker that raises (a bug) is logged and the run counts as ``unknown``:
  a check that cannot run cannot vouch for the service, and monitoring must not die silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from corral.core.clock import Clock, MonotonicClock
from corral.core.health import CheckOutcome, HealthState, InstanceHealth, Transition
from corral.drivers.base import NodeContext
from corral.health.checks import run_check
from corral.spec import HealthCheck

log = logging.getLogger(__name__)

CheckFn = Callable[[HealthCheck, NodeContext], Awaitable[CheckOutcome]]
OnTransition = Callable[[str, Transition], Awaitable[None]]

OVERRUN = 0.5  # seconds a checker may run past its check's timeout before it is cut off


class CheckLoop:
    """Runs one check of a :class:`Monitor` forever (until cancelled), one run at a time."""

    def __init__(self, monitor: Monitor, index: int, check: HealthCheck) -> None:
        self.monitor, self.index, self.check = monitor, index, check
        self.wake = asyncio.Event()  # set by restarted(): run the next check now
        self.runs = 0  # checks completed, for status and tests

    async def run(self, run_id: int) -> None:
        """Loop while the monitor's run is ``run_id`` (a later stop/start ends this loop)."""
        loop = asyncio.get_running_loop()
        while self.monitor.run_id == run_id:
            self.wake.clear()
            generation = self.monitor.generation
            started = loop.time()  # scheduling uses the event loop's timer, like its sleeps
            outcome = await self.run_once()
            self.runs += 1
            await self.monitor.record(self.index, generation, outcome)
            delay = self.check.interval - (loop.time() - started)
            if delay > 0 and self.monitor.run_id == run_id:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), delay)

    async def run_once(self) -> CheckOutcome:
        """One run of the check, bounded by its timeout (plus :data:`OVERRUN`)."""
        check, clock = self.check, self.monitor.clock
        start = clock.now()
        try:
            async with asyncio.timeout(check.timeout + OVERRUN):
                return await self.monitor.checker(check, self.monitor.node)
        except TimeoutError:
            detail = f"timed out after {check.timeout:g}s (the checker overran its timeout)"
            return CheckOutcome("timeout", detail, clock.now() - start)
        except Exception as exc:
            log.exception("health check %d of %s crashed", self.index + 1, self.monitor.resource)
            return CheckOutcome("unknown", f"the check crashed: {exc!r}", clock.now() - start)


class Monitor:
    """The health checks of one instance (``resource`` on ``node``), run on their schedule.

    ``checker`` defaults to :func:`~corral.health.checks.run_check`; ``clock`` (default: the
    monotonic clock) stamps results for the trackers; ``started_at`` (default: ``clock.now()``)
    is when the instance started, from which the checks' grace periods count.
    """

    def __init__(
        self,
        resource: str,
        checks: Sequence[HealthCheck],
        node: NodeContext,
        on_transition: OnTransition,
        *,
        clock: Clock | None = None,
        checker: CheckFn | None = None,
        started_at: float | None = None,
    ) -> None:
        self.resource, self.node = resource, node
        self.checks = list(checks)
        self.on_transition = on_transition
        self.clock = clock or MonotonicClock()
        self.checker: CheckFn = checker or run_check
        now = self.clock.now() if started_at is None else started_at
        self.health = InstanceHealth.create(self.checks, now)
        self.generation = 0  # bumped by restarted(): results of older runs are dropped
        self.run_id = 0  # bumped by start() and stop(): loops of an older run end
        self.loops = [CheckLoop(self, i, c) for i, c in enumerate(self.checks)]
        self._tasks: list[asyncio.Task[None]] = []
        self._deliver = asyncio.Lock()  # transitions reach the callback one at a time, in order

    @property
    def state(self) -> HealthState:
        return self.health.state

    @property
    def reason(self) -> str:
        return self.health.reason

    @property
    def outcomes(self) -> list[CheckOutcome | None]:
        """The latest result of each check (None before its first result since a restart)."""
        return [t.last for t in self.health.trackers]

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    def start(self) -> None:
        """Start every check loop (needs a running event loop); no-op when already running."""
        if self._tasks:
            return
        self.run_id += 1
        self._tasks = [
            asyncio.create_task(loop.run(self.run_id), name=f"health:{self.resource}:{i + 1}")
            for i, loop in enumerate(self.loops)
        ]

    async def stop(self) -> None:
        """Cancel every loop and its check in flight, and wait for them (idempotent)."""
        self.run_id += 1
        tasks, self._tasks = self._tasks, []
        current = asyncio.current_task()
        others = [t for t in tasks if t is not current]  # stop() called from our callback
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    def restarted(self) -> Transition | None:
        """The service was (re)started: no verdict until the checks pass ``rise`` times, grace
        from now, results of checks started before now dropped, every check run at once.
        Returns the transition of the instance (to ``starting``), if its state changed."""
        self.generation += 1
        for loop in self.loops:
            loop.wake.set()
        return self.health.restarted(self.clock.now())

    async def record(self, index: int, generation: int, outcome: CheckOutcome) -> None:
        """Feed one result of check ``index`` started in ``generation``; report a transition."""
        if generation != self.generation:
            return  # started before restarted(): it describes the previous run of the service
        transition = self.health.record(index, outcome, self.clock.now())
        if transition is None:
            return
        async with self._deliver:
            if generation != self.generation:
                return  # a restart while we waited superseded this transition
            log.info("%s is %s: %s", self.resource, transition.new, transition.reason)
            try:
                await self.on_transition(self.resource, transition)
            except Exception:
                log.exception("on_transition of %s failed", self.resource)
