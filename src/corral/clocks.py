"""The real clock, for the shells (the cores take ``now`` as an input: :mod:`corral.core.clock`)."""

from __future__ import annotations

import time


class MonotonicClock:
    """The real clock: :func:`time.monotonic` (a :class:`corral.core.clock.Clock`)."""

    def now(self) -> float:
        return time.monotonic()
