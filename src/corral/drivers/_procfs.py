"""Reading processes from ``/proc`` (Linux only): identity, liveness, process-group members.

A pid alone does not name a process: the kernel recycles pids. A process is named here by
``(boot id, pid, start time)``, where the start time is field 22 of ``/proc/<pid>/stat`` (clock
ticks since boot) and the boot id comes from ``/proc/sys/kernel/random/boot_id``; within one
boot no two processes share a pid and a start time.

Every function here is synchronous and cheap (procfs reads do not block on disk); callers in
async code call them directly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class ProcStat:
    """The fields of ``/proc/<pid>/stat`` that drivers use."""

    pid: int
    state: str  # R, S, D, T (stopped), t, Z (zombie), X, I
    ppid: int
    pgrp: int
    session: int
    start_time: int  # field 22: clock ticks after boot

    @property
    def alive(self) -> bool:
        """False for a zombie or a dead task: it runs no code any more."""
        return self.state not in ("Z", "X", "x")


def parse_stat(pid: int, raw: bytes) -> ProcStat:
    """Parse one ``/proc/<pid>/stat`` line.

    The command name (field 2) is in parentheses and may itself contain spaces and
    parentheses, so the fields are counted from the *last* ``)``.
    """
    rest = raw[raw.rindex(b")") + 2 :].split()
    # rest[0] is field 3 (state); field n is rest[n - 3].
    return ProcStat(
        pid=pid,
        state=rest[0].decode(),
        ppid=int(rest[1]),
        pgrp=int(rest[2]),
        session=int(rest[3]),
        start_time=int(rest[19]),
    )


def read_stat(pid: int) -> ProcStat | None:
    """The stat of ``pid``, or None when there is no such process (or it vanished mid-read)."""
    try:
        raw = (PROC / str(pid) / "stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return None
    try:
        return parse_stat(pid, raw)
    except (ValueError, IndexError):
        return None  # a task torn down while we read it


def boot_id() -> str:
    """This boot's random id: start times from another boot mean nothing."""
    return (PROC / "sys/kernel/random/boot_id").read_text().strip()


def group_members(pgid: int) -> list[int]:
    """Pids of the live (non-zombie) processes of process group ``pgid``, sorted.

    Zombies are left out on purpose: a killed member whose parent has not reaped it yet no
    longer runs, and a reaper outside our control (PID 1) may take seconds to collect it.
    """
    members: list[int] = []
    for entry in os.listdir(PROC):
        if not entry.isdigit():
            continue
        stat = read_stat(int(entry))
        if stat is not None and stat.pgrp == pgid and stat.alive:
            members.append(stat.pid)
    return sorted(members)
