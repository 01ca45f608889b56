"""How late the agent itself was (pure): a late or starved agent is not a failed service.

A health check that times out tells something about the service only if the agent that ran it
was on time during the check: when its event loop ran late (its node frozen with SIGSTOP or a
paused VM, resumed; a machine so loaded that the agent did not run; a long callback), an
answer that came in time is read only after the check's own timeout fired, and judging that
"timeout" would restart and count failures against a service that did nothing wrong (safety
rule 7: a node's event is not the resource's failure). :mod:`corral.core.health` decides what
such a result counts for; this module measures the lag it is given.

:class:`StallLog` is told of timers that ran: ``late(due, now)``, a timer due at ``due`` ran at
``now``. The agent's shells tell it of the stall beat on its timer grid and of the ticks that
watch every check while it runs (``corral.agent.instances``), so the lag during a check is
measured to within a quarter of its timeout. It remembers each lateness over ``threshold``
as the interval ``[due, now]`` in which the loop did not get to that timer.
``lag_during(start, end)`` is the longest such interval, counting only its part inside
``[start, end]``: a check that started after a stall ended was run on time. Time is an input;
nothing here reads a clock.
"""

from __future__ import annotations

from collections import deque

LATE = 0.05  # seconds: a timer later than this ran late (less is ordinary scheduling noise)
KEEP = 1024  # late timers remembered at most (a check window sees only the last few seconds)
HORIZON = 600.0  # seconds after which a late timer is forgotten (longer than any check)


class StallLog:
    def __init__(self, threshold: float = LATE) -> None:
        """``threshold``: a timer that ran more than this late is remembered (a lag below it is
        never measured, so a check timeout below it is never excused)."""
        self.threshold = threshold
        self._late: deque[tuple[float, float]] = deque(maxlen=KEEP)  # (due, ran), by ``ran``

    def late(self, due: float, now: float) -> float:
        """A timer due at ``due`` ran at ``now``; returns how late it was (0.0 if on time)."""
        lateness = max(0.0, now - due)
        if lateness > self.threshold:
            self._late.append((due, now))
        while self._late and self._late[0][1] < now - HORIZON:
            self._late.popleft()
        return lateness

    def lag_during(self, start: float, end: float) -> float:
        """The longest lateness (seconds) within ``[start, end]``: of each late timer, the part
        of ``[due, ran]`` inside the window; 0.0 when no late timer overlaps it."""
        longest = 0.0
        for due, ran in self._late:
            longest = max(longest, min(ran, end) - max(due, start))
        return longest
