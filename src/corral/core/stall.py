"""When the agent itself was stalled (pure): a frozen or starved agent is not a failed service.

A health check that times out tells something about the service only if the agent that ran it
was awake for the check's whole window. When the agent's own event loop was late (its node
frozen with SIGSTOP or a paused VM, resumed; a machine so loaded that the agent did not run),
every check in flight "times out" at once on resume, and judging those results would restart
and count failures against services that did nothing wrong (safety rule 7: a node's event is
not the resource's failure).

:class:`StallLog` is fed a beat on every instant of the agent's timer grid (``beat(now)``) and
remembers the gaps between beats that were longer than ``threshold``. ``lag_during(start, end)``
is the longest gap that overlaps ``[start, end]``, including the gap still open at ``end`` (the
agent resumed and has not beaten yet: a result judged first thing after a freeze sees it).
Time is an input; nothing here reads a clock.
"""

from __future__ import annotations

from collections import deque

KEEP = 64  # stalls remembered (a check window is seconds long; older ones never overlap)


class StallLog:
    def __init__(self, threshold: float) -> None:
        """``threshold``: a gap between beats longer than this is a stall (the grid's tick
        plus the scheduling slack a busy machine has, so ordinary lateness is not one)."""
        self.threshold = threshold
        self._last: float | None = None
        self._stalls: deque[tuple[float, float]] = deque(maxlen=KEEP)

    def beat(self, now: float) -> float:
        """The agent ran at ``now``; returns the gap since the previous beat (0 for the first)."""
        gap = 0.0 if self._last is None else now - self._last
        if self._last is not None and gap > self.threshold:
            self._stalls.append((self._last, now))
        self._last = max(now, self._last) if self._last is not None else now
        return gap

    def lag_during(self, start: float, end: float) -> float:
        """The longest stall (seconds) overlapping ``[start, end]``; 0.0 when there was none.
        The gap open since the last beat counts as a stall ending at ``end``."""
        longest = 0.0
        for begin, until in self._stalls:
            if begin < end and until > start:
                longest = max(longest, until - begin)
        if self._last is not None and end - self._last > self.threshold and end > start:
            longest = max(longest, end - self._last)
        return longest
