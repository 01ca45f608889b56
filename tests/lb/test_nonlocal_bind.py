"""The ``transparent`` bind: HAProxy listens on a VIP before the VIP is on the node.

Runs in a network namespace of its own (``chp-vip``), so the 198.18.0.0/15 addresses exist
nowhere else; the namespace and every process are removed in ``finally``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.drivers.base import NodeContext
from corral.lb.config import render
from tests.lb.helpers import APP, make_spec

NS = "chp-vip"
SPEC = """
cluster: chp
nodes:
  lb1: {address: 198.18.0.11, roles: [lb, api]}
resources:
  vips: {vip-set: [198.18.0.100/24], on: {role: lb}}
  haproxy: {haproxy: {stats_port: 8404}, on: {role: lb}}
  api:
    process: "true"
    on: {role: api}
    health: {http: "http://{node.address}:8081/", interval: 300ms}
    balance: {port: 8080, via: vips, backend_port: 8081}
"""


def ns(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", NS, *argv], capture_output=True, text=True, timeout=20, check=check
    )


def fetch() -> str:
    code = "import urllib.request as u; print(u.urlopen('http://198.18.0.100:8080/', timeout=2).status)"
    return ns(sys.executable, "-c", code, check=False).stdout.strip()


@pytest.fixture
def netns() -> Iterator[None]:
    if shutil.which("ip") is None:
        pytest.skip("iproute2 missing")
    subprocess.run(["ip", "netns", "del", NS], capture_output=True, timeout=10)
    subprocess.run(["ip", "netns", "add", NS], check=True, timeout=10)
    try:
        ns("ip", "link", "set", "lo", "up")
        # /32: on lo a wider prefix makes the whole subnet local, the VIP included
        ns("ip", "addr", "add", "198.18.0.11/32", "dev", "lo")
        yield
    finally:
        subprocess.run(["ip", "netns", "pids", NS], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", NS], capture_output=True, timeout=10)


def test_listener_is_ready_before_the_vip_arrives(netns: None, short_dir: Path) -> None:
    cfg = short_dir / "haproxy.cfg"
    cfg.write_text(render(make_spec(SPEC), NodeContext("lb1", "198.18.0.11"), {}, short_dir))
    (short_dir / "mode").write_text("ok")
    procs = []
    try:
        procs.append(
            subprocess.Popen(
                start_new_session=True,
                args=[
                    "ip",
                    "netns",
                    "exec",
                    NS,
                    sys.executable,
                    str(APP),
                    "198.18.0.11",
                    "8081",
                    str(short_dir / "mode"),
                ],
            )
        )
        haproxy = [
            "ip",
            "netns",
            "exec",
            NS,
            "haproxy",
            "-W",
            "-S",
            str(short_dir / "master.sock"),
            "-f",
            str(cfg),
        ]
        procs.append(
            subprocess.Popen(
                haproxy,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
        time.sleep(1.0)
        assert procs[-1].poll() is None, "haproxy could not bind a VIP the node does not hold"
        assert fetch() != "200"  # the VIP is not here yet
        ns("ip", "addr", "add", "198.18.0.100/32", "dev", "lo")  # the VIP moves to this node
        deadline = time.monotonic() + 5
        while fetch() != "200" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert fetch() == "200"  # served at once: no reload, no restart
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # haproxy: master and workers
            proc.wait(5)
