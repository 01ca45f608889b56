"""Health verdicts from check results (pure): rise/fall with a start grace period.

A state machine per check, in the style of h11: explicit states, one transition table.

    state      result  condition                     next
    starting   pass    passes in a row >= rise       healthy
    starting   fail    fails in a row >= fall        unhealthy   (outside grace)
    healthy    fail    fails in a row >= fall        unhealthy   (outside grace)
    unhealthy  pass    passes in a row >= rise       healthy

Failures that happen within ``grace`` seconds of ``started_at`` do not count (a service that is
still starting is not "failing"). ``record`` returns a :class:`Transition` only when the state
changes, with a reason a person can read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

CheckStatus = Literal["ok", "warning", "critical", "unknown", "timeout"]
HealthState = Literal["starting", "healthy", "unhealthy"]


@dataclass(frozen=True)
class CheckOutcome:
    """One check's result. ``warning`` passes (Nagios: shown, not failing)."""

    status: CheckStatus
    detail: str
    duration: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status in ("ok", "warning")


@dataclass(frozen=True)
class Transition:
    old: HealthState
    new: HealthState
    reason: str


class HealthTracker:
    def __init__(self, rise: int, fall: int, grace: float, started_at: float) -> None:
        if rise < 1 or fall < 1:
            raise ValueError("rise and fall are at least 1")
        self.rise, self.fall, self.grace = rise, fall, grace
        self.started_at = started_at
        self.state: HealthState = "starting"
        self.passes = 0
        self.fails = 0
        self.last: CheckOutcome | None = None

    def restarted(self, now: float) -> None:
        """A new start of the service: no verdict until checks say so, grace from now."""
        self.started_at = now
        self.state = "starting"
        self.passes = self.fails = 0

    def record(self, outcome: CheckOutcome, now: float) -> Transition | None:
        self.last = outcome
        if outcome.passed:
            self.passes, self.fails = self.passes + 1, 0
            if self.state != "healthy" and self.passes >= self.rise:
                return self._go(
                    "healthy",
                    f"{self.passes} passing check(s) in a row (rise {self.rise}): {outcome.detail}",
                )
            return None
        self.passes = 0
        if now - self.started_at < self.grace:
            return None  # still starting: failures do not count yet
        self.fails += 1
        if self.state != "unhealthy" and self.fails >= self.fall:
            return self._go(
                "unhealthy",
                f"{self.fails} failed check(s) in a row (fall {self.fall}): {outcome.detail}",
            )
        return None

    def _go(self, new: HealthState, reason: str) -> Transition:
        old, self.state = self.state, new
        return Transition(old, new, reason)
