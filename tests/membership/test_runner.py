"""The standalone runner, ``python -m corral.net.node``, as real processes on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from corral.net import free_port, generate_key


def wait_for(cond: Callable[[], bool], within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def states(path: Path) -> dict[str, str]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {m["name"]: m["state"] for m in doc["members"]}


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for p in started:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
            p.wait(timeout=10)


def test_two_processes_join_detect_a_kill_and_leave_on_sigterm(
    tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    key = tmp_path / "key"
    key.write_text(generate_key() + "\n")
    ports = [free_port(), free_port()]
    status = [tmp_path / "s0.json", tmp_path / "s1.json"]
    for i in range(2):
        cmd = [
            sys.executable, "-m", "corral.net.node", "--name", f"p{i}",
            "--bind", f"127.0.0.1:{ports[i]}", "--key-file", str(key), "--profile", "local",
            "--status-file", str(status[i]), "--status-every", "0.1", "--run-for", "60",
            "--role", "lb",
        ]  # fmt: skip
        if i:
            cmd += ["--seed", f"127.0.0.1:{ports[0]}"]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    wait_for(lambda: states(status[0]).get("p1") == "alive", 20)
    os.kill(procs[1].pid, signal.SIGKILL)
    wait_for(lambda: states(status[0]).get("p1") == "dead", 10)
    procs[0].send_signal(signal.SIGTERM)
    assert procs[0].wait(timeout=10) == 0
    assert states(status[0])["p0"] == "left"


def test_bad_key_file_is_a_clean_error(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("not base64!\n")
    proc = subprocess.run(
        [sys.executable, "-m", "corral.net.node", "--name", "a", "--bind", "127.0.0.1:1",
         "--key-file", str(key)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "not base64" in proc.stderr
