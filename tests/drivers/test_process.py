"""The process driver against real processes: groups, logs, signals, pid files, adoption."""

from __future__ import annotations

import json
import os
import pwd
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from corral.drivers import ProcessSupervisor
from corral.drivers._procfs import boot_id, group_members, read_stat
from corral.drivers.base import DriverError, NodeContext
from corral.spec.model import ProcessDriver as ProcessSpec
from corral.spec.secrets import SecretRef

from .helpers import alive, eventually, kill_quietly

LOOP_FOREVER = "while :; do sleep 0.1; done"


@pytest.fixture
def node(tmp_path: Path) -> NodeContext:
    return NodeContext("n1", "127.0.0.1", {"zone": "z9"}, state_dir=tmp_path / "state")


@pytest.fixture
def drivers() -> Iterator[list[ProcessSupervisor]]:
    """Drivers a test made; whatever they still run is killed by group at teardown."""
    made: list[ProcessSupervisor] = []
    yield made
    for d in made:
        if d.pid is not None:
            for pid in group_members(leader(d)):
                kill_quietly(pid)


Maker = Callable[..., ProcessSupervisor]


@pytest.fixture
def make(node: NodeContext, drivers: list[ProcessSupervisor]) -> Maker:
    """``make(command, name="svc", settle=0.1, **spec_fields)`` -> a driver cleaned up after."""

    def make(command: str, name: str = "svc", settle: float = 0.1, **kw: Any) -> ProcessSupervisor:
        d = ProcessSupervisor(name, ProcessSpec(command=command, **kw), node, settle=settle)
        drivers.append(d)
        return d

    return make


def leader(d: ProcessSupervisor) -> int:
    assert d.pid is not None, "the driver knows no pid"
    return d.pid


def read_log(d: ProcessSupervisor) -> str:
    return d.log_path.read_text() if d.log_path.exists() else ""


# --- happy path ---------------------------------------------------------------------------


async def test_start_status_stop(make: Maker) -> None:
    d = make("echo hello {node.name} in {node.zone}; exec sleep 30")
    assert (await d.status()).state == "stopped"
    await d.start()
    st = await d.status()
    assert st.state == "running" and str(d.pid) in st.detail
    await eventually(lambda: "hello n1 in z9" in read_log(d), what="output in the log")

    record = json.loads(d.pid_path.read_text())
    stat = read_stat(record["pid"])
    assert stat is not None and stat.start_time == record["start_time"]
    assert record["boot_id"] == boot_id() and stat.session == record["pid"]  # own session
    assert d.started_at is not None and abs(d.started_at - time.time()) < 60

    pid = leader(d)
    await d.stop()
    assert not alive(pid)
    assert (await d.status()).state == "stopped"
    assert not d.pid_path.exists()
    assert "SIGTERM" in read_log(d)


