"""`make demo` runs `corral demo`: the example control plane in the lab, a failover tour, and
`corral demo-down` that leaves nothing behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from corral.cli.main import cli
from corral.lab import netns
from corral.lab.lab import ns_prefix

ROOT = Path(__file__).resolve().parents[1]
NEEDS_ROOT = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("haproxy") is None,
    reason="needs root and HAProxy (network namespaces)",
)


def corral(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "corral.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )


@NEEDS_ROOT
def test_demo_tours_a_failover_and_demo_down_cleans_up() -> None:
    lab_dir = Path(tempfile.mkdtemp(prefix="crld-", dir="/tmp")) / "lab"
    try:
        done = corral("demo", "examples/openstack.yaml", "--dir", str(lab_dir))
        out = done.stdout
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "cluster cloud1: 3 nodes, 11 resources" in out
        assert "every VIP held and every instance healthy" in out
        assert "powered off (link down, every process killed)" in out
        assert "VIP 198.18.0.100 is up on" in out  # ctl1's VIP moved
        assert "holds 198.18.0.100 and runs cinder-volume (active-passive)" in out
        assert "started cinder-volume: assigned to this node" in out  # on another node
        assert "served again" in out and "fenced by lab" in out
        assert "rejoined and its VIP failed back home" in out
        assert "make demo-down" in out
        assert netns.list_namespaces(ns_prefix(lab_dir)), "the demo leaves the cluster running"
    finally:
        down = corral("demo-down", "--dir", str(lab_dir), timeout=120)
        shutil.rmtree(lab_dir.parent, ignore_errors=True)
    assert down.returncode == 0, down.stderr
    assert netns.list_namespaces(ns_prefix(lab_dir)) == []


def test_demo_refuses_a_bad_spec(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("cluster: x\n")
    result = CliRunner().invoke(cli, ["demo", str(bad), "--dir", str(tmp_path / "d")])
    assert result.exit_code == 1
    assert "nodes" in result.output


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs setpriv")
def test_demo_as_a_normal_user_says_it_needs_root() -> None:
    done = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            sys.executable,
            "-m",
            "corral.cli.main",
            "demo",
            "examples/openstack.yaml",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
        env={**os.environ, "HOME": "/tmp"},
    )
    assert done.returncode == 1
    assert "run it as root" in done.stderr
