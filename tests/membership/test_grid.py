"""Probe periods on a shared grid: the same probe rate, pings in the same instant on every
member, no drift from late timers, and failure detection unchanged."""

from __future__ import annotations

import itertools
import random

import pytest

from corral.core.clock import Grid, ManualClock, wall_grid
from corral.core.membership import (
    Ack,
    Member,
    MemberChanged,
    Membership,
    MemberState,
    NodeMeta,
    Ping,
    PingReq,
    profile,
)
from tests.membership.helpers import packet, sends

LAN = profile("lan")
P = LAN.probe_interval


def test_grid_instants() -> None:
    g = Grid(0.1, 0.03)
    assert g.at_or_after(0.03) == pytest.approx(0.03)
    assert g.at_or_after(0.031) == pytest.approx(0.13)
    assert g.at_or_after(-0.5) == pytest.approx(-0.47)
    assert g.near(0.17) == pytest.approx(0.13)
    assert g.near(0.19) == pytest.approx(0.23)
    assert Grid(0.1, 1.23).phase == pytest.approx(0.03)  # the phase is taken modulo the tick
    with pytest.raises(ValueError, match="positive tick"):
        Grid(0.0)


def test_wall_grid_falls_on_whole_multiples_of_the_wall_clock() -> None:
    clock = ManualClock(500.0)
    g = wall_grid(clock, 0.1, wall=1_700_000_000.04)  # wall = monotonic + offset
    t = g.at_or_after(500.0)
    wall_at_t = 1_700_000_000.04 + (t - 500.0)
    assert wall_at_t == pytest.approx(round(wall_at_t, 1), abs=1e-6)
    assert 500.0 <= t < 500.1


def _member(phase: float | None, seed: int = 3) -> Membership:
    m = Membership("a", "a", LAN, random.Random(seed), 0.0, phase=phase)
    m.preload({p: Member(p, p, NodeMeta(), 0, MemberState.ALIVE, 0.0) for p in "bcd"})
    return m


def _run(m: Membership, until: float, late: float, answer: bool) -> list[float]:
    """Drive ``m`` at its deadlines, each ``late`` seconds late; ack every ping at once if
    ``answer``. Returns when each ping went out."""
    pings: list[float] = []
    now = 0.0
    while now < until:
        now = max(now, m.next_deadline() + late)
        for send in sends(m.tick(now)):
            for msg in send.packet.messages:
                if isinstance(msg, Ping):
                    pings.append(now)
                    if answer:
                        m.handle(packet(send.addr, Ack(msg.seq)), send.addr, now)
    return pings


@pytest.mark.parametrize("late", [0.0, 0.004])
def test_aligned_pings_go_out_on_the_grid_at_the_probe_rate_without_drift(late: float) -> None:
    pings = _run(_member(phase=0.03), until=20.0, late=late, answer=True)
    assert len(pings) == pytest.approx(20.0 / P, abs=2)  # one probe per period, as unaligned
    grid = Grid(P, 0.03)
    for t in pings:  # between its grid instant and the timer's lateness: no drift
        g = grid.at_or_after(t - late - 1e-6)
        assert g - 1e-6 <= t <= g + late + 1e-6, f"ping at {t} is off the grid"


def test_unaligned_member_keeps_its_own_phase() -> None:
    pings = _run(_member(phase=None), until=5.0, late=0.004, answer=True)
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert all(g == pytest.approx(P + 0.004) for g in gaps)  # each runs from the last one


def test_aligned_member_still_detects_a_silent_target() -> None:
    m = _member(phase=0.07)
    now, reqs = 0.0, 0
    suspected: set[str] = set()
    while now < 3.0 and len(suspected) < 3:
        now = m.next_deadline() + 0.002
        effects = m.tick(now)
        reqs += sum(isinstance(x, PingReq) for s in sends(effects) for x in s.packet.messages)
        suspected |= {
            e.member.name
            for e in effects
            if isinstance(e, MemberChanged) and e.member.state is not MemberState.ALIVE
        }
    assert suspected == {"b", "c", "d"}  # nobody answers: each is suspected, then dead
    assert reqs > 0  # the indirect probes still go out within the (aligned) period


def test_reconnect_pings_to_dead_members_share_the_probe_instants() -> None:
    """The once-a-second ping to a dead member (partition healing) waits for a grid instant
    instead of waking the node on its own."""
    m = Membership("a", "a", LAN, random.Random(5), 0.0, phase=0.03)
    m.preload(
        {
            "b": Member("b", "b", NodeMeta(), 0, MemberState.ALIVE, 0.0),
            "z": Member("z", "z", NodeMeta(), 0, MemberState.DEAD, 0.0),
        }
    )
    grid = Grid(P, 0.03)
    now, to_dead = 0.0, []
    while now < 6.0:
        now = m.next_deadline()
        for send in sends(m.tick(now)):
            for msg in send.packet.messages:
                if isinstance(msg, Ping) and send.addr == "z":
                    to_dead.append(now)
                elif isinstance(msg, Ping):
                    m.handle(packet(send.addr, Ack(msg.seq)), send.addr, now)
    assert len(to_dead) >= 5  # about one per reconnect interval
    assert all(grid.at_or_after(t - 1e-9) == pytest.approx(t) for t in to_dead), to_dead


def test_a_probe_interval_override_keeps_suspicion_in_seconds() -> None:
    from corral.core.membership import with_probe_interval
    from corral.spec import load_spec_text

    faster = with_probe_interval(LAN, 0.1)
    assert faster.probe_interval == 0.1
    assert faster.suspicion_bounds(5) == pytest.approx(LAN.suspicion_bounds(5))
    assert with_probe_interval(LAN, None) is LAN
    with pytest.raises(ValueError, match="longer than the probe timeout"):
        with_probe_interval(LAN, LAN.probe_timeout)
    text = "cluster: c\nnodes:\n  n1: {address: 198.18.0.11}\ngossip: {probe_interval: 100ms}\n"
    assert load_spec_text(text).effective_gossip.probe_interval == 0.1
    plain = load_spec_text("cluster: c\nnodes:\n  n1: {address: 198.18.0.11}\n")
    assert plain.effective_gossip == LAN
