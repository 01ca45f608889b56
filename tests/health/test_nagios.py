"""``corral check``: the same checks as Nagios/Sensu plugins (exit code and one line)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from corral.core.health import CheckOutcome
from corral.drivers.base import NodeContext
from corral.health.nagios import check_all, check_once, plugin_line
from corral.spec import HealthCheck

from .conftest import HttpTarget

PERF = r" \| time=\d+\.\d{6}s;;;0;[0-9.]+$"


async def test_ok_http(http_target: HttpTarget, node: NodeContext) -> None:
    code, line = await check_once(HealthCheck(http=http_target.url("/ok")), node)
    assert code == 0
    assert re.fullmatch(rf"OK - HTTP 200 from {re.escape(http_target.url('/ok'))}{PERF}", line)


async def test_500_is_critical(http_target: HttpTarget, node: NodeContext) -> None:
    code, line = await check_once(HealthCheck(http=http_target.url("/fail")), node)
    assert code == 2 and line.startswith("CRITICAL - HTTP 500 from ")


async def test_timeout_is_critical(http_target: HttpTarget, node: NodeContext) -> None:
    check = HealthCheck(http=http_target.url("/hang"), timeout=0.2)
    code, line = await check_once(check, node)
    assert code == 2 and line.startswith("CRITICAL - timed out after 0.2s: ")
    assert line.endswith(";;;0;0.2")


@pytest.mark.parametrize(
    ("script", "code", "text"),
    [
        ("echo fine", 0, "OK - fine"),
        ("echo 'DISK WARNING - 85%|used=85%'; exit 1", 1, "DISK WARNING - 85%"),
        ("echo 'TCP OK - 0.001 second'; exit 0", 0, "TCP OK - 0.001 second"),
        ("echo 'OK - but exit 2'; exit 2", 2, "CRITICAL - OK - but exit 2"),
        ("exit 3", 3, "UNKNOWN - exit 3, no output"),
        ("exit 9", 3, "UNKNOWN - exit 9, no output"),
    ],
)
async def test_exec_keeps_plugin_words_and_codes(
    script: str, code: int, text: str, node: NodeContext
) -> None:
    got_code, line = await check_once(HealthCheck(exec=script), node)
    assert got_code == code
    assert line.split(" | ")[0] == text
    assert re.search(PERF, line)


async def test_real_plugin_round_trip(plugins: Path, tcp_listener: int, node: NodeContext) -> None:
    check = HealthCheck(exec=f"{plugins}/check_tcp -H {{node.address}} -p {tcp_listener}")
    code, line = await check_once(check, node)
    assert code == 0 and line.startswith("TCP OK - ")
    assert line.count("|") == 1  # the plugin's own perfdata was dropped, ours added


def test_details_cannot_break_the_line_or_the_perfdata() -> None:
    outcome = CheckOutcome("critical", "two\nlines | with a pipe", 0.5)
    code, line = plugin_line(outcome, HealthCheck(tcp="x:1"))
    assert code == 2
    assert line == "CRITICAL - two lines / with a pipe | time=0.500000s;;;0;0.5"


async def test_check_all_reports_the_worst(
    http_target: HttpTarget, closed_port: int, node: NodeContext
) -> None:
    checks = [
        HealthCheck(http=http_target.url("/ok")),
        HealthCheck(exec="echo 'LOAD WARNING - 5'; exit 1"),
        HealthCheck(tcp=f"127.0.0.1:{closed_port}"),
    ]
    code, line = await check_all(checks, node)
    assert code == 2
    text, perf = line.split(" | ")
    assert text == (
        "CRITICAL - check 2: LOAD WARNING - 5; "
        f"check 3: CRITICAL - tcp 127.0.0.1:{closed_port}: connection refused"
    )
    assert perf.startswith("check1_time=") and "check3_time=" in perf

    code, line = await check_all(checks[:2], node)
    assert code == 1 and line.startswith("WARNING - check 2: LOAD WARNING - 5 | ")
    code, line = await check_all(checks[:1], node)
    assert code == 0 and line.startswith("OK - HTTP 200")
    assert await check_all([], node) == (3, "UNKNOWN - no health checks to run")


async def test_check_all_all_ok(
    http_target: HttpTarget, tcp_listener: int, node: NodeContext
) -> None:
    checks = [
        HealthCheck(http=http_target.url("/ok")),
        HealthCheck(tcp=f"127.0.0.1:{tcp_listener}"),
    ]
    code, line = await check_all(checks, node)
    assert code == 0 and line.startswith("OK - all 2 checks OK | ")
