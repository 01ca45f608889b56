"""Injected time.

Cores never read the clock; shells pass ``now`` in. Shells that need a clock take a
:class:`Clock` through their constructor so tests and the simulator can drive time by hand.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """A source of monotonic time in seconds. ``now()`` never goes backwards."""

    def now(self) -> float: ...


class MonotonicClock:
    """The real clock: :func:`time.monotonic`."""

    def now(self) -> float:
        return time.monotonic()


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
