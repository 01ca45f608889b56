"""The store loses quorum while every node is up: the VIP and the active-passive service stay
where they are (and are never held twice), nothing moves; a node that is also cut off from its
peers drops its own as rule 1 says (docs/safety-rules.md, "Store quorum loss").

Fault: the embedded etcd members' peer traffic is dropped on the switch (every member still
runs and answers its clients, none has a leader), for four lease TTLs. Checked from outside by
the lab's independent checker (addresses per namespace and pid files every 10 ms)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.lab.checker import Checker, Topology
from corral.lab.lab import Lab

from .conftest import NEEDS_ROOT, small_spec, wait_for

pytestmark = [pytest.mark.etcd, NEEDS_ROOT]

VIP = "198.18.0.100"
SPEC = small_spec("quorum") + f"  vip:\n    vip: {VIP}/24\n"
TTL = 3.0  # the lan profile's lease


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    spec = tmp_path / "quorum.yaml"
    spec.write_text(SPEC)
    try:
        yield Lab.up(spec, tmp_path / "lab", nodes=3, timeout=60, fence_action="none")
    finally:
        Lab(tmp_path / "lab").down(force=True)


def settled(checker: Checker) -> tuple[str, str] | None:
    """(VIP holder, api holder) once each is held by exactly one node."""
    vips, exclusive = checker.snapshot()
    held, api = vips.get(VIP, set()), exclusive.get("api", set())
    if len(held) == 1 and len(api) == 1:
        return next(iter(held)), next(iter(api))
    return None


def stays_put(lab: Lab, checker: Checker, where: tuple[str, str], api_pid: int | None) -> None:
    """For four lease TTLs, every sample: the VIP and api on the same nodes, api not restarted."""
    end = time.monotonic() + 4 * TTL
    while time.monotonic() < end:
        assert settled(checker) == where, checker.snapshot()
        time.sleep(0.05)
    assert lab.service_pid(where[1], "api") == api_pid, "api was restarted"


def agent_logs(lab: Lab) -> str:
    return "".join(lab.log_path(n).read_text(errors="replace") for n in ("n1", "n2", "n3"))


def test_a_store_without_a_leader_keeps_what_runs_and_a_cut_off_node_drops_it(
    lab: Lab,
) -> None:
    checker = Checker(Topology.from_lab(lab))
    checker.start()
    try:
        lab.wait_online(timeout=60)
        vip_node, api_node = wait_for(lambda: settled(checker), 60, "VIP and api held once")
        api_pid = lab.service_pid(api_node, "api")

        lab.cut_store_peers()
        try:
            stays_put(lab, checker, (vip_node, api_node), api_pid)
            assert "the store has no leader" in agent_logs(lab)

            # now the VIP's node is also cut off from the other nodes: it cannot reach their
            # members, so it has no proof, and drops the VIP and api (rule 1)
            lab.partition(vip_node)
            wait_for(lambda: not checker.snapshot()[0].get(VIP), 2 * TTL, "the cut-off node drops")
            lab.heal_partition(vip_node)
        finally:
            lab.heal_store_peers()
        lab.wait_online(timeout=60)
        wait_for(lambda: settled(checker), 60, "VIP and api held once again")
    finally:
        violations = checker.stop()
    assert not violations, violations


def test_two_members_in_a_crash_loop_start_nothing_anywhere_else(lab: Lab) -> None:
    """Two of three members crash-loop (their data directory is gone: a disk fault) while every
    node is up, the VIP holder's own member among them. Their agents state over gossip that
    they are down; whether that keeps the VIP and api depends on where the supervisor's
    restarts fall (a restart ends the down period a statement covers: see the safety rules'
    limits), so this checks what must always hold: in every sample, nothing runs anywhere but
    where it ran (no node can start anything without a lease), never twice, and all is held
    once again after the repair."""
    checker = Checker(Topology.from_lab(lab))
    checker.start()
    try:
        lab.wait_online(timeout=60)
        vip_node, api_node = wait_for(lambda: settled(checker), 60, "VIP and api held once")
        broken = [vip_node, next(n for n in ("n1", "n2", "n3") if n != vip_node)]
        for node in broken:
            lab.break_etcd(node)
        try:
            end = time.monotonic() + 4 * TTL
            while time.monotonic() < end:
                vips, exclusive = checker.snapshot()
                assert vips.get(VIP, set()) <= {vip_node}, vips
                assert exclusive.get("api", set()) <= {api_node}, exclusive
                time.sleep(0.05)
        finally:
            for node in broken:
                lab.repair_etcd(node)
        lab.wait_online(timeout=60)
        wait_for(lambda: settled(checker), 60, "VIP and api held once again")
    finally:
        violations = checker.stop()
    assert not violations, violations
