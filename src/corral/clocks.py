"""The real clock, for the shells (the cores take ``now`` as an input: :mod:`corral.core.clock`)."""

from __future__ import annotations

import asyncio
import time

from corral.core.clock import Clock


class MonotonicClock:
    """The real clock: :func:`time.monotonic` (a :class:`corral.core.clock.Clock`)."""

    def now(self) -> float:
        return time.monotonic()


async def sleep_until(clock: Clock, when: float) -> None:
    """Sleep until ``clock`` reads ``when`` (at once if it is past)."""
    await asyncio.sleep(max(0.0, when - clock.now()))
