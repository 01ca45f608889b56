"""The core's timer wheel: a heap of ``(deadline, order, kind, key)`` with lazy cancellation.

The core never cancels a timer; it checks, when one fires, whether it still means anything
(the probe it belongs to may have been acked, the suspicion refuted). That keeps every
operation ``O(log T)`` and the heap small (at most a few timers per member in flight).
"""

from __future__ import annotations

import enum
import heapq


class Timer(enum.IntEnum):
    PROBE = 0
    """Start the next probe (one per protocol period)."""
    PROBE_TIMEOUT = 1
    """The direct ack is late: ask helpers (key: probe seq)."""
    PROBE_END = 2
    """The protocol period is over: verdict on the probe (key: probe seq)."""
    RELAY = 3
    """A ping we sent on someone's behalf is late: nack (key: relay seq)."""
    SUSPICION = 4
    """A suspicion may have expired (key: member name)."""
    GOSSIP = 5
    PUSH_PULL = 6
    REAP = 7
    JOIN = 8
    """No push-pull answer yet: try the seeds again."""
    LEAVE = 9
    """The leave grace period is over."""
    RECONNECT = 10
    """Ping a random dead member, in case it is back (partition healed)."""


class TimerHeap:
    __slots__ = ("_heap", "_order")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer, object]] = []
        self._order = 0

    def __len__(self) -> int:
        return len(self._heap)

    def at(self, deadline: float, kind: Timer, key: object = None) -> None:
        self._order += 1
        heapq.heappush(self._heap, (deadline, self._order, kind, key))

    def peek(self) -> tuple[float, Timer, object] | None:
        if not self._heap:
            return None
        deadline, _, kind, key = self._heap[0]
        return deadline, kind, key

    def pop(self) -> tuple[float, Timer, object]:
        deadline, _, kind, key = heapq.heappop(self._heap)
        return deadline, kind, key
