"""The load generator against real servers on loopback (the stand-in app, a listener that never
answers, a closed port), through its command line; ``summarize`` on hand-made runs."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.lab import app
from corral.lab.client import Record, Target, load, parse_response, planned_ticks, summarize

HOST = "127.0.0.61"


def free_port(host: str = HOST) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.02)
    raise AssertionError(f"{host}:{port} not listening")


@pytest.fixture
def stand_in(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The stand-in app on HOST: its URL and its mode file."""
    mode = tmp_path / "mode"
    mode.write_text("ok\n")
    port = free_port()
    proc = subprocess.Popen([sys.executable, app.__file__, HOST, str(port), str(mode)])
    try:
        wait_port(HOST, port)
        yield f"http://{HOST}:{port}/", mode
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def silent() -> Iterator[str]:
    """A listener whose backlog accepts connections that nobody ever answers (a hung server)."""
    s = socket.socket()
    s.bind((HOST, 0))
    s.listen(512)
    try:
        yield f"http://{HOST}:{s.getsockname()[1]}/"
    finally:
        s.close()


def client(
    tmp_path: Path, *args: str, timeout: float = 30
) -> tuple[list[Record], dict[str, Any], float]:
    out = tmp_path / "run.json"
    start = time.monotonic()
    argv = [sys.executable, "-m", "corral.lab.client", *args, "--out", str(out)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    records, meta = load(out)
    return records, meta, time.monotonic() - start


# --- the command against real servers ------------------------------------------------------


def test_fixed_rate_exact_count_and_bodies(stand_in: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = stand_in
    ready = tmp_path / "ready"
    records, meta, wall = client(
        tmp_path, url, "--rate", "200", "--duration", "1.5", "--ready", str(ready)
    )
    assert ready.exists()
    assert len(records) == meta["planned"] == meta["sent"] == 300
    assert [r.seq for r in records] == list(range(300))
    assert all(r.ok and r.status == 200 and r.body == f"ok {HOST}" for r in records)
    span = records[-1].sent - records[0].sent
    assert 0.8 * 200 <= (len(records) - 1) / span <= 1.2 * 200
    # the last of 300 ticks is due 1.495 s in: a tick a busy machine delays a little is fine
    assert records[-1].sent < meta["started"] + 1.5 + 0.25
    assert meta["ended"] - meta["started"] < 1.5 + 0.1 + 0.5
    assert wall < 1.5 + 3  # interpreter start included: the client starts quickly


def test_hung_server_every_request_times_out_and_the_rate_holds(
    silent: str, tmp_path: Path
) -> None:
    records, meta, _ = client(
        tmp_path, silent, "--interval", "0.01", "--timeout", "0.1", "--duration", "1"
    )
    assert len(records) == 100  # open loop: 100 hanging requests did not slow the sending
    assert not any(r.ok for r in records)
    assert {r.error for r in records} == {"read_timeout"}
    assert all(0.09 <= r.latency < 0.3 for r in records)
    assert meta["ended"] - meta["started"] < 1 + 0.1 + 0.5  # duration + timeout, plus noise
    summary = summarize(records, meta["started"])
    assert summary["failed_after_fault"] == 100
    assert summary["first_success_s"] is None and summary["all_ok_s"] is None


def test_failure_kinds_refused_http_500_and_per_url_ticks(
    stand_in: tuple[str, Path], tmp_path: Path
) -> None:
    url, mode = stand_in
    mode.write_text("500\n")
    closed = f"http://{HOST}:{free_port()}/"
    records, meta, _ = client(tmp_path, url, closed, "--interval", "0.05", "--duration", "0.5")
    assert meta["planned"] == len(records) == 20  # every URL on every tick
    by_url = {u: [r for r in records if r.url == u] for u in (url, closed)}
    assert len(by_url[url]) == len(by_url[closed]) == 10
    assert all(r.error == "http" and r.status == 500 and not r.ok for r in by_url[url])
    assert all(r.error == "refused" and r.status is None for r in by_url[closed])


def test_cycle_spreads_ticks_over_urls_and_duration_bounds_the_count(
    stand_in: tuple[str, Path], tmp_path: Path
) -> None:
    url, _ = stand_in
    other = url.replace(HOST, "127.0.0.62")  # nobody listens there: refused
    records, meta, _ = client(
        tmp_path, url, other, "--cycle", "--interval", "0.2", "--duration", "0.5"
    )
    assert len(records) == meta["planned"] == 3  # ticks at 0, 0.2, 0.4; none at 0.6
    assert [r.url for r in records] == [url, other, url]


def test_sigterm_stops_early_and_still_writes(stand_in: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = stand_in
    out, ready = tmp_path / "run.json", tmp_path / "ready"
    argv = [sys.executable, "-m", "corral.lab.client", url, "--duration", "30"]
    proc = subprocess.Popen([*argv, "--out", str(out), "--ready", str(ready)])
    try:
        deadline = time.monotonic() + 10
        while not ready.exists():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.02)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        proc.kill()
    records, meta = load(out)
    assert meta["stopped_early"] and 5 < len(records) < meta["planned"]


def test_json_lines_on_stdout_and_bad_arguments(stand_in: tuple[str, Path]) -> None:
    url, _ = stand_in
    argv = [
        sys.executable,
        "-m",
        "corral.lab.client",
        url,
        "--interval",
        "0.1",
        "--duration",
        "0.3",
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert "meta" in lines[0] and [r["seq"] for r in lines[1:]] == [0, 1, 2]
    for bad in (["https://x/"], [url, "--interval", "0"], [url, "--rate", "5", "--interval", "1"]):
        cmd = [sys.executable, "-m", "corral.lab.client", *bad, "--duration", "1"]
        assert subprocess.run(cmd, capture_output=True, timeout=30).returncode == 2


def test_source_addresses_are_cycled(stand_in: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = stand_in
    records, _, _ = client(
        tmp_path, url, "--interval", "0.05", "--duration", "0.2",
        "--source", "127.0.0.71", "--source", "127.0.0.72",
    )  # fmt: skip
    assert [r.source for r in records] == ["127.0.0.71", "127.0.0.72"] * 2
    assert all(r.ok for r in records)


# --- pure parts ----------------------------------------------------------------------------


def test_parse_response_and_targets() -> None:
    assert parse_response(b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\nok n1\n") == (200, "ok n1")
    assert parse_response(b"HTTP/1.1 503 Service Unavailable\r\n\r\n") == (503, "")
    for bad in (b"", b"garbage", b"HTTP/1.0 abc\r\n\r\n"):
        with pytest.raises(ValueError):
            parse_response(bad)
    t = Target.parse("http://198.18.8.100/health?x=1")
    assert (t.host, t.port, t.path) == ("198.18.8.100", 80, "/health?x=1")
    assert t.request().startswith(b"GET /health?x=1 HTTP/1.0\r\nHost: 198.18.8.100:80\r\n")
    with pytest.raises(ValueError):
        Target.parse("ftp://x/")
    assert planned_ticks(1.0, 0.01) == 100 and planned_ticks(0.5, 0.2) == 3


def run_of(spec: list[tuple[float, float, bool]], url: str = "u") -> list[Record]:
    """Records every 10 ms over [start, end) with a given outcome: spec of (start, end, ok)
    pieces; a failure is a 100 ms timeout, a success takes 2 ms."""
    out: list[Record] = []
    for start, end, ok in spec:
        n = round((end - start) / 0.01)
        for i in range(n):
            t = start + i * 0.01
            out.append(
                Record(
                    len(out), url, round(t, 6), 0.002 if ok else 0.1, ok,
                    200 if ok else None, None if ok else "read_timeout", "ok n2" if ok else "",
                )
            )  # fmt: skip
    return out


def tail(start: float, end: float) -> list[tuple[float, float, bool]]:
    """Every third request fails: a load balancer still sending to a dead backend."""
    return [
        (t / 100, t / 100 + 0.01, t % 3 != 0) for t in range(round(start * 100), round(end * 100))
    ]


def test_summarize_a_failover_with_a_tail() -> None:
    fault = 10.0
    records = run_of(
        [(8.0, 10.0, True), (10.0, 13.0, False), *tail(13.0, 28.0), (28.0, 30.0, True)]
    )
    s = summarize(records, fault)
    assert s["requests"] == 2200 and s["requests_after_fault"] == 2000
    assert s["first_failure_s"] == 0.0
    assert s["first_success_s"] == pytest.approx(3.0)  # 13.00 succeeds (1300 % 3 != 0)
    assert s["last_failure_s"] == pytest.approx(17.99) and s["all_ok_s"] == pytest.approx(18.0)
    assert s["failed_before_fault"] == 0
    assert s["failed_after_fault"] == 300 + 500 and s["tail_failed"] == 500
    assert s["longest_gap_s"] == pytest.approx(3.002, abs=1e-6)  # fault -> 13.00 + 2 ms answer
    assert s["errors"] == {"read_timeout": 800} and s["served_by"] == {"ok n2": 1200}


def test_summarize_edge_cases() -> None:
    clean = run_of([(0.0, 2.0, True)])
    s = summarize(clean, 1.0)
    assert (s["first_success_s"], s["all_ok_s"], s["failed"]) == (0.0, 0.0, 0)
    assert s["first_failure_s"] is None and s["longest_gap_s"] == pytest.approx(0.01)

    never = run_of([(0.0, 1.0, True), (1.0, 3.0, False)])
    s = summarize(never, 1.0)
    assert s["first_success_s"] is None and s["all_ok_s"] is None
    assert s["longest_gap_s"] == pytest.approx(1.99)  # up to the last request sent

    before = run_of([(0.0, 0.5, False), (0.5, 2.0, True)])
    s = summarize(before, 1.0)
    assert s["failed"] == 50 and s["failed_before_fault"] == 50 and s["failed_after_fault"] == 0

    mixed = run_of([(0.0, 2.0, True)], "a") + run_of([(0.0, 1.0, True), (1.0, 2.0, False)], "b")
    assert summarize(mixed, 1.0, url="a")["failed"] == 0
    assert summarize(mixed, 1.0, url="b")["failed_after_fault"] == 100

    empty = summarize([], 1.0)
    assert empty["requests"] == 0 and empty["longest_gap_s"] is None


@given(st.lists(st.booleans(), min_size=1, max_size=200), st.integers(0, 200))
def test_summarize_invariants(outcomes: list[bool], fault_at: int) -> None:
    records = [
        Record(i, "u", i * 0.01, 0.002, ok, error=None if ok else "x")
        for i, ok in enumerate(outcomes)
    ]
    s = summarize(records, fault_at * 0.01)
    assert s["failed"] == s["failed_before_fault"] + s["failed_after_fault"]
    assert 0 <= s["tail_failed"] <= s["failed_after_fault"]
    if s["first_success_s"] is not None and s["all_ok_s"] is not None:
        assert s["all_ok_s"] >= s["first_success_s"] >= 0
    if s["first_failure_s"] is not None and s["first_success_s"]:
        assert s["first_success_s"] > s["first_failure_s"]
    if s["longest_gap_s"] is not None:
        assert s["longest_gap_s"] >= 0


def test_out_to_a_fifo_writes_into_it_and_never_replaces_it(
    stand_in: tuple[str, Path], tmp_path: Path
) -> None:
    """Like ``--out /dev/null``: a non-regular file is written to, not replaced (tested on a
    FIFO of our own, so that a regression cannot break the machine's /dev/null)."""
    url, _ = stand_in
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    argv = [sys.executable, "-m", "corral.lab.client", url, "--duration", "0.05"]
    proc = subprocess.Popen([*argv, "--out", str(fifo)])
    try:
        with open(fifo) as reader:
            doc = json.loads(reader.read())
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    # how many requests fit in 0.05 s depends on the machine's load; that it wrote is the point
    assert doc["records"] and stat.S_ISFIFO(fifo.stat().st_mode)
