"""One agent per node: two real `corral agent` processes on one state dir. The second exits at
once, non-zero, naming the first's pid; once the first is gone (even killed) a new one runs."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.store.lab import free_ports


def agent_cmd(spec: Path, state: Path) -> list[str]:
    # a store nobody serves: the agent keeps trying to register, and runs on meanwhile
    return [
        sys.executable, "-m", "corral.cli.main", "agent", "--spec", str(spec), "--node", "n1",
        "--etcd", "http://127.0.0.1:1", "--state-dir", str(state),
    ]  # fmt: skip


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    (gossip,) = free_ports(1)
    path = tmp_path / "spec.yaml"
    path.write_text(
        "cluster: t\nstore: {etcd: {endpoints: [http://127.0.0.1:1]}}\n"
        f"gossip: {{port: {gossip}}}\nnodes:\n  n1: {{address: 127.0.0.1}}\n"
    )
    return path


@contextlib.contextmanager
def agent(spec: Path, state: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "ab") as out:
        proc = subprocess.Popen(agent_cmd(spec, state), stdout=out, stderr=out)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        with contextlib.suppress(OSError, ValueError):  # the lease guard it spawned
            os.kill(int((state / "guard.pid").read_text()), signal.SIGKILL)


def wait_for(check, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout:g}s: {what}"
        time.sleep(0.05)


def guard_started(state: Path) -> bool:
    return (state / "guard.pid").exists()


def test_a_second_agent_on_one_state_dir_refuses_to_run(spec: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    with agent(spec, state, tmp_path / "first.log") as first:
        wait_for(lambda: guard_started(state), 20, "the first agent running")
        began = time.monotonic()
        try:
            second = subprocess.run(
                agent_cmd(spec, state), capture_output=True, text=True, timeout=15, check=False
            )
        except subprocess.TimeoutExpired:
            pytest.fail("a second agent on the same state dir was still running after 15 s")
        took = time.monotonic() - began
        assert first.poll() is None, "the first agent must keep running"
        assert second.returncode != 0
        assert f"pid {first.pid}" in second.stderr and "already runs" in second.stderr, second
        assert took < 10  # at once: no store, gossip or adoption was tried first
        assert "Traceback" not in second.stderr
        first.send_signal(signal.SIGKILL)
        first.wait()
    # the holder is gone (killed: nothing released it but the kernel): a new agent runs
    with agent(spec, state, tmp_path / "third.log") as third:
        wait_for(lambda: f"{third.pid}" in (state / "agent.lock").read_text(), 20, "lock taken")
        time.sleep(1.0)
        assert third.poll() is None, (tmp_path / "third.log").read_text()[-2000:]
