"""Scheduling priority of corral's own processes: load on the node must not starve them.

Corosync runs its token ring at real-time priority because a starved membership daemon turns a
busy machine into false deaths. corral's answer, the default for ``corral agent`` (the systemd
unit carries the same weights):

- the agent and its embedded etcd member: nice -10; etcd also best-effort I/O priority 0 (the
  highest of the class; the agent's I/O priority follows its nice value). Not real-time: a
  Python agent at SCHED_RR would starve the services it manages if it ever spun, and at nice
  -10 it already gets about 9 times the CPU share of a nice-0 hog when both want a core (CFS
  weights 9548 and 1024). etcd's fsyncs go first in the I/O queue (its lease renewals wait for
  its disk). The services the agent starts run at the normal priority (:func:`service_argv`):
  only corral's own work is raised.
- the lease guard (:mod:`corral.agent.guard`): SCHED_RR at priority 1, the lowest real-time
  one. It sleeps all the time but must act within its 50 ms precision at the rule-1 deadline
  however loaded the node is. Its real-time CPU is bounded by ``RLIMIT_RTTIME``: 200 ms
  without blocking sends SIGXCPU, whose handler (:func:`raise_guard`) drops the guard to
  nice -10 and says so; the hard limit (1 s later) is the kernel's SIGKILL, never reached by
  a guard that handles the first signal. A guard that loses its real-time slot is demoted, not
  killed: a dead guard would leave rule 1 to an agent that may be gone.

Every call here is best effort: without the privilege (not root, a container without
CAP_SYS_NICE) it returns what it could not do, and the process runs at normal priority.
"""

from __future__ import annotations

import os
import resource
import signal
from collections.abc import Callable, Sequence
from types import FrameType

import psutil

AGENT_NICE = -10
NICE = "/usr/bin/nice"  # coreutils (Essential: yes on Debian)
GUARD_RT_PRIORITY = 1
GUARD_RTTIME_US = 200_000  # real-time CPU without a blocking call before SIGXCPU
GUARD_RTTIME_GRACE_US = 1_000_000  # then the hard limit (SIGKILL) this much later


def raise_process(pid: int = 0, *, io: bool = False) -> list[str]:
    """Nice ``AGENT_NICE`` for ``pid`` (0: this process) and, with ``io``, best-effort I/O
    priority 0 (without it the I/O priority follows the nice value: best-effort 2). Returns
    what could not be done (empty: all applied)."""
    problems = []
    try:
        os.setpriority(os.PRIO_PROCESS, pid, AGENT_NICE)
    except OSError as exc:
        problems.append(f"nice {AGENT_NICE}: {exc.strerror}")
    if io:
        try:
            psutil.Process(pid or os.getpid()).ionice(psutil.IOPRIO_CLASS_BE, 0)
        except (psutil.Error, OSError) as exc:
            problems.append(f"I/O priority best-effort 0: {exc}")
    return problems


def service_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` to run a managed service (or a resource agent that starts one) at the normal
    priority: the agent's raised nice value would be inherited by its children otherwise.
    Through coreutils' ``nice`` (it execs: same pid, no pre-exec hook in a threaded agent);
    the agent's I/O priority follows its nice value, so the child's does too."""
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if current >= 0:
        return list(argv)
    return [NICE, "-n", str(-current), *argv]


def raise_guard(told: Callable[[str], None]) -> list[str]:
    """SCHED_RR at ``GUARD_RT_PRIORITY`` for this process, its real-time CPU bounded (see the
    module docstring); ``told`` gets the line that says the guard was demoted, if it ever is.
    Call it after the guard's imports and spec parse: those take more CPU than the budget.
    Returns what could not be done; a guard that cannot be real-time still gets nice -10."""
    limit = (GUARD_RTTIME_US, GUARD_RTTIME_US + GUARD_RTTIME_GRACE_US)

    def on_xcpu(_signum: int, _frame: FrameType | None) -> None:
        told(demote_guard())

    try:
        signal.signal(signal.SIGXCPU, on_xcpu)
        resource.setrlimit(resource.RLIMIT_RTTIME, limit)
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(GUARD_RT_PRIORITY))
    except OSError as exc:
        return [f"real-time priority: {exc.strerror}", *raise_process(io=True)]
    return []


def demote_guard() -> str:
    """Leave real-time scheduling for nice -10 (SIGXCPU: the real-time budget was used)."""
    try:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except OSError as exc:
        return f"guard used its real-time CPU budget but could not leave it: {exc.strerror}"
    raise_process(io=True)
    return (
        f"guard used its real-time CPU budget ({GUARD_RTTIME_US // 1000} ms without sleeping): "
        f"running at nice {AGENT_NICE} from now on"
    )
