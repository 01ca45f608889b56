"""The pure health core: rise/fall/grace state machine and the per-instance aggregate."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.core.health import (
    _TRANSITIONS,
    CHECK_STATUSES,
    CheckOutcome,
    HealthTracker,
    InstanceHealth,
    Transition,
)
from corral.spec import HealthCheck

OK = CheckOutcome("ok", "HTTP 200 from http://n1:5000/v3", 0.01)
WARN = CheckOutcome("warning", "DISK WARNING - 85% used", 0.01)
BAD = CheckOutcome("critical", "HTTP 500 from http://n1:5000/v3", 0.01)
HUNG = CheckOutcome("timeout", "timed out after 0.5s: http://n1:5000/v3", 0.5)


def feed(tracker: HealthTracker, outcomes: list[CheckOutcome], t0: float = 100.0) -> list[str]:
    """Record ``outcomes`` one second apart; the state after each."""
    states: list[str] = []
    for i, outcome in enumerate(outcomes):
        tracker.record(outcome, t0 + i)
        states.append(tracker.state)
    return states


def test_passed_means_ok_or_warning() -> None:
    assert [CheckOutcome(s, "").passed for s in CHECK_STATUSES] == [
        True,
        True,
        False,
        False,
        False,
    ]


def test_transition_table_is_explicit_and_complete() -> None:
    assert _TRANSITIONS == {
        ("starting", "rise"): "healthy",
        ("starting", "fall"): "unhealthy",
        ("healthy", "fall"): "unhealthy",
        ("unhealthy", "rise"): "healthy",
    }


def test_rise_passes_in_a_row_make_it_healthy_with_a_reason() -> None:
    tracker = HealthTracker(rise=2, fall=2, grace=0, started_at=0)
    assert tracker.state == "starting"
    assert tracker.record(OK, 1) is None
    change = tracker.record(OK, 2)
    assert change == Transition(
        "starting",
        "healthy",
        "2 passed checks in a row (rise 2): HTTP 200 from http://n1:5000/v3",
    )
    assert tracker.record(OK, 3) is None  # only changes are reported


def test_fall_failures_in_a_row_make_it_unhealthy_with_a_reason() -> None:
    tracker = HealthTracker(rise=1, fall=2, grace=0, started_at=0)
    tracker.record(OK, 1)
    assert tracker.record(BAD, 2) is None
    change = tracker.record(BAD, 3)
    assert change is not None and (change.old, change.new) == ("healthy", "unhealthy")
    assert change.reason == "2 failed checks in a row (fall 2): HTTP 500 from http://n1:5000/v3"
    assert tracker.reason == change.reason


def test_single_result_reasons_are_not_plural() -> None:
    tracker = HealthTracker(rise=1, fall=1, grace=0, started_at=0)
    up = tracker.record(OK, 1)
    down = tracker.record(HUNG, 2)
    assert up is not None and up.reason.startswith("1 passed check (rise 1): ")
    assert down is not None and down.reason == (
        "1 failed check (fall 1): timed out after 0.5s: http://n1:5000/v3"
    )


def test_an_interrupted_run_starts_over() -> None:
    tracker = HealthTracker(rise=3, fall=3, grace=0, started_at=0)
    states = feed(tracker, [OK, OK, BAD, OK, OK, OK, BAD, BAD, OK, BAD, BAD, BAD])
    assert states == ["starting"] * 5 + ["healthy"] * 6 + ["unhealthy"]


def test_warning_passes() -> None:
    tracker = HealthTracker(rise=2, fall=1, grace=0, started_at=0)
    assert feed(tracker, [WARN, WARN]) == ["starting", "healthy"]


def test_unknown_and_timeout_fail() -> None:
    tracker = HealthTracker(rise=1, fall=2, grace=0, started_at=0)
    assert feed(tracker, [CheckOutcome("unknown", "?"), HUNG]) == ["starting", "unhealthy"]


def test_failures_within_grace_do_not_count() -> None:
    tracker = HealthTracker(rise=2, fall=2, grace=10, started_at=100)
    for t in range(100, 110):
        assert tracker.record(BAD, t) is None
    assert tracker.state == "starting" and tracker.fails == 0
    assert tracker.record(BAD, 110) is None  # grace is over: the first counted failure
    change = tracker.record(BAD, 111)
    assert change is not None and change.new == "unhealthy"


def test_progress_while_starting() -> None:
    tracker = HealthTracker(rise=2, fall=3, grace=10, started_at=0)
    assert tracker.progress() == "no check result yet"
    tracker.record(BAD, 1)
    assert tracker.progress() == "failing, 0 of 3 failures counted: HTTP 500 from http://n1:5000/v3"
    tracker.record(BAD, 11)
    assert tracker.progress().startswith("failing, 1 of 3 failures counted: ")


def test_a_failure_within_grace_breaks_a_run_of_passes() -> None:
    tracker = HealthTracker(rise=2, fall=1, grace=10, started_at=0)
    assert feed(tracker, [OK, BAD, OK, OK], t0=0) == ["starting"] * 3 + ["healthy"]


def test_passes_within_grace_count() -> None:
    tracker = HealthTracker(rise=2, fall=1, grace=60, started_at=0)
    assert feed(tracker, [OK, OK], t0=1) == ["starting", "healthy"]


def test_restarted_resets_to_starting_and_restarts_grace() -> None:
    tracker = HealthTracker(rise=1, fall=1, grace=5, started_at=0)
    tracker.record(BAD, 10)
    assert tracker.state == "unhealthy"
    change = tracker.restarted(20)
    assert change is not None and (change.old, change.new) == ("unhealthy", "starting")
    assert change.reason == "restarted; waiting for a passing check"
    assert tracker.last is None and tracker.passes == tracker.fails == 0
    assert tracker.record(BAD, 24) is None  # within the new grace
    assert tracker.record(BAD, 25) == Transition(
        "starting", "unhealthy", "1 failed check (fall 1): HTTP 500 from http://n1:5000/v3"
    )


def test_restarted_while_starting_reports_nothing() -> None:
    tracker = HealthTracker(rise=2, fall=1, grace=0, started_at=0)
    assert tracker.restarted(5) is None
    assert tracker.reason == "restarted; waiting for 2 passing checks in a row"


@pytest.mark.parametrize(("rise", "fall", "grace"), [(0, 1, 0), (1, 0, 0), (1, 1, -1)])
def test_bad_parameters_are_refused(rise: int, fall: int, grace: float) -> None:
    with pytest.raises(ValueError):
        HealthTracker(rise, fall, grace, 0)


# --- the aggregate --------------------------------------------------------------------------


def test_instance_is_healthy_only_when_every_check_is() -> None:
    health = InstanceHealth.create(
        [HealthCheck(http="http://x/", rise=1), HealthCheck(tcp="x:1", rise=2)], started_at=0
    )
    assert health.state == "starting"
    assert health.reason == "check 1: no check result yet (and 1 more without a verdict)"
    assert health.record(0, OK, 1) is None
    assert health.reason == "check 2: no check result yet"
    assert health.record(1, OK, 1) is None
    assert health.reason == "check 2: 1 of 2 passes so far: HTTP 200 from http://n1:5000/v3"
    change = health.record(1, OK, 2)
    assert change == Transition("starting", "healthy", "all 2 checks pass")


def test_instance_is_unhealthy_when_any_check_is_with_that_checks_reason() -> None:
    health = InstanceHealth.create(
        [HealthCheck(tcp="x:1", rise=1, fall=1), HealthCheck(http="http://x/", rise=1, fall=1)],
        started_at=0,
    )
    health.record(0, OK, 1)
    health.record(1, OK, 1)
    change = health.record(1, BAD, 2)
    assert change is not None and (change.old, change.new) == ("healthy", "unhealthy")
    assert change.reason == "check 2: 1 failed check (fall 1): HTTP 500 from http://n1:5000/v3"
    assert health.record(0, BAD, 3) is None  # still unhealthy: no new transition
    assert health.reason.startswith("check 1: ")  # the first failing check explains it
    health.record(0, OK, 4)
    assert health.state == "unhealthy"
    assert health.record(1, OK, 5) == Transition("unhealthy", "healthy", "all 2 checks pass")


def test_one_check_reason_is_not_labelled() -> None:
    health = InstanceHealth.create([HealthCheck(tcp="x:1", fall=1, grace=0)], started_at=0)
    change = health.record(0, BAD, 1)
    assert change is not None and change.reason.startswith("1 failed check (fall 1): HTTP 500")


def test_no_checks_is_healthy() -> None:
    health = InstanceHealth([])
    assert health.state == "healthy"
    assert "no health checks" in health.reason
    assert health.restarted(5) is None


def test_instance_restarted() -> None:
    health = InstanceHealth.create([HealthCheck(tcp="x:1", fall=1, grace=3)], started_at=0)
    health.record(0, BAD, 10)
    change = health.restarted(20)
    assert change is not None and (change.old, change.new) == ("unhealthy", "starting")
    assert health.record(0, BAD, 21) is None and health.state == "starting"


# --- properties -----------------------------------------------------------------------------

statuses = st.sampled_from(CHECK_STATUSES)
steps = st.lists(
    st.tuples(statuses, st.floats(min_value=0, max_value=5, allow_nan=False)), max_size=60
)
params = st.tuples(
    st.integers(1, 5), st.integers(1, 5), st.floats(min_value=0, max_value=20, allow_nan=False)
)


def reference_counts(history: list[tuple[bool, bool]]) -> tuple[int, int]:
    """Passes in a row, and counted failures in a row, straight from the history of
    (passed, within grace): the definition the tracker must agree with."""
    passes = fails = 0
    for passed, _ in reversed(history):
        if not passed:
            break
        passes += 1
    for passed, in_grace in reversed(history):
        if passed or in_grace:
            break
        fails += 1
    return passes, fails


@settings(max_examples=300, deadline=None)
@given(params, steps)
def test_tracker_agrees_with_the_definition(
    p: tuple[int, int, float], script: list[tuple[str, float]]
) -> None:
    rise, fall, grace = p
    tracker = HealthTracker(rise, fall, grace, started_at=0.0)
    now, history = 0.0, []
    for status, gap in script:
        now += gap  # time never goes backwards
        before = tracker.state
        outcome = CheckOutcome(status, f"{status} at {now}")  # type: ignore[arg-type]
        in_grace = tracker.in_grace(now)  # before the result: was it up since the start?
        up_before = tracker.up_since_start
        change = tracker.record(outcome, now)
        assert in_grace == (now < grace and not up_before)
        history.append((outcome.passed, in_grace))
        passes, fails = reference_counts(history)
        assert (tracker.passes, tracker.fails) == (passes, fails)
        # A transition is returned exactly when the state changes, and says so.
        assert (change is not None) == (tracker.state != before)
        if change is not None:
            assert (change.old, change.new) == (before, tracker.state)
            assert change.reason.endswith(outcome.detail)
        # The state changes only after rise passes / fall counted failures in a row.
        if tracker.state != before and tracker.state == "healthy":
            assert passes >= rise and outcome.passed
        if tracker.state != before and tracker.state == "unhealthy":
            assert fails >= fall and not outcome.passed
        # ...and always does once they are there.
        if passes >= rise:
            assert tracker.state == "healthy"
        if fails >= fall:
            assert tracker.state == "unhealthy"


@settings(max_examples=300, deadline=None)
@given(params, steps, st.floats(min_value=0, max_value=100, allow_nan=False))
def test_never_unhealthy_within_grace_of_a_restart_unless_up_since(
    p: tuple[int, int, float], script: list[tuple[str, float]], restart_at: float
) -> None:
    rise, fall, grace = p
    tracker = HealthTracker(rise, fall, grace, started_at=0.0)
    now, restarted = 0.0, False
    for status, gap in script:
        now += gap
        if not restarted and now >= restart_at:
            tracker.restarted(now)
            restarted = True
        tracker.record(CheckOutcome(status, ""), now)  # type: ignore[arg-type]
        if now - tracker.started_at < grace and not tracker.up_since_start:
            assert tracker.state != "unhealthy"


@settings(max_examples=200, deadline=None)
@given(
    st.lists(params, min_size=1, max_size=4),
    st.lists(st.tuples(st.integers(0, 3), statuses), max_size=60),
)
def test_aggregate_is_a_function_of_the_check_states(
    timings: list[tuple[int, int, float]], script: list[tuple[int, str]]
) -> None:
    health = InstanceHealth([HealthTracker(r, f, g, 0.0) for r, f, g in timings])
    for step, (index, status) in enumerate(script):
        before = health.state
        change = health.record(index % len(timings), CheckOutcome(status, ""), float(step))  # type: ignore[arg-type]
        states = {t.state for t in health.trackers}
        expected = (
            "unhealthy"
            if "unhealthy" in states
            else "healthy"
            if states == {"healthy"}
            else "starting"
        )
        assert health.state == expected
        assert (change is not None) == (before != expected)


def test_the_start_grace_ends_at_the_first_healthy_verdict() -> None:
    """A service still starting is not failing; once it was up, a failure counts at once,
    however long the grace (detection of a service that was up is not slowed down)."""
    tracker = HealthTracker(rise=1, fall=1, grace=10, started_at=0)
    assert tracker.record(BAD, 0.2) is None  # not listening yet: not counted
    assert tracker.record(BAD, 0.4) is None
    assert tracker.state == "starting"
    change = tracker.record(OK, 0.6)
    assert change is not None and change.new == "healthy"
    change = tracker.record(BAD, 0.8)  # within 10 s of the start, but it was up: counts
    assert change is not None and change.new == "unhealthy"
    tracker.restarted(5.0)  # a new start: a new grace
    assert tracker.record(BAD, 5.2) is None and tracker.state == "starting"
