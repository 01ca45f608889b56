"""`corral agent` on a core node of a spec with `store: embedded` runs the etcd member itself."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from corral.lab.loopback import APP
from corral.store.lab import free_ports

pytestmark = pytest.mark.etcd


def _ours(marker: str) -> list[int]:
    """Pids whose command line names ``marker`` (our tmp dir): what this test started."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if marker.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    out.append(int(entry))
    return [p for p in out if p != os.getpid()]


def _serves(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


async def test_agent_runs_its_embedded_member_and_serves(tmp_path: Path) -> None:
    client, peer, web = free_ports(3)
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"""
cluster: solo
store: {{embedded: {{client_port: {client}, peer_port: {peer}}}}}
nodes:
  n1: {{address: 127.0.0.21}}
resources:
  web:
    process: "{sys.executable} {APP} {{node.address}} {web} {tmp_path}/mode"
    health: {{http: "http://{{node.address}}:{web}/", interval: 200ms, rise: 1}}
""")
    state = tmp_path / "state"
    log = open(tmp_path / "agent.log", "wb")  # noqa: SIM115 - closed in finally
    agent = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "corral.cli.main",
            "agent",
            "--spec",
            str(spec),
            "--node",
            "n1",
            "--state-dir",
            str(state),
        ],
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if _serves(f"http://127.0.0.21:{web}/"):
                break
            assert time.monotonic() < deadline, (tmp_path / "agent.log").read_text()[-2000:]
            await asyncio.sleep(0.2)
        status = subprocess.run(
            [sys.executable, "-m", "corral.cli.main", "status", "--spec", str(spec), "--json"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert '"n1": "online"' in status.stdout
        assert (state / "etcd" / "n1").is_dir()  # the member's data lives in the state dir
    finally:
        agent.send_signal(signal.SIGKILL)
        agent.wait()
        log.close()
        for pid in _ours(str(tmp_path)):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
