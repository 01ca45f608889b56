"""``corral lab down --force`` after a crash, and two labs side by side."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from corral.lab import netns
from corral.lab.lab import Lab, LabError, ns_prefix

from .conftest import NEEDS_ROOT, NOTHING, leftovers, ours, small_spec

pytestmark = [pytest.mark.etcd, NEEDS_ROOT]

CRASH_AFTER_UP = """
import os, signal, sys
from pathlib import Path
from corral.lab.lab import Lab, LabError, ns_prefix
Lab.up(Path(sys.argv[1]), Path(sys.argv[2]), timeout=60, fence_action="off")
os.kill(os.getpid(), signal.SIGKILL)  # the test process "crashes" with the lab up
"""


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "corral.cli.lab", *args], capture_output=True, text=True, timeout=60
    )


def crashed_lab(tmp_path: Path, cluster: str) -> Path:
    spec = tmp_path / "spec.yaml"
    spec.write_text(small_spec(cluster))
    lab_dir = tmp_path / "lab"
    proc = subprocess.run(
        [sys.executable, "-c", CRASH_AFTER_UP, str(spec), str(lab_dir)],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    return lab_dir


def test_down_force_after_a_crash_from_the_state_file(tmp_path: Path) -> None:
    lab_dir = crashed_lab(tmp_path, "labcrash")
    try:
        left = leftovers(lab_dir)
        assert left["state"] and len(left["namespaces"]) == 5 and len(left["processes"]) >= 6
        status = cli("status", "--dir", str(lab_dir))
        assert status.returncode == 0 and status.stdout.count("power on, link up") == 3
        out = cli("down", "--dir", str(lab_dir), "--force")
        assert out.returncode == 0, out.stderr
        assert out.stdout.count("removed") == 5
        assert leftovers(lab_dir) == NOTHING
        again = cli("down", "--dir", str(lab_dir), "--force")
        assert (again.returncode, again.stdout.strip()) == (0, "nothing to remove")
    finally:
        Lab(lab_dir).down(force=True)


def test_down_force_without_a_usable_state_file_finds_the_lab_by_name(tmp_path: Path) -> None:
    lab_dir = crashed_lab(tmp_path, "labnostate")
    try:
        (lab_dir / "lab.json").write_text("{ half a state")
        refused = cli("down", "--dir", str(lab_dir))
        assert refused.returncode != 0 and "--force" in refused.stderr
        assert len(netns.list_namespaces(ns_prefix(lab_dir))) == 5
        (lab_dir / "lab.json").unlink()
        out = cli("down", "--dir", str(lab_dir), "--force")
        assert out.returncode == 0, out.stderr
        assert leftovers(lab_dir) == NOTHING
    finally:
        Lab(lab_dir).down(force=True)


def test_two_labs_with_the_same_addresses_coexist(make_lab: Callable[..., Lab]) -> None:
    a = make_lab("labtwin-a", nodes=1, name="a")
    b = make_lab("labtwin-b", nodes=1, name="b")
    assert a.node("n1")["ns"] != b.node("n1")["ns"]
    assert a.online_nodes() == b.online_nodes() == {"n1"}  # each client reaches its own n1
    pid_b = b.node("n1")["agent_pid"]
    a.down()
    assert leftovers(a.dir) == NOTHING
    assert pid_b in ours(str(b.dir)) and b.online_nodes() == {"n1"}
    assert os.path.exists(b.state_path)


def test_up_that_never_answers_shows_the_agent_logs_and_cleans_up(tmp_path: Path) -> None:
    broken = tmp_path / "python"  # an "interpreter" whose agents die at once
    broken.write_text("#!/bin/sh\necho 'agent cannot start: boom' >&2\nexit 3\n")
    broken.chmod(0o755)
    spec = tmp_path / "spec.yaml"
    spec.write_text(small_spec("labbroken"))
    lab_dir = tmp_path / "lab"
    with pytest.raises(LabError) as info:
        Lab.up(spec, lab_dir, timeout=3, python=str(broken), fence_action="none")
    message = str(info.value)
    assert "n1, n2, n3 not registered after 3s" in message
    assert message.count("agent cannot start: boom") == 3  # every node's log tail
    assert leftovers(lab_dir) == NOTHING
    assert (lab_dir / "nodes" / "n1" / "agent.log").exists()  # logs are kept


def test_a_second_up_in_the_same_dir_is_refused(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab("labtwice", nodes=1)
    with pytest.raises(LabError, match="a lab is up"):
        Lab.up(Path(lab.state()["spec"]), lab.dir)
    assert lab.online_nodes() == {"n1"}  # the running lab is untouched


def test_data_dir_holds_the_nodes_state_and_down_removes_the_store_data(tmp_path: Path) -> None:
    spec, lab_dir, disk = tmp_path / "spec.yaml", tmp_path / "lab", tmp_path / "disk"
    spec.write_text(small_spec("labdata"))
    lab = Lab.up(spec, lab_dir, nodes=1, timeout=60, fence_action="none", data_dir=disk)
    try:
        state_dir = disk.resolve() / "nodes" / "n1"
        assert lab.node("n1")["state_dir"] == str(state_dir)
        assert (state_dir / "etcd" / "n1" / "member").is_dir()  # etcd's data is on the disk
        assert not (lab_dir / "nodes").exists()
    finally:
        lab.down()
    assert not (state_dir / "etcd" / "n1").exists()
    assert (state_dir / "agent.log").exists()  # logs are kept
    assert leftovers(lab_dir) == NOTHING
