"""Injected time.

Cores never read the clock; shells pass ``now`` in. Shells that need a clock take a
:class:`Clock` through their constructor so tests and the simulator can drive time by hand;
the real one is :class:`corral.clocks.MonotonicClock`, outside the core.
"""

from __future__ import annotations

import math
from typing import Protocol


class Clock(Protocol):
    """A source of monotonic time in seconds. ``now()`` never goes backwards."""

    def now(self) -> float: ...


class ManualClock:
    """A clock that moves only when told to (tests, simulator).

    ``advance`` refuses negative steps so the monotonic contract of :class:`Clock` holds.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"ManualClock cannot go backwards (advance {seconds})")
        self._now += seconds


class Grid:
    """The instants ``phase + k x tick`` (``k`` an integer): where periodic timers wake.

    A process whose periodic work (gossip probes, lease renewals, health checks, driver polls)
    all waits for instants of one grid wakes once per instant for all of it, instead of once per
    timer: on a virtual machine a wake-up from idle costs ~100 us of CPU whatever it runs, so
    the number of wake-ups is most of an idle agent's CPU. Processes whose grids share a phase
    (:func:`wall_grid` on clocks that agree) also send each other their packets while both are
    awake. Pure: no clock is read here.
    """

    __slots__ = ("phase", "tick")

    def __init__(self, tick: float, phase: float = 0.0) -> None:
        if not tick > 0:
            raise ValueError(f"a grid needs a positive tick, not {tick!r}")
        self.tick = tick
        self.phase = phase % tick

    def at_or_after(self, t: float) -> float:
        """The first grid instant ``>= t``."""
        k = math.ceil((t - self.phase) / self.tick - 1e-9)
        return self.phase + k * self.tick

    def near(self, t: float) -> float:
        """The grid instant nearest ``t`` (ties go later): for a period that may move by up
        to ``tick / 2``."""
        return self.at_or_after(t - self.tick / 2)


def wall_grid(clock: Clock, tick: float, wall: float) -> Grid:
    """A grid on ``clock`` whose instants fall on whole multiples of ``tick`` of the wall
    clock, ``wall`` being the wall-clock time (seconds since the epoch) at ``clock.now()``:
    every process on every node whose clocks agree (NTP) shares it. A wall clock that jumps
    only costs the shared wake-ups, never correctness; build a new grid to follow it."""
    return Grid(tick, clock.now() - wall)
