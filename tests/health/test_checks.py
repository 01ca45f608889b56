"""Running checks against real targets on loopback: HTTP servers (200, 500, hung, SIGSTOPped),
TCP listeners, shell commands and Debian's monitoring plugins."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from corral.core.health import CheckOutcome
from corral.drivers._procfs import group_members, read_stat
from corral.drivers.base import NodeContext
from corral.health.checks import Checker, run_check
from corral.spec import HealthCheck

from .conftest import HttpTarget, ProcessServer


def http(url: str, timeout: float = 2.0, **extra: object) -> HealthCheck:
    return HealthCheck.model_validate({"http": {"url": url, **extra}, "timeout": timeout})


def alive(pid: int) -> bool:
    stat = read_stat(pid)
    return stat is not None and stat.alive


async def gone(pids: list[int], within: float = 3.0) -> bool:
    """True once none of ``pids`` runs any more (zombies left for PID 1 do not run)."""
    deadline = time.monotonic() + within
    while any(alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


# --- http -----------------------------------------------------------------------------------


async def test_http_200_is_ok(http_target: HttpTarget, node: NodeContext) -> None:
    template = f"http://{{node.address}}:{http_target.port}/ok"
    outcome = await run_check(http(template), node)
    assert outcome.status == "ok" and outcome.passed
    assert outcome.detail == f"HTTP 200 from {http_target.url('/ok')}"
    assert 0 <= outcome.duration < 2


async def test_http_500_is_critical(http_target: HttpTarget, node: NodeContext) -> None:
    outcome = await run_check(http(http_target.url("/fail")), node)
    assert outcome.status == "critical"
    assert outcome.detail == f"HTTP 500 from {http_target.url('/fail')} (expected 200)"


async def test_http_expected_statuses(http_target: HttpTarget, node: NodeContext) -> None:
    created = await run_check(http(http_target.url("/created"), status=[200, 201]), node)
    assert created.status == "ok"
    ok = await run_check(http(http_target.url("/ok"), status=201), node)
    assert ok.status == "critical" and ok.detail.endswith("(expected 201)")


async def test_http_body_substring(http_target: HttpTarget, node: NodeContext) -> None:
    good = await run_check(http(http_target.url("/ok"), body="good"), node)
    assert good.status == "ok" and "containing 'good'" in good.detail
    bad = await run_check(http(http_target.url("/ok"), body="ready"), node)
    assert bad.status == "critical" and bad.detail.endswith("but its body lacks 'ready'")


async def test_http_methods(http_target: HttpTarget, node: NodeContext) -> None:
    for method in ("HEAD", "POST"):
        outcome = await run_check(http(http_target.url("/ok"), method=method), node)
        assert outcome.status == "ok", method
    head_body = await run_check(http(http_target.url("/ok"), method="HEAD", body="x"), node)
    assert head_body.status == "unknown"


async def test_http_connection_refused(closed_port: int, node: NodeContext) -> None:
    url = f"http://127.0.0.1:{closed_port}/v3"
    outcome = await run_check(http(url), node)
    assert outcome.status == "critical"
    assert outcome.detail == f"{url}: connection refused"


async def test_http_hung_handler_times_out(http_target: HttpTarget, node: NodeContext) -> None:
    started = time.monotonic()
    outcome = await run_check(http(http_target.url("/hang"), timeout=0.3), node)
    elapsed = time.monotonic() - started
    assert outcome.status == "timeout" and not outcome.passed
    assert outcome.detail == f"timed out after 0.3s: {http_target.url('/hang')}"
    assert 0.25 < elapsed < 1.0


async def test_http_body_that_stalls_times_out(http_target: HttpTarget, node: NodeContext) -> None:
    check = http(http_target.url("/slow-body"), timeout=0.3, body="never")
    outcome = await run_check(check, node)
    assert outcome.status == "timeout"


async def test_sigstopped_server_is_caught_by_the_timeout(
    process_server: ProcessServer, node: NodeContext
) -> None:
    """The failure systemd cannot see: the process exists but does not answer."""
    check = http(process_server.url, timeout=0.4)
    tcp = HealthCheck(tcp=f"127.0.0.1:{process_server.port}", timeout=0.4)
    async with Checker() as checker:
        assert (await checker.run(check, node)).status == "ok"
        os.kill(process_server.proc.pid, signal.SIGSTOP)
        try:
            hung = await checker.run(check, node)
            # The kernel still completes TCP handshakes for a stopped process: a plain TCP
            # check passes, which is why functional checks matter.
            tcp_result = await checker.run(tcp, node)
        finally:
            os.kill(process_server.proc.pid, signal.SIGCONT)
        assert hung.status == "timeout" and 0.35 < hung.duration < 1.0
        assert tcp_result.status == "ok"
        assert (await checker.run(check, node)).status == "ok"  # recovered: a fresh connection


async def test_hung_checks_do_not_exhaust_the_shared_client(
    http_target: HttpTarget, node: NodeContext
) -> None:
    """Many hung requests at once, then a good one: no pool limit, no kept connection."""
    async with Checker() as checker:
        hung = await asyncio.gather(
            *(checker.run(http(http_target.url("/hang"), timeout=0.3), node) for _ in range(120))
        )
        assert {o.status for o in hung} == {"timeout"}
        assert (await checker.run(http(http_target.url("/ok")), node)).status == "ok"


async def test_http_ignores_proxy_settings(
    http_target: HttpTarget, node: NodeContext, closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port}")
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{closed_port}")
    async with Checker() as checker:
        assert (await checker.run(http(http_target.url("/ok")), node)).status == "ok"


async def test_unknown_charset_falls_back_to_utf8(
    http_target: HttpTarget, node: NodeContext
) -> None:
    outcome = await run_check(http(http_target.url("/odd-charset"), body="good"), node)
    assert outcome.status == "ok"


async def test_bad_templates_and_urls_are_unknown(node: NodeContext) -> None:
    lacking = await run_check(http("http://{node.address}:{node.bmc}/"), node)
    assert lacking.status == "unknown" and "lacks an attribute" in lacking.detail
    assert (await run_check(http("no-scheme"), node)).status == "unknown"
    assert (await run_check(HealthCheck(tcp="no-port"), node)).status == "unknown"
    assert (await run_check(HealthCheck(tcp="127.0.0.1:99999"), node)).status == "unknown"
    assert (await run_check(HealthCheck(tcp="a..b:80"), node)).status == "unknown"  # no lookup
    nul = await run_check(HealthCheck(exec="echo a\0b"), node)
    assert (nul.status, nul.detail) == ("unknown", "cannot run the check: embedded null byte")
    attr = await run_check(HealthCheck(exec="echo {node.zone} {node.name}"), node)
    assert attr.detail == "a n1"


# --- tcp ------------------------------------------------------------------------------------


async def test_tcp_listener_is_ok(tcp_listener: int, node: NodeContext) -> None:
    outcome = await run_check(HealthCheck(tcp=f"{{node.address}}:{tcp_listener}"), node)
    assert outcome == CheckOutcome(
        "ok", f"tcp 127.0.0.1:{tcp_listener} accepts connections", outcome.duration
    )


async def test_tcp_refused(closed_port: int, node: NodeContext) -> None:
    outcome = await run_check(HealthCheck(tcp=f"127.0.0.1:{closed_port}"), node)
    assert outcome.status == "critical"
    assert outcome.detail == f"tcp 127.0.0.1:{closed_port}: connection refused"


async def test_tcp_connect_that_hangs_times_out(full_listener: int, node: NodeContext) -> None:
    outcome = await run_check(HealthCheck(tcp=f"127.0.0.1:{full_listener}", timeout=0.3), node)
    assert outcome.status == "timeout"
    assert outcome.detail == f"timed out after 0.3s: 127.0.0.1:{full_listener}"


# --- exec -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "status", "detail"),
    [
        ("echo 'all fine'; exit 0", "ok", "all fine"),
        ("echo 'DISK WARNING - 85%|used=85%'; exit 1", "warning", "DISK WARNING - 85%"),
        ("echo 'down'; echo more; exit 2", "critical", "down"),
        ("echo 'no idea'; exit 3", "unknown", "no idea"),
        ("echo odd; exit 4", "unknown", "odd"),
        ("exit 2", "critical", "exit 2, no output"),
        ("echo 'to stderr' >&2; exit 2", "critical", "to stderr"),
        ("kill -TERM $$", "unknown", "killed by signal SIGTERM"),
        ("no-such-command-here", "unknown", "/bin/sh: 1: no-such-command-here: not found"),
    ],
)
async def test_exec_nagios_semantics(
    script: str, status: str, detail: str, node: NodeContext
) -> None:
    outcome = await run_check(HealthCheck(exec=script), node)
    assert (outcome.status, outcome.detail) == (status, detail)
    assert outcome.passed == (status in ("ok", "warning"))


async def test_exec_huge_output_is_read_and_cut(node: NodeContext) -> None:
    outcome = await run_check(
        HealthCheck(exec="head -c 5000000 /dev/zero | tr '\\0' x; exit 0"), node
    )
    assert outcome.status == "ok" and len(outcome.detail) == 300


async def test_hanging_exec_is_killed_with_its_process_group(
    tmp_path: Path, node: NodeContext
) -> None:
    pids = tmp_path / "pids"
    script = f"sleep 30 & echo $! > {pids}; echo $$ >> {pids}; sleep 30"
    started = time.monotonic()
    outcome = await run_check(HealthCheck(exec=script, timeout=0.5), node)
    assert outcome.status == "timeout"
    assert outcome.detail.startswith("timed out after 0.5s: sleep 30 &")
    assert time.monotonic() - started < 1.5
    child, shell = (int(line) for line in pids.read_text().split())
    assert await gone([child, shell])
    assert group_members(shell) == []  # the shell led the group: nothing of it runs


async def test_background_leftovers_of_a_finished_exec_are_killed(
    tmp_path: Path, node: NodeContext
) -> None:
    pids = tmp_path / "pids"
    script = f"sleep 30 >/dev/null 2>&1 & echo $! > {pids}; echo $$ >> {pids}; echo done"
    outcome = await run_check(HealthCheck(exec=script), node)
    assert (outcome.status, outcome.detail) == ("ok", "done")
    child, shell = (int(line) for line in pids.read_text().split())
    assert await gone([child])
    assert group_members(shell) == []


async def test_cancelled_exec_leaves_nothing(tmp_path: Path, node: NodeContext) -> None:
    pids = tmp_path / "pids"
    script = f"sleep 30 & echo $! > {pids}; echo $$ >> {pids}; sleep 30"
    task = asyncio.create_task(run_check(HealthCheck(exec=script, timeout=20), node))
    for _ in range(200):
        if pids.exists() and len(pids.read_text().split()) == 2:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    child, shell = (int(line) for line in pids.read_text().split())
    assert await gone([child, shell])


def processes_with(marker: str) -> list[int]:
    """Live processes whose command line contains ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline and alive(int(entry)):
                found.append(int(entry))
    return found


