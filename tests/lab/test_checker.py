"""The chaos checker's self-test: injected 50 ms double holders must be reported.

Two bare namespaces (no agents): node A holds a VIP and an exclusive process all along; for
50 ms node B holds them too (the address added to its namespace, a fake process with a pid
file). The checker must report both, with about that duration, and a traceback in a log.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.lab import netns
from corral.lab.checker import Checker, NodeView, Topology, Tracker

from .conftest import NEEDS_ROOT

VIP = "198.18.9.100"


def test_tracker_intervals_and_events() -> None:
    t = Tracker()
    t.update(1.0, "vip-two-holders", VIP, True, "a, b")
    t.update(1.2, "vip-two-holders", VIP, True, "a, c")
    t.update(1.5, "vip-two-holders", VIP, False)
    t.event(2.0, "traceback", "a", "boom")
    t.update(3.0, "two-agents", "a", True, "1, 2")
    t.close_all(4.0)
    got = [(v.kind, v.duration, v.detail) for v in t.violations()]
    assert got == [
        ("vip-two-holders", 0.5, "a, b; a, c"),
        ("traceback", 0.0, "boom"),
        ("two-agents", 1.0, "1, 2"),
    ]


@pytest.fixture
def two_nodes(tmp_path: Path) -> Iterator[list[NodeView]]:
    names = [f"crl-chk{os.getpid()}-{x}" for x in "ab"]
    try:
        views = []
        for name, x in zip(names, "ab", strict=True):
            netns.add_namespace(name)
            (tmp_path / x / "run").mkdir(parents=True)
            views.append(NodeView(x, name, tmp_path / x))
        yield views
    finally:
        for name in names:
            netns.kill_all(name)
            netns.delete_namespace(name)


def hold(node: NodeView) -> subprocess.Popen[bytes]:
    """A fake exclusive service on ``node``: a process in its namespace and its pid file."""
    proc = subprocess.Popen(netns.exec_argv(node.ns, ["sleep", "30"]))
    (node.state_dir / "run" / "svc.pid").write_text(json.dumps({"pid": proc.pid}))
    return proc


@NEEDS_ROOT
def test_injected_50ms_double_holders_are_reported(two_nodes: list[NodeView]) -> None:
    a, b = two_nodes
    netns.add_address(a.ns, "lo", f"{VIP}/32")
    holder = hold(a)
    (b.state_dir / "agent.log").write_text("starting\n")
    checker = Checker(Topology("chk", (a, b), (VIP,), ("svc",), fencing=True))
    checker.start()
    try:
        time.sleep(0.3)
        assert checker.snapshot() == ({VIP: {"a"}}, {"svc": {"a"}})
        netns.add_address(b.ns, "lo", f"{VIP}/32")
        time.sleep(0.05)
        netns.run(["ip", "-n", b.ns, "addr", "del", f"{VIP}/32", "dev", "lo"])
        time.sleep(0.3)
        second = hold(b)
        time.sleep(0.05)
        second.kill()
        second.wait()
        (b.state_dir / "run" / "svc.pid").unlink()
        with open(b.state_dir / "agent.log", "a") as log:
            log.write("Traceback (most recent call last):\n  File x\nKeyError: 'n9'\n")
        time.sleep(1.5)
    finally:
        violations = checker.stop()
        holder.kill()
        holder.wait()
    by_kind = {v.kind: v for v in violations}
    assert set(by_kind) == {"vip-two-holders", "exclusive-two-holders", "traceback"}, violations
    vip = by_kind["vip-two-holders"]
    assert vip.subject == VIP and "a: address, b: address" in vip.detail
    assert vip.duration is not None and 0.02 <= vip.duration <= 0.5, vip
    svc = by_kind["exclusive-two-holders"]
    assert svc.subject == "svc" and svc.duration is not None and svc.duration <= 0.5, svc
    assert "KeyError: 'n9'" in by_kind["traceback"].detail
    assert checker.max_gap < 0.05, checker.max_gap
