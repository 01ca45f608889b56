"""The check loops of one instance: schedule, bounded in-flight checks, transitions reported
through the callback, restart and stop. Real targets with a real clock (generous bounds), and
scripted checkers with a manual clock where timing does not matter."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

import corral.health.monitor as monitor_module
from corral.core.clock import ManualClock
from corral.core.health import CheckOutcome, Transition
from corral.drivers._procfs import group_members, read_stat
from corral.drivers.base import NodeContext
from corral.health.monitor import Monitor
from corral.spec import HealthCheck

from .conftest import HttpTarget

WAIT = 5.0  # generous bound for anything that should take well under a second

BAD = CheckOutcome("critical", "HTTP 500 from http://n1/")
GOOD = CheckOutcome("ok", "HTTP 200 from http://n1/")


class Recorder:
    """The ``on_transition`` callback: keeps every (resource, transition) and lets tests
    wait for the next one."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Transition]] = []
        self.queue: asyncio.Queue[Transition] = asyncio.Queue()
        self.hook: Callable[[Transition], Awaitable[None]] | None = None

    async def __call__(self, resource: str, transition: Transition) -> None:
        self.seen.append((resource, transition))
        self.queue.put_nowait(transition)
        if self.hook is not None:
            await self.hook(transition)

    async def next(self, timeout: float = WAIT) -> Transition:
        return await asyncio.wait_for(self.queue.get(), timeout)


def scripted(outcomes: list[CheckOutcome]) -> Callable[..., Awaitable[CheckOutcome]]:
    """A checker that returns ``outcomes`` in turn, then repeats the last one."""
    remaining = list(outcomes)

    async def checker(check: HealthCheck, node: NodeContext) -> CheckOutcome:
        await asyncio.sleep(0)
        return remaining.pop(0) if len(remaining) > 1 else remaining[0]

    return checker


