"""The lab's process faults (agent kill, etcd kill, freeze) and atomic power on/off."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import pytest

from corral.lab import netns, procs
from corral.lab.lab import Lab

from .conftest import NEEDS_ROOT, wait_for

pytestmark = [pytest.mark.etcd, NEEDS_ROOT]


def agents_of(lab: Lab, node: str) -> list[int]:
    ns = lab.node(node)["ns"]
    found = procs.by_namespace({procs.netns_inode(ns) or -1: node})[node]
    return [p.pid for p in procs.agents(found)]


def power_on_process(lab: Lab, node: str) -> subprocess.Popen[bytes]:
    """A power-on from another process (as the fence agent does), which takes its own lock.
    A fresh interpreter: a fork would inherit the lock's open file of a thread holding it."""
    code = f"from corral.lab.lab import Lab; Lab(__import__('pathlib').Path({str(lab.dir)!r}))"
    return subprocess.Popen([sys.executable, "-c", f"{code}.power_on({node!r})"])


def test_agent_kill_etcd_kill_freeze_and_concurrent_power_on(
    make_lab: Callable[..., Lab],
) -> None:
    lab = make_lab("labfaults")
    ns = lab.node("n2")["ns"]

    def kept() -> set[int]:  # the etcd member and the services (their pid files)
        etcd = {p for p in netns.pids(ns) if (x := procs.read_proc(p)) and procs.is_etcd(x)}
        return etcd | {lab.service_pid("n2", r) or 0 for r in ("web", "api")} - {0}

    before = kept()
    pid = lab.kill_agent("n2")
    wait_for(lambda: pid not in netns.pids(ns), 5, "agent gone")
    # only the agent died: its etcd member and services keep running
    assert before and kept() == before

    # a fence agent's reboot racing the harness: threads and processes power on at once
    threads = [threading.Thread(target=lab.power_on, args=("n2",)) for _ in range(4)]
    others = [power_on_process(lab, "n2") for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [p.wait(30) for p in others] == [0, 0]
    time.sleep(1.0)  # an agent started twice would be running by now
    assert agents_of(lab, "n2") == [lab.node("n2")["agent_pid"]]
    lab.wait_online(timeout=30)

    # a power-on right after another: the new agent may not have entered its namespace yet
    # (``ip netns exec`` between fork and setns), and must not be taken for dead
    lab.kill_agent("n2")
    entering = subprocess.Popen(["sleep", "30"])  # an agent still outside its namespace
    with lab._edit() as state:
        state["nodes"]["n2"]["agent_pid"] = entering.pid
    assert lab.power_on("n2") == entering.pid
    entering.kill()
    entering.wait()
    first = lab.power_on("n2")
    assert lab.power_on("n2") == first
    time.sleep(1.0)
    assert agents_of(lab, "n2") == [first]

    # power off and on again at once: still one agent
    t_off = threading.Thread(target=lab.power_off, args=("n3",))
    t_off.start()
    lab.power_on("n3")
    t_off.join()
    lab.power_on("n3")
    time.sleep(1.0)
    assert len(agents_of(lab, "n3")) == 1

    etcd = lab.kill_etcd("n1")
    n1 = lab.node("n1")["ns"]

    def restarted() -> bool:
        return any(
            p is not None and procs.is_etcd(p, "n1") and p.pid != etcd
            for p in map(procs.read_proc, netns.pids(n1))
        )

    wait_for(restarted, 20, "the agent restarts its etcd member")

    stopped = lab.freeze("n1")
    states = {p.state for p in map(procs.read_proc, stopped) if p is not None}
    assert states == {"T"}
    lab.thaw("n1")
    states = {p.state for p in map(procs.read_proc, stopped) if p is not None}
    assert "T" not in states
    lab.wait_online(timeout=30)

    # a node frozen while one of its processes held the lab lock (its fence agent in the middle
    # of a power-off, seen in a chaos run): the thaw must continue it before it takes the lock
    holder = subprocess.Popen(
        lab.exec_argv(
            "n1",
            [
                sys.executable,
                "-c",
                "import fcntl, sys, time; f = open(sys.argv[1], 'a');"
                " fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(2)",
                str(lab.dir / "lab.lock"),
            ],
        ),
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        lab._signal_all("n1", signal.SIGSTOP)  # frozen with the lock held (no state edit)
        done = threading.Event()

        def thaw() -> None:
            lab.thaw("n1")
            done.set()

        thawing = threading.Thread(target=thaw, daemon=True)
        thawing.start()
        assert done.wait(15), "the thaw waited for a lock held by a frozen process"
        assert holder.wait(10) == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(holder.pid, signal.SIGCONT)
        holder.kill()
        holder.wait()