@pytest.mark.parametrize(("yields", "ms"), [(0, 0), (1, 0), (2, 0), (3, 0), (5, 0), (1, 5)])
async def test_cancelled_while_starting_leaves_nothing(
    yields: int, ms: int, node: NodeContext
) -> None:
    """Cancelled at any point of process creation: prompt, and no process survives (asyncio
    alone would kill the shell only, then wait for its children to close the pipes)."""
    marker = f"37.{os.getpid()}{yields}{ms}"  # a unique sleep duration names our processes
    check = HealthCheck(exec=f"sleep {marker} & sleep {marker}", timeout=20)
    task = asyncio.create_task(run_check(check, node))
    for _ in range(yields):
        await asyncio.sleep(0)  # each lets the check go one step further
    await asyncio.sleep(ms / 1000)
    task.cancel()
    started = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 1.0
    for _ in range(150):  # SIGKILL lands on each process on its own: allow up to 3 s
        if not processes_with(marker):
            break
        await asyncio.sleep(0.02)
    assert processes_with(marker) == []


# --- Debian's monitoring plugins ------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status"), [(0, "ok"), (1, "warning"), (2, "critical"), (3, "unknown")]
)
async def test_check_dummy(code: int, status: str, plugins: Path, node: NodeContext) -> None:
    outcome = await run_check(HealthCheck(exec=f"{plugins}/check_dummy {code} 'from n1'"), node)
    assert outcome.status == status
    assert outcome.detail.endswith(": from n1")


