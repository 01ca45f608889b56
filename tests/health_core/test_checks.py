"""Health checks against real targets: HTTP servers that answer 200/500 or hang, TCP listeners,
and exec checks with Nagios plugin exit codes, including a hung one killed at its timeout."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.core.health import CheckOutcome, HealthTracker
from corral.drivers.base import NodeContext
from corral.health.checks import run_check
from corral.spec import HealthCheck

NODE = NodeContext("n1", "127.0.0.1")


@pytest.fixture
def server() -> Iterator[tuple[int, dict[str, str]]]:
    mode = {"mode": "ok"}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if mode["mode"] == "hang":
                time.sleep(2)
            code = 500 if mode["mode"] == "500" else 200
            self.send_response(code)
            self.send_header("Content-Length", "6")
            self.end_headers()
            self.wfile.write(b"hello\n")

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1], mode
    finally:
        httpd.shutdown()
        httpd.server_close()


def http(port: int, **kw: object) -> HealthCheck:
    return HealthCheck.model_validate(
        {"http": {"url": f"http://{{node.address}}:{port}/", **kw}, "timeout": 0.5}
    )


async def test_http_ok_500_body_and_hang(server: tuple[int, dict[str, str]]) -> None:
    port, mode = server
    assert (await run_check(http(port), NODE)).status == "ok"
    assert (await run_check(http(port, body="hello"), NODE)).passed
    missing = await run_check(http(port, body="bye"), NODE)
    assert missing.status == "critical" and "body lacks" in missing.detail
    mode["mode"] = "500"
    failed = await run_check(http(port), NODE)
    assert failed.status == "critical" and "HTTP 500" in failed.detail
    assert (await run_check(http(port, status=[200, 500]), NODE)).passed
    mode["mode"] = "hang"
    start = time.monotonic()
    hung = await run_check(http(port), NODE)
    assert hung.status == "timeout" and time.monotonic() - start < 1.5


async def test_http_connection_refused() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = await run_check(http(port), NODE)
    assert result.status == "critical" and "refused" in result.detail


async def test_tcp_open_and_closed() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    check = HealthCheck.model_validate({"tcp": f"{{node.address}}:{port}"})
    assert (await run_check(check, NODE)).passed
    server.close()
    await server.wait_closed()
    assert not (await run_check(check, NODE)).passed


@pytest.mark.parametrize(
    ("code", "status", "passed"),
    [
        (0, "ok", True),
        (1, "warning", True),
        (2, "critical", False),
        (3, "unknown", False),
        (42, "unknown", False),
    ],
)
async def test_exec_follows_nagios_exit_codes(code: int, status: str, passed: bool) -> None:
    check = HealthCheck.model_validate({"exec": f"echo 'SERVICE {code} - detail'; exit {code}"})
    result = await run_check(check, NODE)
    assert (result.status, result.passed) == (status, passed)
    assert result.detail == f"SERVICE {code} - detail"


async def test_hung_exec_is_killed_with_its_children(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    check = HealthCheck.model_validate(
        {"exec": f"sleep 30 & echo $! > {pidfile}; wait", "timeout": 0.3}
    )
    result = await run_check(check, NODE)
    assert result.status == "timeout"
    child = int(pidfile.read_text())
    for _ in range(50):
        try:  # a killed child may linger as a zombie until init reaps it: that counts as gone
            if Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                break
        except OSError:
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the check's child survived its timeout")


@pytest.mark.skipif(
    not Path("/usr/lib/nagios/plugins/check_tcp").exists(),
    reason="monitoring-plugins not installed",
)
async def test_a_real_nagios_plugin() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    check = HealthCheck.model_validate(
        {"exec": f"/usr/lib/nagios/plugins/check_tcp -H {{node.address}} -p {port}"}
    )
    assert (await run_check(check, NODE)).status == "ok"
    server.close()
    await server.wait_closed()
    assert (await run_check(check, NODE)).status == "critical"


PASS, FAIL = CheckOutcome("ok", "fine"), CheckOutcome("critical", "HTTP 500")


def test_rise_fall_and_grace() -> None:
    t = HealthTracker(rise=2, fall=2, grace=5.0, started_at=0.0)
    assert t.record(FAIL, 1.0) is None and t.record(FAIL, 2.0) is None  # in grace
    assert t.state == "starting"
    assert t.record(PASS, 6.0) is None
    change = t.record(PASS, 7.0)
    assert change is not None and change.new == "healthy"
    assert t.record(FAIL, 8.0) is None
    change = t.record(FAIL, 9.0)
    assert change is not None and change.new == "unhealthy" and "HTTP 500" in change.reason
    t.restarted(10.0)
    assert t.state == "starting" and t.record(FAIL, 11.0) is None


@given(st.lists(st.booleans(), max_size=60), st.integers(1, 4), st.integers(1, 4))
def test_verdicts_follow_consecutive_results(results: list[bool], rise: int, fall: int) -> None:
    t = HealthTracker(rise, fall, 0.0, 0.0)
    run, last = 0, None
    for i, ok in enumerate(results):
        run = run + 1 if ok == last else 1
        last = ok
        change = t.record(PASS if ok else FAIL, float(i))
        if change is not None:  # a change happens only after enough results in a row
            assert run >= (rise if ok else fall)
            assert change.new == ("healthy" if ok else "unhealthy")
