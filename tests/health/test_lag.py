"""Slow is not dead (pure): a timeout while the agent itself was late does not count, up to a
bound; every other result counts whatever the lag (``core/health.py``, safety rule 7)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.core.health import CHECK_STATUSES, CheckOutcome, HealthTracker, InstanceHealth
from corral.spec import HealthCheck

OK = CheckOutcome("ok", "HTTP 200", 0.01)
BAD = CheckOutcome("critical", "connection refused", 0.01)
HUNG = CheckOutcome("timeout", "timed out after 0.5s", 0.5)
LATE = 0.9  # seconds the agent was late: more than the 0.5 s timeout


def healthy(fall: int = 2) -> HealthTracker:
    """A tracker of a check with a 0.5 s timeout that has turned healthy (grace over)."""
    tracker = HealthTracker(rise=1, fall=fall, grace=0, started_at=0, timeout=0.5)
    tracker.record(OK, 1)
    assert tracker.state == "healthy"
    return tracker


def test_a_timeout_while_the_agent_was_late_is_not_counted() -> None:
    tracker = healthy()
    judged = tracker.judge(HUNG, 2, lag=LATE)
    assert judged.transition is None and tracker.fails == 0 and tracker.late == 1
    assert judged.event == (
        "timed out while the agent was 900 ms late (timeout 500 ms); not counted "
        "(1 of at most 2 between passes): waiting for a check that runs on time"
    )
    judged = tracker.judge(HUNG, 3, lag=LATE)  # fall is 2: two counted would be unhealthy
    assert judged.transition is None and tracker.state == "healthy" and tracker.fails == 0
    assert judged.event is None and judged.note is not None  # one event, then log lines
    assert tracker.reason.endswith("HTTP 200")  # the verdict and its reason stay


@pytest.mark.parametrize("lag", [0.0, 0.3, 0.5])
def test_a_timeout_with_the_agent_on_time_counts(lag: float) -> None:
    """A lag of at most the timeout does not excuse it: the service was slow."""
    tracker = healthy()
    assert tracker.judge(HUNG, 2, lag).transition is None and tracker.fails == 1
    judged = tracker.judge(HUNG, 3, lag)
    assert judged.transition is not None and judged.transition.new == "unhealthy"
    assert judged.event is None and judged.note is None


@pytest.mark.parametrize("status", ["critical", "unknown"])
def test_a_failure_that_is_not_a_timeout_counts_whatever_the_lag(status: str) -> None:
    """A refused connection, an HTTP 500, a plugin's CRITICAL: the service's own answer."""
    tracker = healthy()
    failed = CheckOutcome(status, "connection refused")  # type: ignore[arg-type]
    assert tracker.judge(failed, 2, lag=60.0).transition is None and tracker.fails == 1
    judged = tracker.judge(failed, 3, lag=60.0)
    assert judged.transition is not None and judged.transition.new == "unhealthy"
    assert judged.event is None and tracker.late == 0


def test_a_late_result_is_neither_a_failure_nor_a_pass() -> None:
    """It breaks no run: a pass, a late timeout, a pass are two passes in a row; a failure,
    a late timeout, a failure are two failures in a row."""
    tracker = HealthTracker(rise=2, fall=2, grace=0, started_at=0, timeout=0.5)
    tracker.judge(OK, 1, 0.0)
    tracker.judge(HUNG, 2, LATE)
    judged = tracker.judge(OK, 3, 0.0)
    assert judged.transition is not None and judged.transition.new == "healthy"
    tracker.judge(BAD, 4, 0.0)
    tracker.judge(HUNG, 5, LATE)
    assert tracker.state == "healthy" and tracker.fails == 1
    judged = tracker.judge(BAD, 6, 0.0)
    assert judged.transition is not None and judged.transition.new == "unhealthy"


def test_at_most_fall_late_results_go_uncounted_between_passes() -> None:
    """The bound: a service that hangs while the agent stays late is unhealthy after 2 x fall
    results, and the events say the lag no longer excuses it."""
    tracker = healthy(fall=2)
    said = [tracker.judge(HUNG, t, LATE) for t in (2, 3, 4)]
    assert [j.transition for j in said] == [None, None, None]
    assert tracker.fails == 1 and tracker.late == 3  # the third one counted
    assert said[2].event == (
        "timed out while the agent was 900 ms late (timeout 500 ms): taken as a failure, "
        "as 2 late results since the last pass went uncounted already (lag must not hide a "
        "dead service)"
    )
    judged = tracker.judge(HUNG, 5, LATE)  # still counted: no check passed since
    assert judged.transition is not None and judged.transition.new == "unhealthy"
    assert judged.event is None and judged.note is not None and "taken as a failure" in judged.note


def test_a_pass_renews_the_allowance() -> None:
    """The service answered: late timeouts after it are excused again, with a new event (an
    agent late now and then never has a healthy service restarted)."""
    tracker = healthy(fall=2)
    for t in range(2, 20, 3):
        assert tracker.judge(HUNG, t, LATE).event is not None  # the first since the pass
        assert tracker.judge(HUNG, t + 1, LATE).note is not None
        tracker.judge(OK, t + 2, 0.0)
    assert tracker.state == "healthy" and tracker.fails == 0


@pytest.mark.parametrize("failed", [BAD, HUNG], ids=["refused", "slow"])
def test_a_failure_does_not_renew_the_allowance(failed: CheckOutcome) -> None:
    """A dead service answering now "refused" (or timing out with the agent on time), now
    nothing while the agent is late, gets ``fall`` excused results in all, not ``fall`` after
    each failure."""
    tracker = healthy(fall=2)
    tracker.judge(HUNG, 2, LATE)
    tracker.judge(HUNG, 3, LATE)
    tracker.judge(failed, 4, 0.0)
    assert tracker.fails == 1 and tracker.late == 2
    judged = tracker.judge(HUNG, 5, LATE)  # the third late one since the last pass: counted
    assert judged.transition is not None and judged.transition.new == "unhealthy"
    assert judged.event is not None and "taken as a failure" in judged.event


def test_a_restart_ends_a_run_of_late_results() -> None:
    tracker = healthy(fall=1)
    tracker.judge(HUNG, 2, LATE)
    tracker.restarted(3)
    assert tracker.late == 0
    assert tracker.judge(HUNG, 4, LATE).event is not None  # a new run: excused again


def test_without_a_timeout_nothing_is_late() -> None:
    tracker = HealthTracker(rise=1, fall=1, grace=0, started_at=0)  # no timeout given
    tracker.record(OK, 1)
    judged = tracker.judge(HUNG, 2, lag=1e9)
    assert judged.transition is not None and judged.transition.new == "unhealthy"


def test_the_instance_names_the_late_check_and_takes_each_checks_timeout() -> None:
    one = InstanceHealth.create([HealthCheck(tcp="x:1", timeout=0.5, rise=1)], started_at=0)
    one.judge(0, OK, 1, 0.0)
    judged = one.judge(0, HUNG, 2, LATE)
    assert judged.transition is None and judged.event is not None
    assert judged.event.startswith("the check timed out while the agent was 900 ms late")
    two = InstanceHealth.create(
        [HealthCheck(tcp="x:1", timeout=0.5), HealthCheck(http="http://x/", timeout=2.0)],
        started_at=0,
    )
    judged = two.judge(1, HUNG, 1, LATE)  # 0.9 s late is within check 2's 2 s timeout
    assert judged.event is None and two.trackers[1].late == 0
    judged = two.judge(0, HUNG, 1, LATE)
    assert judged.event is not None and judged.event.startswith("check 1 timed out")


# --- properties -----------------------------------------------------------------------------

results = st.lists(st.tuples(st.sampled_from(CHECK_STATUSES), st.booleans()), max_size=60)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 4), st.integers(1, 4), results)
def test_lag_only_removes_results_from_the_count_within_the_bound(
    rise: int, fall: int, script: list[tuple[str, bool]]
) -> None:
    """A tracker judging results with lag is, at every step, the tracker that saw only the
    results that count: all but the first ``fall`` timeouts with lag after each pass (the
    definition, computed here without the tracker)."""
    judged = HealthTracker(rise, fall, 0.0, 0.0, timeout=0.5)
    reference = HealthTracker(rise, fall, 0.0, 0.0, timeout=0.5)
    run = 0
    for i, (status, lagged) in enumerate(script):
        outcome = CheckOutcome(status, f"{status} {i}")  # type: ignore[arg-type]
        late = status == "timeout" and lagged
        run = 0 if outcome.passed else run + late
        judged.judge(outcome, float(i), LATE if lagged else 0.1)
        if not (late and run <= fall):
            reference.record(outcome, float(i))
        assert (judged.state, judged.passes, judged.fails) == (
            reference.state,
            reference.passes,
            reference.fails,
        )


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 5), st.lists(st.sampled_from(["timeout", "critical"]), min_size=10))
def test_a_dead_service_is_unhealthy_within_twice_fall_results_whatever_the_lag(
    fall: int, statuses: list[str]
) -> None:
    """Every result fails and the agent is always late: unhealthy after at most 2 x fall."""
    tracker = healthy(fall)
    for i, status in enumerate(statuses[: 2 * fall]):
        tracker.judge(CheckOutcome(status, "dead"), 2.0 + i, lag=60.0)  # type: ignore[arg-type]
    assert tracker.state == "unhealthy"
