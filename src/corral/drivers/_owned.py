"""The instance a process-running driver owns: its own child, or the pid record of one that a
previous agent started (adoption). Shared by the ``process`` and ``haproxy`` drivers.

``<state_dir>/run/<name>.pid`` holds a :class:`PidRecord`: pid, start time (``/proc/<pid>/stat``
field 22), boot id, wall-clock start and command. A pid alone does not name a process (pids are
recycled), so a record names a live instance only while a process with that pid *and* start time
leads its own session, in the same boot. The record is written after a start and removed when
the instance is seen to end or is stopped.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from corral.drivers import _files
from corral.drivers._group import poll_exit
from corral.drivers._procfs import boot_id, group_members, read_stat
from corral.drivers.base import DriverStatus


@dataclass(frozen=True)
class PidRecord:
    """What the pid file says about the instance a driver started."""

    pid: int
    start_time: int  # clock ticks after boot, /proc/<pid>/stat field 22
    boot_id: str
    started_at: float  # wall clock (seconds since the epoch), for operators and backoff
    command: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> PidRecord:
        """Parse a pid file; ValueError when it is not one of ours."""
        try:
            data = json.loads(text)
            return cls(
                pid=int(data["pid"]),
                start_time=int(data["start_time"]),
                boot_id=str(data["boot_id"]),
                started_at=float(data["started_at"]),
                command=str(data["command"]),
            )
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a corral pid file: {exc}") from exc


def leader_alive(record: PidRecord) -> bool:
    """The recorded process lives and still leads its own session (not a recycled pid)."""
    stat = read_stat(record.pid)
    return (
        stat is not None
        and stat.alive
        and stat.start_time == record.start_time
        and stat.session == record.pid
    )


def live_members(record: PidRecord) -> list[int]:
    """Live processes of the group this record started (empty when it has ended).

    When the pid now names a process with another start time, the pid was recycled, which the
    kernel does only once group ``pid`` is empty: nothing of ours is left. Otherwise the kernel
    keeps the pid (as a group id) reserved while any member lives, so members of group ``pid``
    are ours. (The one blind spot: our group ended, a stranger got the pid, made a group of its
    own and died, leaving members. Pids cycle through 4 million.)
    """
    stat = read_stat(record.pid)
    if stat is not None and stat.start_time != record.start_time:
        return []
    return group_members(record.pid)


class OwnedInstance:
    """Our child (``proc``) or an adopted record (``record``), and whether we stopped it.

    The child is a plain :class:`subprocess.Popen`, polled without blocking: an asyncio child
    dies with its transport, a Popen child outlives the agent so the next one can adopt it.
    """

    def __init__(self, pid_path: Path, log_path: Path) -> None:
        self.pid_path = pid_path
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None  # our child, current or last
        self.record: PidRecord | None = None  # the instance we own (child or adopted)
        self.stopped_by_us = False

    def started(self, proc: subprocess.Popen[bytes], command: str) -> None:
        """``proc`` is our new instance: record it (unless it is already gone and reaped)."""
        self.proc, self.stopped_by_us = proc, False
        stat = read_stat(proc.pid)
        if stat is not None:  # it runs, or is a zombie we have not reaped: pid still ours
            self.record = PidRecord(proc.pid, stat.start_time, boot_id(), time.time(), command)
            _files.write_atomic(self.pid_path, self.record.to_json())

    def status(self, label: str, describe: Callable[[int], str]) -> DriverStatus:
        """``running``/``stopped``/``failed`` with ``label`` before the pid (``"pid"``,
        ``"master pid"``) and ``describe(exit status)`` for an ended child of ours."""
        if self.proc is not None:
            code = self.proc.poll()
            if code is None:
                return DriverStatus("running", f"{label} {self.proc.pid}")
            self.forget_pid_file()
            if self.stopped_by_us:
                return DriverStatus("stopped", f"stopped by corral ({describe(code)})")
            return DriverStatus("stopped" if code == 0 else "failed", describe(code))
        record = self.record or self.read_record()
        if record is None:
            return DriverStatus("stopped")
        if record.boot_id != boot_id():
            return DriverStatus("stopped", "pid file from an earlier boot")
        if leader_alive(record):
            return DriverStatus("running", f"{label} {record.pid} (adopted)")
        return DriverStatus(
            "failed", f"{label} {record.pid} ended while no agent watched it (exit code unknown)"
        )

    def adopt(self) -> bool:
        """True when our child runs or the pid file names a live instance of ours."""
        if self.proc is not None and self.proc.poll() is None:
            return True
        record = self.read_record()
        if record is None:
            return False
        if record.boot_id != boot_id():
            self.forget_pid_file()  # an earlier boot's pid names nothing of ours
            return False
        if not leader_alive(record):
            return False  # keep the file: status() reports the death, stop() clears it
        self.record, self.proc, self.stopped_by_us = record, None, False
        return True

    def to_stop(self) -> int | None:
        """Mark the instance stopped by us; the group id to signal if any member is left."""
        self.stopped_by_us = True
        record = self.record or self.read_record()
        if record is not None and record.boot_id == boot_id() and live_members(record):
            return record.pid
        return None

    async def stopped(self, kill_timeout: float) -> None:
        """After the group ended: reap our child (no zombie) and forget the instance."""
        if self.proc is not None:
            await poll_exit(self.proc, kill_timeout)
        self.record = None
        self.forget_pid_file()

    def read_record(self) -> PidRecord | None:
        try:
            return PidRecord.from_json(self.pid_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            _files.append_log(
                self.log_path, f"--- corral {_files.stamp()} ignoring {self.pid_path}: {exc}"
            )
            return None

    def forget_pid_file(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.pid_path.unlink()
