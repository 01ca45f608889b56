"""CPU time of a process from ``/proc``, to the nanosecond.

``utime``/``stime`` in ``/proc/<pid>/stat`` count clock ticks (10 ms here): over a 10 s window
that is a 0.1 % resolution, too coarse for an idle agent. The scheduler's own runtime
(``/proc/<pid>/task/<tid>/schedstat``, first field, nanoseconds on the CPU) is exact.
"""

from __future__ import annotations

import contextlib
from pathlib import Path


def _runtime(task: Path) -> float:
    return int((task / "schedstat").read_text().split()[0]) / 1e9


def cpu_by_thread(pid: int) -> dict[str, float]:
    """Seconds on the CPU: ``python`` (the main thread) and ``other threads`` (gRPC's)."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that just ended
            name = "python" if task.name == str(pid) else "other threads"
            out[name] = out.get(name, 0.0) + _runtime(task)
    return out


def cpu_seconds(pid: int) -> float:
    """Seconds on the CPU of every thread of ``pid``."""
    return sum(cpu_by_thread(pid).values())


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0
