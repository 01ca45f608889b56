"""Health verdicts from check results (pure): rise/fall with a start grace period, and late
results (a timeout while the agent itself was late) that wait for a check that runs on time.

No I/O and no clock: every call takes ``now`` (seconds on the caller's monotonic clock) and
the agent's ``lag`` (seconds, measured by the shell: :mod:`corral.core.stall`).

One :class:`HealthTracker` per check, an explicit state machine in the style of h11. Each
result is first classified into an event, then the event is looked up in one table:

    result                          counters                       event
    timed out with lag > timeout    late += 1, and then:
      late <= fall                  nothing else                   "late"
      late > fall                   as "failed" below
    passed                          passes += 1, fails = 0,        "rise" if passes >= rise
                                    late = 0                       else "pass"
    failed, in the start grace      passes = 0 (fails unchanged)   "ignored"
    failed, otherwise               fails += 1, passes = 0         "fall" if fails >= fall
                                                                   else "fail"

    state      event   next          (every other pair keeps its state: see _TRANSITIONS)
    starting   rise    healthy
    starting   fall    unhealthy
    healthy    fall    unhealthy
    unhealthy  rise    healthy

So the state changes only after ``rise`` passes in a row or ``fall`` counted failures in a row.
The start grace: after a (re)start, failures do not count until ``grace`` seconds have passed
or the tracker first turned ``healthy``, whichever comes first. A service that is still
starting is not failing (a stand-in that needs 0.5 s to listen under load was restarted and
counted in a loop with no grace); once it has passed, every failure counts, so a long grace
does not slow the detection of a service that was up. A failure within the grace breaks a
run of passes (``rise`` means in a row) but never counts toward ``fall``. Hence a tracker is
never ``unhealthy`` within the grace of its (re)start unless it was ``healthy`` since.
``warning`` passes (Nagios: shown, not failing); ``critical``, ``unknown`` and ``timeout`` fail.

Slow is not dead (:meth:`HealthTracker.judge`, safety rule 7). A ``timeout`` taken while the
agent's own event loop was late by more than the check's ``timeout`` says nothing about the
service: the agent could not have seen an answer in time. Such a result is *late*: counted
neither as a failure nor as a pass (``passes`` and ``fails`` stay), so the verdict stays where
it was until a check that ran on time decides. Every other result counts as above, whatever
the lag: a refused connection, an HTTP 500 or a plugin's CRITICAL is the service's own answer,
and a timeout without such lag is the service's slowness.

The bound, so that lag never hides a dead service for long: at most ``fall`` late results
go uncounted between two passes. From the next one on, late timeouts count as failures until
a check passes or the service restarts; failures in between do not renew the allowance (a
dead service answering now "refused", now nothing, would otherwise get ``fall`` more each
time). A service that fails while the agent stays late turns unhealthy after at most
``2 x fall`` results instead of ``fall`` (defaults: 4 results, about 4 s, instead of 2). The
first late result after a pass and the first one counted past the bound each come with an
event for operators (:attr:`Judgement.event`); the others with a log line only
(:attr:`Judgement.note`), so a slow machine does not flood the event log.

:class:`InstanceHealth` aggregates the trackers of one instance's checks: ``unhealthy`` when
any check is, ``healthy`` when all are (also when there are no checks: a running service without
checks counts as healthy), ``starting`` otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

CheckStatus = Literal["ok", "warning", "critical", "unknown", "timeout"]
HealthState = Literal["starting", "healthy", "unhealthy"]
Event = Literal["pass", "rise", "fail", "fall", "ignored", "late"]

CHECK_STATUSES: tuple[CheckStatus, ...] = ("ok", "warning", "critical", "unknown", "timeout")

# (state, event) -> next state. Pairs not listed keep the state (h11 style: one table).
_TRANSITIONS: dict[tuple[HealthState, Event], HealthState] = {
    ("starting", "rise"): "healthy",
    ("starting", "fall"): "unhealthy",
    ("healthy", "fall"): "unhealthy",
    ("unhealthy", "rise"): "healthy",
}


@dataclass(frozen=True)
class CheckOutcome:
    """One check's result: ``status``, a one-line ``detail`` for people (e.g. ``HTTP 500 from
    http://10.0.0.1:5000/v3``), and how long the check took in seconds."""

    status: CheckStatus
    detail: str
    duration: float = 0.0

    @property
    def passed(self) -> bool:
        """``ok`` and ``warning`` pass; ``critical``, ``unknown`` and ``timeout`` fail."""
        return self.status in ("ok", "warning")


@dataclass(frozen=True)
class Transition:
    """A change of health state, with the reason a person reads in events and status."""

    old: HealthState
    new: HealthState
    reason: str