async def until(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_real_http_service_up_500_up_hung(http_target: HttpTarget, node: NodeContext) -> None:
    check = HealthCheck(http=http_target.url("/switch"), interval=0.05, timeout=0.2)
    recorder = Recorder()
    monitor = Monitor("keystone", [check], node, recorder)
    monitor.start()
    try:
        first = await recorder.next()
        assert (first.old, first.new) == ("starting", "healthy")

        http_target.switch.status = 500
        down = await recorder.next()
        assert down.new == "unhealthy"
        assert down.reason == (
            f"2 failed checks in a row (fall 2): HTTP 500 from {http_target.url('/switch')} "
            "(expected 200)"
        )
        assert monitor.state == "unhealthy" and monitor.reason == down.reason

        http_target.switch.status = 200
        assert (await recorder.next()).new == "healthy"

        http_target.switch.hang = True
        hung_at = time.monotonic()
        hung = await recorder.next()
        detected_after = time.monotonic() - hung_at
        assert hung.new == "unhealthy" and "timed out after 0.2s" in hung.reason
        # fall x max(interval, timeout) + interval = 0.45 s; bound loosely for slow machines.
        assert detected_after < 1.5
        assert {r for r, _ in recorder.seen} == {"keystone"}
    finally:
        await monitor.stop()


async def test_a_hung_check_is_not_stacked(
    node: NodeContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    in_flight = peak = calls = 0
    never = asyncio.Event()

    async def hangs(check: HealthCheck, node: NodeContext) -> CheckOutcome:
        nonlocal in_flight, peak, calls
        calls += 1
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            await never.wait()
        finally:
            in_flight -= 1
        raise AssertionError("unreachable")

    recorder = Recorder()
    check = HealthCheck(exec="ignored", interval=0.01, timeout=0.05, fall=2)
    monitor = Monitor("svc", [check], node, recorder, checker=hangs)
    monkeypatch.setattr(monitor_module, "OVERRUN", 0.05)
    try:
        monitor.start()
        change = await recorder.next()
        assert change.new == "unhealthy" and "overran its timeout" in change.reason
        await asyncio.sleep(0.3)
    finally:
        await monitor.stop()
    assert peak == 1 and in_flight == 0
    # About one call per timeout + overrun (0.1 s) in ~0.5 s: nowhere near one per interval.
    assert 3 <= calls <= 12


async def test_failures_within_grace_do_not_count_manual_clock(node: NodeContext) -> None:
    clock = ManualClock(1000.0)
    recorder = Recorder()
    check = HealthCheck(exec="ignored", interval=0.01, fall=1, grace=30)
    monitor = Monitor("svc", [check], node, recorder, clock=clock, checker=scripted([BAD]))
    monitor.start()
    try:
        await until(lambda: monitor.loops[0].runs >= 10)
        assert monitor.state == "starting" and recorder.seen == []
        clock.advance(30)
        change = await recorder.next()
        assert (change.old, change.new) == ("starting", "unhealthy")
        assert change.reason == "1 failed check (fall 1): HTTP 500 from http://n1/"
    finally:
        await monitor.stop()


async def test_restarted_resets_to_starting_with_a_new_grace(node: NodeContext) -> None:
    clock = ManualClock(0.0)
    current = [BAD]

    async def checker(check: HealthCheck, node: NodeContext) -> CheckOutcome:
        await asyncio.sleep(0)
        return current[0]

    recorder = Recorder()
    check = HealthCheck(exec="ignored", interval=0.01, fall=1, rise=1, grace=5)
    monitor = Monitor("svc", [check], node, recorder, clock=clock, checker=checker)
    clock.advance(10)  # past the first grace
    monitor.start()
    try:
        assert (await recorder.next()).new == "unhealthy"
        change = monitor.restarted()
        assert change is not None and (change.old, change.new) == ("unhealthy", "starting")
        runs = monitor.loops[0].runs
        await until(lambda: monitor.loops[0].runs >= runs + 5)
        assert monitor.state == "starting" and len(recorder.seen) == 1  # BADs within grace
        current[0] = GOOD
        assert (await recorder.next()).new == "healthy"
    finally:
        await monitor.stop()


async def test_result_in_flight_at_restart_is_dropped_and_the_next_run_starts_at_once(
    node: NodeContext,
) -> None:
    clock = ManualClock(0.0)
    release = asyncio.Event()
    calls: list[asyncio.Event] = []

    async def checker(check: HealthCheck, node: NodeContext) -> CheckOutcome:
        calls.append(asyncio.Event())
        if len(calls) == 1:
            await release.wait()  # the run in flight when the service is restarted
            return BAD
        await asyncio.Event().wait()  # later runs hang until cancelled
        raise AssertionError("unreachable")

    recorder = Recorder()
    check = HealthCheck(exec="ignored", interval=10, timeout=20, fall=1)
    monitor = Monitor("svc", [check], node, recorder, clock=clock, checker=checker)
    monitor.start()
    try:
        await until(lambda: len(calls) == 1)
        assert monitor.restarted() is None  # was starting: no change
        release.set()  # the old run ends with BAD: dropped, although fall is 1
        await until(lambda: len(calls) == 2, timeout=2)  # no 10 s wait after a restart
        assert monitor.loops[0].runs == 1
        assert monitor.state == "starting" and recorder.seen == []
        assert monitor.outcomes == [None]
    finally:
        await monitor.stop()


async def test_stop_kills_an_exec_check_in_flight(tmp_path: Path, node: NodeContext) -> None:
    pids = tmp_path / "pids"
    check = HealthCheck(exec=f"echo $$ > {pids}; sleep 30", timeout=20, interval=1)
    recorder = Recorder()
    monitor = Monitor("svc", [check], node, recorder)
    monitor.start()
    await until(lambda: pids.exists() and pids.read_text().strip() != "")
    shell = int(pids.read_text())
    await asyncio.wait_for(monitor.stop(), WAIT)
    assert not monitor.running
    await until(lambda: (s := read_stat(shell)) is None or not s.alive)
    await until(lambda: group_members(shell) == [])  # SIGKILL reaches each member on its own
    assert recorder.seen == []
    await monitor.stop()  # idempotent


async def test_stop_and_restart_from_inside_the_callback(node: NodeContext) -> None:
    clock = ManualClock(0.0)
    recorder = Recorder()
    check = HealthCheck(exec="ignored", interval=0.01, fall=1)
    monitor = Monitor("svc", [check, check], node, recorder, clock=clock, checker=scripted([BAD]))

    async def react(transition: Transition) -> None:
        if transition.new == "unhealthy":
            assert monitor.restarted() is not None  # the agent restarted the service...
            await monitor.stop()  # ...or gave up on it: neither may deadlock

    recorder.hook = react
    monitor.start()
    change = await recorder.next()
    assert change.new == "unhealthy"
    await until(lambda: not monitor.running)
    await asyncio.sleep(0.1)
    assert len(recorder.seen) == 1  # nothing after stop()
    assert monitor.state == "starting"


async def test_a_failing_callback_is_logged_and_monitoring_goes_on(
    node: NodeContext, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()

    async def explode(transition: Transition) -> None:
        raise RuntimeError("agent bug")

    recorder.hook = explode
    check = HealthCheck(exec="ignored", interval=0.01, rise=1, fall=1)
    outcomes = [GOOD, BAD, GOOD]
    monitor = Monitor("svc", [check], node, recorder, checker=scripted(outcomes))
    with caplog.at_level(logging.ERROR, logger="corral.health.monitor"):
        monitor.start()
        try:
            for expected in ("healthy", "unhealthy", "healthy"):
                assert (await recorder.next()).new == expected
        finally:
            await monitor.stop()
    assert "on_transition of svc failed" in caplog.text


async def test_a_crashing_checker_counts_as_unknown(
    node: NodeContext, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(check: HealthCheck, node: NodeContext) -> CheckOutcome:
        raise KeyError("oops")

    recorder = Recorder()
    check = HealthCheck(exec="ignored", interval=0.01, fall=1)
    monitor = Monitor("svc", [check], node, recorder, checker=broken)
    with caplog.at_level(logging.ERROR, logger="corral.health.monitor"):
        monitor.start()
        try:
            change = await recorder.next()
        finally:
            await monitor.stop()
    assert change.new == "unhealthy" and "the check crashed: KeyError('oops')" in change.reason
    assert "health check 1 of svc crashed" in caplog.text


async def test_several_real_checks_aggregate(
    http_target: HttpTarget, tcp_listener: int, closed_port: int, node: NodeContext
) -> None:
    fast = {"interval": 0.05, "timeout": 0.3, "rise": 1, "fall": 1}
    good = [
        HealthCheck(http=http_target.url("/ok"), **fast),
        HealthCheck(tcp=f"{{node.address}}:{tcp_listener}", **fast),
    ]
    recorder = Recorder()
    monitor = Monitor("api", good, node, recorder)
    monitor.start()
    try:
        change = await recorder.next()
        assert change == Transition("starting", "healthy", "all 2 checks pass")
    finally:
        await monitor.stop()

    bad = [*good[:1], HealthCheck(tcp=f"127.0.0.1:{closed_port}", **fast)]
    monitor = Monitor("api", bad, node, recorder)
    monitor.start()
    try:
        change = await recorder.next()
        assert change.new == "unhealthy"
        assert change.reason == (
            f"check 2: 1 failed check (fall 1): tcp 127.0.0.1:{closed_port}: connection refused"
        )
        assert [o.status if o else None for o in monitor.outcomes][1] == "critical"
    finally:
        await monitor.stop()


async def test_no_checks_is_healthy_and_runs_nothing(node: NodeContext) -> None:
    recorder = Recorder()
    monitor = Monitor("vip", [], node, recorder)
    monitor.start()
    assert monitor.state == "healthy" and not monitor.running
    await monitor.stop()
    assert recorder.seen == []


async def test_hang_detected_within_interval_times_fall_plus_timeout(
    http_target: HttpTarget, node: NodeContext
) -> None:
    """The issue's target: malfunction detected within ``interval x fall + timeout``."""
    interval, timeout, fall = 0.2, 0.1, 2
    check = HealthCheck(
        http=http_target.url("/switch"), interval=interval, timeout=timeout, fall=fall, rise=1
    )
    recorder = Recorder()
    monitor = Monitor("svc", [check], node, recorder)
    monitor.start()
    try:
        assert (await recorder.next()).new == "healthy"
        await asyncio.sleep(0.07)  # some phase within the interval
        http_target.switch.hang = True
        hung_at = time.monotonic()
        assert (await recorder.next()).new == "unhealthy"
        took = time.monotonic() - hung_at
        bound = interval * fall + timeout
        assert bound - interval - 0.05 < took < bound + 0.25, took  # 0.25 s for a slow machine
    finally:
        await monitor.stop()