async def test_check_tcp(
    plugins: Path, tcp_listener: int, closed_port: int, node: NodeContext
) -> None:
    up = f"{plugins}/check_tcp -H {{node.address}} -p {tcp_listener}"
    down = f"{plugins}/check_tcp -H {{node.address}} -p {closed_port}"
    good = await run_check(HealthCheck(exec=up), node)
    assert good.status == "ok" and good.detail.startswith("TCP OK")
    assert "|" not in good.detail  # performance data is not part of the detail
    bad = await run_check(HealthCheck(exec=down), node)
    assert bad.status == "critical" and "Connection refused" in bad.detail


async def test_check_http(plugins: Path, http_target: HttpTarget, node: NodeContext) -> None:
    base = f"{plugins}/check_http -H 127.0.0.1 -p {http_target.port} -t 10"
    ok = await run_check(HealthCheck(exec=f"{base} -u /ok -s good"), node)
    assert ok.status == "ok" and ok.detail.startswith("HTTP OK")
    fail = await run_check(HealthCheck(exec=f"{base} -u /fail"), node)
    assert fail.status == "critical" and "500" in fail.detail
    # The plugin would wait 10 s; the check's own timeout stops it (and its group) first.
    hung = await run_check(HealthCheck(exec=f"{base} -u /hang", timeout=0.4), node)
    assert hung.status == "timeout"