@dataclass(frozen=True)
class Judgement:
    """What one result did: the state change (if any), and what to say about a late result
    (see the module docstring): ``event`` for operators (an event), ``note`` for the agent's
    log. At most one of ``event`` and ``note`` is set; both are None for an ordinary result."""

    transition: Transition | None = None
    event: str | None = None
    note: str | None = None


class CheckTiming(Protocol):
    """What a tracker needs of a check (a ``corral.spec.HealthCheck`` is one)."""

    @property
    def rise(self) -> int: ...
    @property
    def fall(self) -> int: ...
    @property
    def grace(self) -> float: ...
    @property
    def timeout(self) -> float: ...


class HealthTracker:
    """Rise/fall state machine of one check (see the module docstring for the table).

    ``rise`` and ``fall`` are at least 1; ``grace`` (seconds, >= 0) starts at ``started_at``
    and again at every :meth:`restarted`. ``timeout``: the check's timeout (seconds), the lag
    beyond which a timed-out result is late; without one no result is ever late. Attributes
    are readable; only the methods change them.
    """

    def __init__(
        self, rise: int, fall: int, grace: float, started_at: float, timeout: float = math.inf
    ) -> None:
        if rise < 1 or fall < 1:
            raise ValueError(f"rise and fall are at least 1 (got rise {rise}, fall {fall})")
        if grace < 0:
            raise ValueError(f"grace cannot be negative (got {grace})")
        self.rise, self.fall, self.grace, self.timeout = rise, fall, grace, timeout
        self.started_at = started_at
        self.state: HealthState = "starting"
        self.passes = 0  # passes in a row
        self.fails = 0  # counted (outside grace) failures in a row
        self.late = 0  # late timeouts since the last pass (the first ``fall`` not counted)
        self.up_since_start = False  # turned healthy since the last (re)start: grace over
        self.last: CheckOutcome | None = None
        self.reason = "no check result yet"

    def progress(self) -> str:
        """Where a tracker without a verdict stands, for people."""
        if self.last is None:
            return self.reason  # no result yet (since the start or the restart)
        if self.last.passed:
            return f"{self.passes} of {self.rise} passes so far: {self.last.detail}"
        return f"failing, {self.fails} of {self.fall} failures counted: {self.last.detail}"

    def in_grace(self, now: float) -> bool:
        """True while failures do not count: within ``grace`` seconds of the last start and
        not yet healthy since it."""
        return not self.up_since_start and now - self.started_at < self.grace

    def restarted(self, now: float) -> Transition | None:
        """A new start of the service: no verdict until checks say so, grace from ``now``.

        Returns the transition to ``starting`` when the state was another one."""
        self.started_at = now
        self.passes = self.fails = self.late = 0
        self.up_since_start = False
        self.last = None
        wait = "a passing check" if self.rise == 1 else f"{self.rise} passing checks in a row"
        reason = f"restarted; waiting for {wait}"
        return self._go("starting", reason, refresh=True)

    def record(self, outcome: CheckOutcome, now: float) -> Transition | None:
        """Count one result taken at ``now`` with no lag measured (:meth:`judge` with lag 0);
        a :class:`Transition` only when the state changes."""
        return self.judge(outcome, now, 0.0).transition

    def judge(self, outcome: CheckOutcome, now: float, lag: float) -> Judgement:
        """Count one result taken at ``now``, the agent having been ``lag`` seconds late while
        the check ran: a late timeout is not counted, within the bound (module docstring)."""
        lagged = outcome.status == "timeout" and lag > self.timeout
        event = self._classify(outcome, now, lagged)
        if event == "late":
            return self._late_note(lag, counted=False)
        self.last = outcome
        said = self._late_note(lag, counted=True) if lagged else Judgement()
        new = _TRANSITIONS.get((self.state, event), self.state)
        change = None
        if event == "rise":
            self.up_since_start = True
            # A pass keeps the reason fresh while healthy: status shows the latest detail.
            reason = f"{self._in_a_row(self.passes, 'passed')} (rise {self.rise}): "
            change = self._go(new, reason + outcome.detail, refresh=self.state == "healthy")
        elif event == "fall":
            reason = f"{self._in_a_row(self.fails, 'failed')} (fall {self.fall}): "
            change = self._go(new, reason + outcome.detail, refresh=self.state == "unhealthy")
        return Judgement(change, said.event, said.note)

    def _classify(self, outcome: CheckOutcome, now: float, lagged: bool) -> Event:
        """Update the counters for one result (``lagged``: a timeout while the agent was
        later than the timeout) and name the event it is."""
        if lagged:
            self.late += 1
            if self.late <= self.fall:
                return "late"  # neither a failure nor a pass: the counters stay
        if outcome.passed:  # the service answered: lag may excuse timeouts again
            self.passes, self.fails, self.late = self.passes + 1, 0, 0
            return "rise" if self.passes >= self.rise else "pass"
        self.passes = 0
        if self.in_grace(now):
            return "ignored"
        self.fails += 1
        return "fall" if self.fails >= self.fall else "fail"

    def _late_note(self, lag: float, *, counted: bool) -> Judgement:
        """What to say about a late timeout: an event for the first one since a pass and for
        the first one counted past the bound, a log line for the others."""
        late = f"timed out while the agent was {_ms(lag)} late (timeout {_ms(self.timeout)})"
        if counted:
            text = (
                f"{late}: taken as a failure, as {self.fall} late results since the last pass "
                "went uncounted already (lag must not hide a dead service)"
            )
            first = self.late == self.fall + 1
        else:
            text = (
                f"{late}; not counted ({self.late} of at most {self.fall} between passes): "
                "waiting for a check that runs on time"
            )
            first = self.late == 1
        return Judgement(event=text) if first else Judgement(note=text)

    @staticmethod
    def _in_a_row(n: int, verb: str) -> str:
        return f"1 {verb} check" if n == 1 else f"{n} {verb} checks in a row"

    def _go(self, new: HealthState, reason: str, refresh: bool = False) -> Transition | None:
        if new == self.state:
            if refresh:
                self.reason = reason
            return None
        old, self.state, self.reason = self.state, new, reason
        return Transition(old, new, reason)