async def test_env_cwd_and_log_appends_across_starts(make: Maker, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    d = make(
        'echo "cwd=$(pwd) greet=$GREETING res=$CORRAL_RESOURCE node=$CORRAL_NODE"; exec sleep 30',
        cwd=str(work),
        env={"GREETING": "hi-{node.address}"},
    )
    await d.start()

    def lines() -> list[str]:
        return [x for x in read_log(d).splitlines() if x.startswith("cwd=")]

    await eventually(lambda: len(lines()) == 1, what="output")
    assert lines() == [f"cwd={work} greet=hi-127.0.0.1 res=svc node=n1"]
    await d.stop()
    await d.start()
    await eventually(lambda: len(lines()) == 2, what="second start appended")
    await d.stop()


async def test_start_is_idempotent_and_stop_of_stopped_succeeds(make: Maker) -> None:
    d = make("exec sleep 30")
    await d.stop()  # never started
    await d.start()
    pid = leader(d)
    await d.start()
    assert d.pid == pid  # same instance, not a second one
    await d.stop()
    await d.stop()
    assert (await d.status()).state == "stopped"


# --- exits and failures -------------------------------------------------------------------


async def test_nonzero_exit_after_start_is_failed_with_code(make: Maker) -> None:
    d = make("sleep 0.3; exit 3")
    await d.start()
    await eventually(lambda: d.exit_code is not None, what="exit")
    st = await d.status()
    assert st.state == "failed" and "exited with code 3" in st.detail
    assert d.exit_code == 3
    assert not d.pid_path.exists()  # an ended instance leaves no pid file behind
    await d.stop()
    assert (await d.status()).state == "stopped"


async def test_exit_zero_is_stopped_not_failed(make: Maker) -> None:
    d = make("true")
    await d.start()
    await eventually(lambda: d.exit_code == 0, what="exit 0")
    assert (await d.status()).state == "stopped"


async def test_immediate_failure_raises_with_code_and_log_tail(make: Maker) -> None:
    d = make("echo 'config file /etc/x missing' >&2; exit 4", settle=2.0)
    with pytest.raises(DriverError, match=r"exited with code 4.*config file /etc/x missing"):
        await d.start()
    assert (await d.status()).state == "failed"

    typo = make("/nonexistent/daemon --flag", name="typo", settle=2.0)
    with pytest.raises(DriverError, match=r"code 127.*not found"):
        await typo.start()


async def test_a_secret_in_env_reaches_the_command_and_not_the_error(
    make: Maker, tmp_path: Path
) -> None:
    secret = tmp_path / "db.pw"
    secret.write_text("hunter2\n")
    secret.chmod(0o600)
    d = make('echo "cannot log in with $DB_PASSWORD" >&2; exit 1', settle=2.0,
             env={"DB_PASSWORD": SecretRef(file=str(secret))})  # fmt: skip
    with pytest.raises(DriverError) as caught:
        await d.start()
    assert "cannot log in with <redacted>" in str(caught.value)
    assert "cannot log in with hunter2" in read_log(d)  # the service's own log is its own
    secret.chmod(0o640)
    with pytest.raises(DriverError, match=r"svc: env DB_PASSWORD: .* mode 0640"):
        await d.start()


async def test_bad_cwd_and_unknown_user_are_driver_errors(make: Maker, tmp_path: Path) -> None:
    with pytest.raises(DriverError, match="No such file or directory"):
        await make("exec sleep 30", cwd=str(tmp_path / "missing")).start()
    with pytest.raises(DriverError, match="no such user 'no-such-user-x'"):
        await make("exec sleep 30", name="u", user="no-such-user-x").start()


async def test_killed_by_signal_is_failed(make: Maker) -> None:
    d = make("exec sleep 30")  # exec: the shell is replaced, sleep leads the group
    await d.start()
    os.kill(leader(d), signal.SIGKILL)
    await eventually(lambda: d.exit_code is not None, what="death")
    st = await d.status()
    assert st.state == "failed" and "SIGKILL" in st.detail


async def test_child_killed_under_shell_reports_shell_code(make: Maker) -> None:
    d = make("sleep 30 && echo done")  # dash waits for sleep: it stays the leader
    await d.start()
    await eventually(lambda: len(group_members(leader(d))) == 2, what="shell and sleep")
    child = next(p for p in group_members(leader(d)) if p != d.pid)
    os.kill(child, signal.SIGKILL)
    await eventually(lambda: d.exit_code is not None, what="shell exit")
    st = await d.status()
    assert st.state == "failed" and "137" in st.detail and "SIGKILL" in st.detail


# --- stopping -----------------------------------------------------------------------------


async def test_stop_ends_the_whole_group(make: Maker) -> None:
    d = make("sleep 300 & sleep 301 & wait")
    await d.start()
    await eventually(lambda: len(group_members(leader(d))) == 3, what="3 members")
    members = group_members(leader(d))
    await d.stop()
    assert not any(alive(p) for p in members)


async def test_sigterm_ignored_escalates_to_sigkill(make: Maker) -> None:
    d = make(f"trap '' TERM; echo armed; {LOOP_FOREVER}", stop_timeout=0.5)
    await d.start()
    await eventually(lambda: "armed" in read_log(d))
    pid = leader(d)
    t0 = time.monotonic()
    await d.stop()
    took = time.monotonic() - t0
    assert not alive(pid)
    assert 0.4 < took < 10  # waited for the stop timeout, then forced
    assert "SIGKILL" in read_log(d)
    assert (await d.status()).state == "stopped"


async def test_sigstopped_process_is_running_and_stops_promptly(make: Maker) -> None:
    d = make("exec sleep 300", stop_timeout=30)
    await d.start()
    os.killpg(leader(d), signal.SIGSTOP)
    await eventually(
        lambda: (s := read_stat(leader(d))) is not None and s.state == "T", what="stopped"
    )
    assert (await d.status()).state == "running"  # hangs are for health checks
    t0 = time.monotonic()
    await d.stop()  # SIGCONT after SIGTERM: no wait for the 30 s stop timeout
    assert time.monotonic() - t0 < 10
    assert "SIGKILL" not in read_log(d)


async def test_leader_death_leaves_members_that_start_and_stop_clean_up(make: Maker) -> None:
    d = make("sleep 300 & wait")
    await d.start()
    await eventually(lambda: len(group_members(leader(d))) == 2, what="2 members")
    orphan = next(p for p in group_members(leader(d)) if p != d.pid)
    os.kill(leader(d), signal.SIGKILL)  # the shell dies, its child lives on
    await eventually(lambda: d.exit_code is not None, what="leader death")
    assert (await d.status()).state == "failed"
    assert alive(orphan)
    await d.start()  # a fresh start first ends what the dead instance left
    assert not alive(orphan)
    await d.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
async def test_runs_as_another_user(make: Maker, node: NodeContext) -> None:
    nobody = pwd.getpwnam("nobody")
    d = make('echo "uid=$(id -u) user=$USER home=$HOME"; exec sleep 30', user="nobody")
    await d.start()
    await eventually(lambda: "uid=" in read_log(d))
    assert f"uid={nobody.pw_uid} user=nobody home={nobody.pw_dir}" in read_log(d)
    assert os.stat(f"/proc/{d.pid}").st_uid == nobody.pw_uid
    await d.stop()


# --- adoption after an agent restart ------------------------------------------------------

AGENT = textwrap.dedent(
    """
    import asyncio, os, sys
    from pathlib import Path
    from corral.drivers import ProcessSupervisor, NodeContext
    from corral.spec.model import ProcessDriver

    async def main():
        node = NodeContext("n1", "127.0.0.1", state_dir=Path(sys.argv[1]))
        d = ProcessSupervisor("svc", ProcessDriver(command=sys.argv[2]), node)
        await d.start()
        print(d.pid, flush=True)
        if sys.argv[3] == "crash":
            os._exit(0)  # like kill -9: no cleanup at all

    asyncio.run(main())
    """
)


def run_old_agent(node: NodeContext, command: str, how: str) -> int:
    """Start ``command`` from a separate agent process that then exits; return the pid."""
    out = subprocess.run(
        [sys.executable, "-c", AGENT, str(node.state_dir), command, how],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return int(out.stdout.strip())


@pytest.mark.parametrize("how", ["clean-exit", "crash"])
async def test_new_agent_adopts_process_of_old_agent(
    make: Maker, node: NodeContext, how: str
) -> None:
    pid = run_old_agent(node, "exec sleep 300", how)
    try:
        assert alive(pid)  # the old agent's exit did not take its service down
        d = make("exec sleep 300")
        assert await d.adopt()
        st = await d.status()
        assert st.state == "running" and "adopted" in st.detail and d.pid == pid
        await d.start()  # already running: nothing new is started
        assert d.pid == pid
        await d.stop()
        await eventually(lambda: not alive(pid), what="adopted process stopped")
        assert (await d.status()).state == "stopped"
    finally:
        kill_quietly(pid)


async def test_adopted_process_dying_is_failed_with_unknown_code(
    make: Maker, node: NodeContext
) -> None:
    pid = run_old_agent(node, "exec sleep 300", "crash")
    d = make("exec sleep 300")
    assert await d.adopt()
    os.kill(pid, signal.SIGKILL)
    await eventually(lambda: not alive(pid), what="death")
    st = await d.status()
    assert st.state == "failed" and "exit code unknown" in st.detail
    await d.stop()
    assert (await d.status()).state == "stopped"


def write_pid_file(d: ProcessSupervisor, pid: int, start_time: int, boot: str) -> None:
    d.pid_path.parent.mkdir(parents=True, exist_ok=True)
    d.pid_path.write_text(
        json.dumps(
            {"pid": pid, "start_time": start_time, "boot_id": boot, "started_at": 0, "command": "x"}
        )
    )


async def test_recycled_pid_is_never_adopted_nor_killed(make: Maker) -> None:
    stranger = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        stat = read_stat(stranger.pid)
        assert stat is not None
        d = make("exec sleep 300")
        write_pid_file(d, stranger.pid, stat.start_time + 1, boot_id())  # same pid, other process
        assert not await d.adopt()
        assert (await d.status()).state == "failed"  # ours died unseen; the pid is someone else's
        await d.stop()
        assert alive(stranger.pid)  # the stranger is untouched
        assert (await d.status()).state == "stopped"

        d2 = make("exec sleep 300", name="other-boot")
        write_pid_file(d2, stranger.pid, stat.start_time, "another-boot-id")
        assert not await d2.adopt()
        assert (await d2.status()).state == "stopped"
        await d2.stop()
        assert alive(stranger.pid)
    finally:
        stranger.kill()
        stranger.wait(timeout=10)


async def test_unreadable_pid_file_is_ignored_and_logged(make: Maker) -> None:
    d = make("exec sleep 300")
    d.pid_path.parent.mkdir(parents=True, exist_ok=True)
    d.pid_path.write_text("12345\n")  # a pid file, but not one of ours
    assert not await d.adopt()
    assert (await d.status()).state == "stopped"
    assert "ignoring" in read_log(d)


async def test_roles_are_refused(make: Maker) -> None:
    d = make("exec sleep 300")
    with pytest.raises(DriverError, match="no promoted role"):
        await d.promote()
    with pytest.raises(DriverError, match="no promoted role"):
        await d.demote()


def test_bad_resource_names_are_refused(node: NodeContext) -> None:
    for bad in ("../x", ".hidden", "a/b", ""):
        with pytest.raises(DriverError, match="file name"):
            ProcessSupervisor(bad, ProcessSpec(command="true"), node)
