"""The state dir and what corral writes there are root's alone: made 0700/0600 whatever the
umask, refused at agent start when others may write the dir, tightened when they may read it."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.agent.lock import AgentLock
from corral.agent.statedir import UnsafeStateDir, check_state_dir
from corral.fileio import private_dir, write_atomic


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The loosest umask an operator's shell might have: corral must not depend on it."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("open_umask")
def test_made_dirs_and_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    state = tmp_path / "var" / "lib" / "corral"
    lock = AgentLock.acquire(state)
    try:
        assert mode(state) == mode(state.parent) == 0o700
        assert mode(state / "agent.lock") == 0o600
        write_atomic(state / "handover.json", "{}")
        write_atomic(state / "controller-inputs" / "x.state", "x")
        assert (
            mode(state / "handover.json") == mode(state / "controller-inputs" / "x.state") == 0o600
        )
        assert mode(state / "controller-inputs") == 0o700
        assert mode(private_dir(tmp_path / "nodes" / "n1")) == 0o700
    finally:
        lock.release()


def test_a_state_dir_others_may_read_is_tightened_with_a_warning(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    said = check_state_dir(tmp_path)
    assert said == f"state dir {tmp_path} had mode 0755 (others could read it): set to 0700"
    assert mode(tmp_path) == 0o700 and check_state_dir(tmp_path) is None


@pytest.mark.parametrize("bits", [0o777, 0o770, 0o1777, 0o720])
def test_a_state_dir_others_may_write_is_refused(tmp_path: Path, bits: int) -> None:
    tmp_path.chmod(bits)
    with pytest.raises(UnsafeStateDir, match=f"has mode {bits:04o}: group or others may write"):
        check_state_dir(tmp_path)
    assert mode(tmp_path) == bits  # left for the operator to look at


def test_a_state_dir_of_another_user_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root can give a dir away")
    tmp_path.chmod(0o700)
    os.chown(tmp_path, 4242, 4242)
    with pytest.raises(UnsafeStateDir, match="owned by uid 4242, not root"):
        check_state_dir(tmp_path)


def test_the_agent_refuses_to_start_on_a_world_writable_state_dir(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o777)
    spec = tmp_path / "c1.yaml"
    spec.write_text("cluster: c1\nnodes:\n  n1: {address: 127.0.0.1}\n")
    argv = [sys.executable, "-m", "corral.cli.main", "agent", "--spec", str(spec), "--node", "n1",
            "--etcd", "http://127.0.0.1:1", "--state-dir", str(state)]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"state dir {state} has mode 0777: group or others may write it" in done.stderr
    assert not (state / "agent.lock").exists()  # nothing started, nothing written
