"""The agent's own lateness: the pure stall log, the watch over each check run (a real event
loop), and what a result judged with that lag does to a service's verdict."""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.agent.instances import LocalService
from corral.clocks import MonotonicClock
from corral.core.clock import ManualClock
from corral.core.health import CheckOutcome
from corral.core.stall import HORIZON, StallLog
from corral.drivers.base import NodeContext
from corral.spec import HealthCheck

HUNG = CheckOutcome("timeout", "no answer within 0.2s", 0.2)
NODE = NodeContext("n1", "127.0.0.1")

# --- the pure log ---------------------------------------------------------------------------


def test_timers_on_time_are_no_lag() -> None:
    log = StallLog(threshold=0.05)
    for i in range(100):
        assert log.late(i * 0.2, i * 0.2 + 0.01) == pytest.approx(0.01)
    assert log.late(20.0, 19.99) == 0.0  # a timer run early is not late either
    assert log.lag_during(0.0, 25.0) == 0.0


def test_a_frozen_agent_is_seen_by_the_result_handled_first_after_resume() -> None:
    """A check started at 1.7 is watched by a tick due at 1.75; the node froze at 1.72 and
    resumed at 11.8, where the tick (or the watch's stop) ran."""
    log = StallLog()
    assert log.late(1.75, 11.8) == pytest.approx(10.05)
    assert log.lag_during(1.7, 11.8) == pytest.approx(10.05)
    assert log.lag_during(11.8, 12.5) == 0.0  # started on resume: run on time


def test_only_the_part_of_a_stall_inside_the_window_counts() -> None:
    log = StallLog()
    log.late(0.0, 5.0)
    assert log.lag_during(1.0, 2.0) == pytest.approx(1.0)
    assert log.lag_during(4.0, 6.0) == pytest.approx(1.0)
    assert log.lag_during(5.1, 6.0) == 0.0  # after it
    assert log.lag_during(-2.0, -1.0) == 0.0  # before it


def test_lateness_under_the_threshold_and_old_lateness_are_not_remembered() -> None:
    log = StallLog(threshold=0.05)
    log.late(1.0, 1.04)
    assert log.lag_during(0.0, 2.0) == 0.0
    log.late(2.0, 12.0)
    log.late(12.0 + HORIZON + 1, 12.0 + HORIZON + 2)
    assert log.lag_during(0.0, 12.0) == 0.0  # forgotten


@given(st.lists(st.tuples(st.floats(0, 100), st.floats(0, 5)), max_size=40), st.floats(0, 100))
def test_lag_is_within_the_window_and_the_longest_lateness(
    timers: list[tuple[float, float]], start: float
) -> None:
    log = StallLog(threshold=0.05)
    for due, lateness in sorted(timers):
        log.late(due, due + lateness)
    end = start + 2.0
    lag = log.lag_during(start, end)
    assert 0.0 <= lag <= 2.0 + 1e-9
    assert lag <= max((lateness for _, lateness in timers), default=0.0) + 1e-9
    whole = [x for d, x in timers if x > 0.05 and start <= d and d + x <= end]  # inside
    assert lag >= max(whole, default=0.0) - 1e-9


# --- the watch over a run (a real event loop, the real clock) -------------------------------


class BlockingChecker:
    """Blocks the event loop for ``block`` seconds mid-check (a long callback, a starved
    process: nothing on the loop runs), then answers ``answer``, ``after`` seconds later."""

    def __init__(self, block: float, answer: CheckOutcome, after: float = 0.0) -> None:
        self.block, self.answer, self.after = block, answer, after

    async def __call__(self, check: HealthCheck, node: NodeContext) -> CheckOutcome:
        await asyncio.sleep(0.01)
        time.sleep(self.block)  # noqa: ASYNC251 (the loop itself stops, as a starved agent's)
        await asyncio.sleep(self.after)
        return self.answer


