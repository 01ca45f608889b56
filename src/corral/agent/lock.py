"""One agent per node: an exclusive ``flock`` on ``<state_dir>/agent.lock`` (shell).

Two agents on one state dir would adopt the same services, restart each other's processes
(each one's pid files name the other's), publish one node's status under two leases and guard
it twice. So an agent takes this lock before it touches anything (its embedded store member,
the services it adopts, the lease guard) and holds it for its whole life.

Contract:
- :meth:`AgentLock.acquire` takes the lock without waiting, or raises :class:`AgentRunning`
  naming the holder's pid (read from the file, where each holder writes its own; ``None``
  when the holder has not written it yet).
- The lock is the kernel's: it goes with the holder's process, however that ends (SIGKILL
  too); a stale file left behind locks nothing. The descriptor is close-on-exec, so services
  and the guard the agent starts never inherit it (a service left running for the next agent
  to adopt must not keep that agent out).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from corral.fileio import private_dir

LOCK_NAME = "agent.lock"


class AgentRunning(Exception):
    """Another agent holds the lock of this state dir."""

    def __init__(self, path: Path, pid: int | None) -> None:
        who = f"pid {pid}" if pid is not None else "a process that has not written its pid yet"
        super().__init__(
            f"another corral agent ({who}) already runs on {path.parent} (it holds {path}); "
            "not starting a second one"
        )
        self.path, self.pid = path, pid


class AgentLock:
    def __init__(self, path: Path, fd: int) -> None:
        self.path, self._fd = path, fd

    @classmethod
    def acquire(cls, state_dir: Path) -> AgentLock:
        """Take the lock of ``state_dir`` (created if missing) or raise :class:`AgentRunning`."""
        private_dir(state_dir)
        path = state_dir / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise AgentRunning(path, pid) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)  # written in place: the file's inode is what the lock is on
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        """Give the lock up (idempotent). The file stays: removing it would let a third agent
        lock a new inode while a second one still waits on the old one."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)

    @property
    def held(self) -> bool:
        return self._fd >= 0


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
