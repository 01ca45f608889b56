"""One local resource instance: its driver, its health checks and their verdict (shell).

The agent owns one :class:`LocalService` per resource running (or starting) on this node. A
check loop per service starts each check every ``interval`` on a fixed schedule (a hung check
fails at its timeout; runs overlap while a target hangs), feeds the pure
:class:`~corral.core.health.InstanceHealth`, and tells the agent about every change of verdict
through ``on_change``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from corral.core.clock import Clock, Grid
from corral.core.health import CheckOutcome, InstanceHealth
from corral.drivers.base import Driver, NodeContext
from corral.spec import HealthCheck

Checker = Callable[[HealthCheck, NodeContext], Awaitable[CheckOutcome]]
Verdict = Literal["starting", "healthy", "unhealthy"]


def instance_key(resource: str, item: str | None) -> str:
    """The local name of an instance: ``web``, or ``api-vips[198.18.0.100]`` for a set member."""
    return f"{resource}[{item}]" if item else resource


def split_key(key: str) -> tuple[str, str | None]:
    """The inverse of :func:`instance_key`."""
    if key.endswith("]") and "[" in key:
        resource, _, item = key[:-1].partition("[")
        return resource, item
    return key, None


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
        is a whole number of ticks share their wake-ups with the agent's other timers)."""
        first = clock.now() if grid is None else grid.at_or_after(clock.now())
        await asyncio.gather(
            *(
                self._check_forever(i, check, node, checker, clock, on_change, first)
                for i, check in enumerate(self.checks)
            )
        )

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
        in_flight: list[asyncio.Task[CheckOutcome]] = []
        limit = math.ceil(check.timeout / check.interval) + 1 if check.interval > 0 else 1
        next_start = first
        await asyncio.sleep(max(0.0, first - clock.now()))
        try:
            while True:
                if len(in_flight) < limit:
                    in_flight.append(asyncio.create_task(_bounded(checker, check, node)))
                while in_flight and in_flight[0].done():
                    await self._judge(index, in_flight.pop(0).result(), clock, on_change)
                next_start += check.interval
                delay = max(0.0, next_start - clock.now())
                if in_flight:
                    await asyncio.wait([in_flight[0]], timeout=delay)
                    while in_flight and in_flight[0].done():
                        await self._judge(index, in_flight.pop(0).result(), clock, on_change)
                    delay = max(0.0, next_start - clock.now())
                await asyncio.sleep(delay)
                behind = clock.now() - check.interval - next_start
                if behind > 0 and check.interval > 0:  # no catch-up burst; same phase
                    next_start += math.ceil(behind / check.interval) * check.interval
                elif behind > 0:
                    next_start = clock.now()
        finally:
            for task in in_flight:
                task.cancel()

    async def _judge(
        self,
        index: int,
        outcome: CheckOutcome,
        clock: Clock,
        on_change: Callable[[LocalService], Awaitable[None]],
    ) -> None:
        change = self.health.record(index, outcome, clock.now())
        if change is not None:
            self.detail = change.reason
            await on_change(self)

    async def stop_checks(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None


async def _bounded(checker: Checker, check: HealthCheck, node: NodeContext) -> CheckOutcome:
    """The checker with a hard bound: a checker that overruns its own timeout still fails."""
    try:
        return await asyncio.wait_for(checker(check, node), check.timeout + 1.0)
    except TimeoutError:
        return CheckOutcome("timeout", f"no answer within {check.timeout:g}s", check.timeout)