def watched(stalls: StallLog | None) -> LocalService:
    check = HealthCheck(tcp="x:1", rise=1, fall=2, grace=0, timeout=0.2)
    return LocalService("web", None, [check], stalls=stalls)  # type: ignore[arg-type]


@pytest.mark.parametrize("after", [0.0, 0.1], ids=["answered-at-once", "answered-later"])
async def test_a_timeout_comes_with_the_lag_of_the_loop_during_its_run(after: float) -> None:
    """The loop stopped 0.3 s during the check: measured at least 0.3 s - a quarter of the
    0.2 s timeout (the watch's step), whatever else the machine does (only a lower bound is
    asserted: a busy machine can only make the loop later). Answered at once after the
    stop, the watch's stop finds its tick overdue; answered later, the tick ran late."""
    svc = watched(StallLog())
    checker = BlockingChecker(0.3, HUNG, after)
    outcome, lag = await svc._run(svc.checks[0], NODE, checker, MonotonicClock())
    assert outcome == HUNG and lag >= 0.3 - 0.05 - 1e-6


async def test_only_a_timeout_is_given_a_lag() -> None:
    """The lag of any other result is not measured: the core counts it whatever it was."""
    refused = CheckOutcome("critical", "connection refused")
    svc = watched(StallLog())
    assert await svc._run(svc.checks[0], NODE, BlockingChecker(0.3, refused), MonotonicClock()) == (
        refused,
        0.0,
    )
    unwatched = watched(None)  # no stall log: nothing measured
    outcome, lag = await unwatched._run(
        unwatched.checks[0], NODE, BlockingChecker(0.3, HUNG), MonotonicClock()
    )
    assert (outcome, lag) == (HUNG, 0.0)


async def test_no_lag_is_made_up_while_the_clock_says_the_agent_was_on_time() -> None:
    """Time injected: the agent's clock does not move during the check (whatever the real
    loop does), so the watch measures no lateness and the timeout counts in full."""
    stalls = StallLog()
    svc = watched(stalls)
    clock = ManualClock(50.0)
    checker = BlockingChecker(0.0, HUNG, after=0.1)  # the watch's ticks run meanwhile
    assert await svc._run(svc.checks[0], NODE, checker, clock) == (HUNG, 0.0)
    assert stalls.lag_during(0.0, 100.0) == 0.0


# --- judging with the lag (injected time) ---------------------------------------------------


async def test_a_timeout_while_the_agent_was_frozen_waits_for_a_check_on_time() -> None:
    """A frozen node resumed: the check in flight "timed out" because the agent itself did not
    run; that result does not count and the event says why. A timeout with the agent on time
    counts."""
    clock = ManualClock(100.0)
    svc = watched(StallLog())
    svc.reset(clock.now())
    verdicts: list[str] = []
    told: list[str] = []

    async def on_change(s: LocalService) -> None:
        verdicts.append(s.verdict)

    async def on_event(s: LocalService, text: str) -> None:
        told.append(f"{s.name}: {text}")

    svc.on_event = on_event
    await svc._judge(0, CheckOutcome("ok", "up"), 0.0, clock, on_change)
    assert verdicts == ["healthy"]
    clock.advance(10.0)
    await svc._judge(0, HUNG, 10.0, clock, on_change)
    await svc._judge(0, HUNG, 10.0, clock, on_change)  # fall 2: would be unhealthy
    assert verdicts == ["healthy"]
    assert told == [
        "web: the check timed out while the agent was 10000 ms late (timeout 200 ms); not "
        "counted (1 of at most 2 between passes): waiting for a check that runs on time"
    ]
    await svc._judge(0, CheckOutcome("ok", "up"), 0.0, clock, on_change)
    clock.advance(0.5)
    await svc._judge(0, HUNG, 0.01, clock, on_change)  # the agent was on time: counted
    await svc._judge(0, HUNG, 0.01, clock, on_change)
    assert verdicts == ["healthy", "unhealthy"]
