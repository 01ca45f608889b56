"""The pure stall log: which check windows overlapped a stall of the agent itself."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from corral.core.stall import StallLog


def test_regular_beats_are_no_stall() -> None:
    log = StallLog(threshold=0.5)
    for i in range(100):
        log.beat(i * 0.2)
    assert log.lag_during(0.0, 19.8) == 0.0


def test_a_frozen_agent_is_seen_by_the_first_result_judged_after_resume() -> None:
    log = StallLog(threshold=0.5)
    for i in range(10):
        log.beat(i * 0.2)  # last beat at 1.8
    # frozen from 1.8 to 11.8; a check started at 1.7 is judged at 11.8 before any beat
    assert log.lag_during(1.7, 11.8) == 10.0
    for i in range(59, 66):
        log.beat(i * 0.2)  # awake again from 11.8
    assert log.lag_during(1.7, 11.8) == 10.0  # remembered after the beats too
    assert log.lag_during(12.1, 13.0) == 0.0  # a check started after the resume is judged


def test_a_stall_outside_the_window_does_not_count() -> None:
    log = StallLog(threshold=0.5)
    log.beat(0.0)
    log.beat(5.0)  # stalled 0-5
    log.beat(5.2)
    log.beat(5.4)
    log.beat(5.6)
    assert log.lag_during(5.1, 5.9) == 0.0
    assert log.lag_during(4.0, 5.1) == 5.0


@given(st.lists(st.floats(min_value=0.0, max_value=3.0), min_size=1, max_size=50))
def test_lag_never_exceeds_the_longest_gap(gaps: list[float]) -> None:
    log = StallLog(threshold=0.5)
    now = 0.0
    log.beat(now)
    for gap in gaps:
        now += gap
        log.beat(now)
    longest = max(gaps)
    lag = log.lag_during(0.0, now)
    assert lag <= longest + 1e-9
    assert (lag > 0) == (longest > 0.5)


async def test_a_check_failure_during_a_stall_of_the_agent_is_dropped() -> None:
    """A frozen node resumed: the check in flight "timed out" because the agent itself did not
    run; that result is not judged (rule 7). A failure with the agent awake is."""
    from corral.agent.instances import LocalService
    from corral.core.clock import ManualClock
    from corral.core.health import CheckOutcome
    from corral.spec import HealthCheck

    class NoDriver:  # the service's driver is not used by _judge
        pass

    clock = ManualClock(100.0)
    stalls = StallLog(threshold=1.0)
    check = HealthCheck(tcp="x:1", rise=1, fall=1, grace=0, timeout=0.5)
    svc = LocalService("web", NoDriver(), [check], stalls=stalls)  # type: ignore[arg-type]
    svc.reset(clock.now())
    verdicts: list[str] = []

    async def on_change(s: LocalService) -> None:
        verdicts.append(s.verdict)

    stalls.beat(100.0)
    stalls.beat(100.4)
    hung = CheckOutcome("timeout", "no answer within 0.5s", 0.5)
    clock.advance(10.0)  # frozen from 100.4 to 110.4; judged before any beat
    await svc._judge(0, hung, 100.3, clock, on_change)
    assert verdicts == [] and svc.stalled_results == 1
    stalls.beat(110.4)
    stalls.beat(110.8)
    clock.advance(0.5)
    await svc._judge(0, hung, 110.5, clock, on_change)  # the agent was awake: judged
    assert verdicts == ["unhealthy"]
