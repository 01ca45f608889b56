"""Process groups of supervised services (shared by the process, HAProxy and Galera drivers).

A supervised service leads its own session and process group, so stopping it means stopping
the group: a graceful signal first (the driver's own choice: SIGTERM to the group, SIGUSR1 to
an HAProxy master), SIGKILL to the whole group after the stop timeout, and an error naming the
processes still alive after the kill timeout. Every step is logged to the service's log.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from corral.drivers import _files
from corral.drivers._procfs import group_members
from corral.drivers.base import DriverError
from corral.priority import service_argv

POLL_INTERVAL = 0.05  # seconds between checks while a process group winds down


def spawn_service(argv: Sequence[str], *, log_path: Path, name: str) -> subprocess.Popen[bytes]:
    """Start ``argv`` as a service: at the normal priority, leading a session (and process
    group) of its own, stdin from /dev/null, stdout and stderr appended to ``log_path`` after a
    line that names it. DriverError (naming ``name``) when it cannot be executed."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        log.write(f"--- corral {_files.stamp()} {name}: starting: {list(argv)}\n".encode())
        log.flush()
        try:
            return subprocess.Popen(
                service_argv(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd="/",
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise DriverError(f"{name}: cannot start {argv[0]} ({exc.strerror})") from exc


def signal_group(pgid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to group ``pgid``; a group already gone is fine."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass  # already gone
    except PermissionError as exc:
        raise DriverError(f"not allowed to signal process group {pgid}: {exc.strerror}") from exc


async def poll_exit(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    """Our child's exit status once it has exited (reaping it), None after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    for _ in range(int(timeout / POLL_INTERVAL) + 2):
        returncode = proc.poll()
        if returncode is not None or loop.time() >= deadline:
            return returncode
        await asyncio.sleep(min(POLL_INTERVAL, max(0.0, deadline - loop.time())))
    return proc.poll()


async def wait_group_gone(pgid: int, timeout: float) -> bool:
    """True once no live process is left in group ``pgid``; False after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    for _ in range(int(timeout / POLL_INTERVAL) + 2):
        if not group_members(pgid):
            return True
        if loop.time() >= deadline:
            break
        await asyncio.sleep(POLL_INTERVAL)
    return not group_members(pgid)


async def stop_group(
    pgid: int,
    *,
    name: str,
    log_path: Path,
    soft: Callable[[], None],
    soft_name: str,
    stop_timeout: float,
    kill_timeout: float,
) -> None:
    """``soft()`` (named ``soft_name`` in the log), then SIGKILL to the group if it is still
    there after ``stop_timeout``; DriverError if it outlives ``kill_timeout`` more."""
    _files.append_log(log_path, f"--- corral {_files.stamp()} {name}: {soft_name}")
    soft()
    if await wait_group_gone(pgid, stop_timeout):
        return
    _files.append_log(
        log_path,
        f"--- corral {_files.stamp()} {name}: still running "
        f"{stop_timeout:g}s after {soft_name}: SIGKILL",
    )
    signal_group(pgid, signal.SIGKILL)
    if await wait_group_gone(pgid, kill_timeout):
        return
    left = group_members(pgid)
    raise DriverError(f"{name}: processes {left} still alive {kill_timeout:g}s after SIGKILL")
