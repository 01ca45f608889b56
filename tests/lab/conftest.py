"""Fixtures for lab tests: real namespaces, real agents, real etcd; torn down in ``finally``."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.lab import netns
from corral.lab.lab import Lab, lab_id, ns_prefix

NEEDS_ROOT = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("curl") is None,
    reason="needs root, iproute2 and curl (network namespaces)",
)

FAST = "{interval: 300ms, timeout: 250ms, rise: 1, fall: 2}"


def small_spec(cluster: str, nodes: int = 3) -> str:
    """Two services under names that do not exist here (rewritten to stand-ins), no VIPs."""
    lines = "\n".join(f"  n{i}: {{address: 198.18.0.{10 + i}}}" for i in range(1, nodes + 1))
    return f"""
cluster: {cluster}
nodes:
{lines}
fencing:
  power: {{agent: fence_ipmilan, params: {{ip: 198.18.1.1}}}}
defaults:
  health: {FAST}
resources:
  web:
    systemd: web.service
    health: {{http: "http://{{node.address}}:8080/"}}
  api:
    systemd: api.service
    mode: active-passive
    health: {{tcp: "{{node.address}}:9000"}}
"""


def ours(marker: str) -> list[int]:
    """Pids whose command line names ``marker`` (a lab dir): processes a lab left."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            with contextlib.suppress(OSError):
                if marker.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
    return found


def leftovers(lab_dir: Path) -> dict[str, Any]:
    """What a lab in ``lab_dir`` left behind: namespaces, processes, root-namespace links."""
    root_links = netns.run(["ip", "-o", "link", "show"]).split("\n")
    return {
        "namespaces": netns.list_namespaces(ns_prefix(lab_dir)),
        "processes": ours(str(lab_dir.resolve())),
        "root_links": [line for line in root_links if f"crl{lab_id(lab_dir)}" in line],
        "state": (lab_dir / "lab.json").exists(),
    }


NOTHING = {"namespaces": [], "processes": [], "root_links": [], "state": False}


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``check`` until it returns a truthy value; return it."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g}s"
        time.sleep(0.3)


@pytest.fixture
def make_lab(tmp_path: Path) -> Iterator[Callable[..., Lab]]:
    """``make_lab(cluster, nodes=3, name="lab", fence_action="none", tls=False)``: a lab up in
    ``tmp_path/name``. Without fencing by default: these tests drive power themselves, and the
    cluster must not power nodes on and off behind their back. Every lab made is removed with
    ``down --force`` in ``finally``, also when the test fails."""
    made: list[Path] = []

    def make(
        cluster: str, nodes: int = 3, name: str = "lab", fence_action: str = "none",
        tls: bool = False,
    ) -> Lab:  # fmt: skip
        spec = tmp_path / f"{name}.yaml"
        spec.write_text(small_spec(cluster))  # 3 nodes; the lab takes the first ``nodes``
        made.append(tmp_path / name)
        return Lab.up(
            spec, tmp_path / name, nodes=nodes, timeout=60, fence_action=fence_action, tls=tls
        )

    try:
        yield make
    finally:
        for lab_dir in made:
            Lab(lab_dir).down(force=True)
