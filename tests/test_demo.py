"""`make demo` runs `corral demo`: it must work end to end and leave nothing running."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from corral.cli.main import cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.etcd
def test_demo_runs_the_embedded_store_and_stops_it(tmp_path: Path) -> None:
    run_dir = tmp_path / "demo"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "corral.cli.main",
            "demo",
            str(ROOT / "examples/openstack.yaml"),
            "--run-dir",
            str(run_dir),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "cluster cloud1: 3 nodes, 11 resources" in out
    assert "etcd healthy" in out
    assert "ctl1 won=True, ctl2 won=False" in out
    assert "supervisor restarted" in out
    assert "etcd members stopped" in out
    assert not (run_dir / "pids").exists()


def test_demo_refuses_a_bad_spec(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("cluster: x\n")
    result = CliRunner().invoke(cli, ["demo", str(bad), "--run-dir", str(tmp_path / "d")])
    assert result.exit_code == 1
    assert "nodes" in result.output


def test_demo_down_stops_only_recorded_processes(tmp_path: Path) -> None:
    run_dir = tmp_path / "demo"
    run_dir.mkdir()
    recorded = subprocess.Popen(["sleep", "60"])
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        (run_dir / "pids").write_text(f"{recorded.pid}\n999999999\n")
        result = CliRunner().invoke(cli, ["demo-down", "--run-dir", str(run_dir)])
        assert result.exit_code == 0
        assert recorded.wait(timeout=5) != 0
        assert bystander.poll() is None
        assert not run_dir.exists()
    finally:
        for proc in (recorded, bystander):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
