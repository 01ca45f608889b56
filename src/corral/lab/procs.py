"""Processes of a lab namespace, read from ``/proc`` (no fork per look, unlike ``ip netns pids``).

A process belongs to a network namespace when ``/proc/<pid>/ns/net`` is the same inode as
``/run/netns/<ns>`` (what ``ip netns pids`` compares too). One scan of ``/proc`` serves every
namespace at once, so the chaos checker can look several times a second without forking.

Contract: every function tolerates processes that exit while they are read (they are left out,
or read as None); nothing here signals a process.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

NETNS_DIR = Path("/run/netns")


@dataclass(frozen=True)
class Proc:
    """One process: pid, parent, one-letter state (``R S D T t Z X``), argv."""

    pid: int
    ppid: int
    state: str
    argv: tuple[str, ...]

    @property
    def stopped(self) -> bool:
        return self.state in ("T", "t")

    @property
    def alive(self) -> bool:
        """Running or stopped: a zombie or a dead process is gone."""
        return self.state not in ("Z", "X", "x")


def netns_inode(ns: str) -> int | None:
    """The inode of namespace ``ns`` (None when it does not exist)."""
    try:
        return os.stat(NETNS_DIR / ns).st_ino
    except OSError:
        return None


def read_proc(pid: int) -> Proc | None:
    """The process ``pid``, or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    # comm is in parentheses and may hold spaces: the fields after the last ')' are fixed
    fields = stat[stat.rfind(")") + 2 :].split()
    if len(fields) < 2:
        return None
    return Proc(
        pid, int(fields[1]), fields[0], tuple(a.decode(errors="replace") for a in argv if a)
    )


def by_namespace(inodes: dict[int, str]) -> dict[str, list[Proc]]:
    """The live processes of each namespace whose inode is a key of ``inodes`` (maps inode to
    the name used in the result); namespaces without processes map to an empty list."""
    found: dict[str, list[Proc]] = {name: [] for name in inodes.values()}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ino = os.stat(f"/proc/{entry}/ns/net").st_ino
        except OSError:
            continue
        name = inodes.get(ino)
        if name is None:
            continue
        proc = read_proc(int(entry))
        if proc is not None and proc.alive:
            found[name].append(proc)
    return found


def is_agent(proc: Proc) -> bool:
    """A ``corral agent`` process (``python -m corral.cli.main agent ...``)."""
    argv = proc.argv
    with contextlib.suppress(ValueError):
        i = argv.index("corral.cli.main")
        return "agent" in argv[i + 1 : i + 2]
    return False


def is_etcd(proc: Proc, member: str | None = None) -> bool:
    """An etcd server process (of member ``member`` when given)."""
    if not proc.argv or os.path.basename(proc.argv[0]) != "etcd":
        return False
    if member is None:
        return True
    argv = proc.argv
    return any(a == "--name" and argv[i + 1 : i + 2] == (member,) for i, a in enumerate(argv))


def agents(procs: list[Proc]) -> list[Proc]:
    """The agents among ``procs``, leaving out a process forked by an agent that has not yet
    exec'd (it has the agent's argv for a moment but is no second agent)."""
    found = [p for p in procs if is_agent(p)]
    pids = {p.pid for p in found}
    return [p for p in found if p.ppid not in pids]