class InstanceHealth:
    """The health of one instance from the trackers of all its checks (index = check index).

    ``unhealthy`` when any check is (the reason is the first unhealthy check's), ``healthy``
    when all are (or there are none), ``starting`` otherwise. :meth:`record` and
    :meth:`restarted` return a :class:`Transition` of the aggregate only when it changes;
    :meth:`judge` returns it in a :class:`Judgement`, with what to say about a late result.
    """

    def __init__(self, trackers: Sequence[HealthTracker]) -> None:
        self.trackers = list(trackers)
        self.state: HealthState = self._state()

    @classmethod
    def create(cls, checks: Sequence[CheckTiming], started_at: float) -> InstanceHealth:
        """One tracker per check (its rise, fall, grace and timeout), all started at
        ``started_at``."""
        return cls([HealthTracker(c.rise, c.fall, c.grace, started_at, c.timeout) for c in checks])

    def _state(self) -> HealthState:
        states = [t.state for t in self.trackers]
        if "unhealthy" in states:
            return "unhealthy"
        if all(s == "healthy" for s in states):
            return "healthy"
        return "starting"

    @property
    def reason(self) -> str:
        """Why the instance is in its state, for people (a failing check's reason first)."""
        if not self.trackers:
            return "no health checks: running counts as healthy"
        for i, tracker in enumerate(self.trackers):
            if tracker.state == "unhealthy":
                return self._label(i, tracker.reason)
        if self.state == "healthy":
            if len(self.trackers) == 1:
                return self.trackers[0].reason
            return f"all {len(self.trackers)} checks pass"
        waiting = [i for i, t in enumerate(self.trackers) if t.state == "starting"]
        return self._label(waiting[0], self.trackers[waiting[0]].progress()) + (
            f" (and {len(waiting) - 1} more without a verdict)" if len(waiting) > 1 else ""
        )

    def _label(self, index: int, text: str) -> str:
        return text if len(self.trackers) == 1 else f"check {index + 1}: {text}"

    def record(self, index: int, outcome: CheckOutcome, now: float) -> Transition | None:
        """Feed check ``index`` one result; the aggregate transition if the aggregate changed."""
        return self.judge(index, outcome, now, 0.0).transition

    def judge(self, index: int, outcome: CheckOutcome, now: float, lag: float) -> Judgement:
        """Feed check ``index`` one result taken with the agent ``lag`` seconds late
        (:meth:`HealthTracker.judge`): the aggregate transition if the aggregate changed, and
        what to say about a late result, naming the check (``the check``, ``check 2``)."""
        said = self.trackers[index].judge(outcome, now, lag)
        check = "the check" if len(self.trackers) == 1 else f"check {index + 1}"
        event = f"{check} {said.event}" if said.event is not None else None
        note = f"{check} {said.note}" if said.note is not None else None
        return Judgement(self._update(), event, note)

    def restarted(self, now: float) -> Transition | None:
        """Every check starts over (grace from ``now``); the aggregate transition, if any."""
        for tracker in self.trackers:
            tracker.restarted(now)
        return self._update()

    def _update(self) -> Transition | None:
        new = self._state()
        if new == self.state:
            return None
        old, self.state = self.state, new
        return Transition(old, new, self.reason)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"
