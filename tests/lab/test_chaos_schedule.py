"""The chaos schedule generator (pure): determinism, minimum counts, heals, bounds."""

from __future__ import annotations

import random

import pytest

from corral.lab.chaos import (
    FAULTS,
    HOLDS,
    KINDS,
    Cluster,
    format_mix,
    generate,
    mix,
    unhealed,
)

CLUSTER = Cluster(
    nodes=("ctl1", "ctl2", "ctl3"),
    exclusive=("cinder-volume",),
    services=("keystone", "galera"),
    rolling="keystone",
)


def schedule(seed: int, duration: float = 600.0, **kw: object) -> list:  # type: ignore[type-arg]
    return generate(random.Random(seed), CLUSTER, duration, **kw)  # type: ignore[arg-type]


def test_same_seed_same_schedule_other_seed_other() -> None:
    assert schedule(7) == schedule(7)
    assert schedule(7) != schedule(8)


@pytest.mark.parametrize("seed", range(20))
def test_minimum_counts_every_fault_healed_and_bounded(seed: int) -> None:
    sched = schedule(seed, min_per_kind=2)
    counts = mix(sched)
    assert all(counts[k] >= 2 for k in KINDS), counts
    assert unhealed(sched) == []
    planned = sum(e.length for e in sched)
    mandatory = 2 * len(KINDS)
    assert len(sched) == mandatory or planned <= 600.0
    top = max(high for _, high in HOLDS.values())
    for ep in sched:
        assert all(0 <= s.offset <= top + 2.0 for s in ep.steps), ep
        # one fault at a time: only double faults touch two nodes
        assert len(ep.nodes) <= (2 if ep.kind == "double" else 1), ep
        if ep.kind == "double":
            assert len(set(ep.nodes)) == 2


def test_mandatory_episodes_kept_even_past_the_duration() -> None:
    sched = schedule(1, duration=1.0)
    assert sorted(mix(sched)) == sorted(KINDS)


def test_kinds_subset_and_unknown_kind() -> None:
    sched = schedule(3, duration=60.0, kinds=("power-off", "freeze"))
    assert set(mix(sched)) <= {"power-off", "freeze"}
    with pytest.raises(ValueError, match="unknown chaos kinds"):
        schedule(3, kinds=("meteor",))
    with pytest.raises(ValueError, match="three core nodes"):
        generate(random.Random(1), Cluster(("a", "b"), (), ("x",), "x"), 10.0)


def test_unhealed_finds_a_fault_left_in_place() -> None:
    sched = schedule(5, kinds=("power-off",), duration=1.0)
    ep = sched[0]
    broken = [type(ep)(ep.kind, ep.steps[:1], ep.gap, ep.nodes)]
    assert unhealed(broken) and "not healed" in unhealed(broken)[0]


def test_mix_is_printed_per_kind() -> None:
    line = format_mix(schedule(2, duration=1.0, kinds=FAULTS))
    assert line.startswith(f"{len(FAULTS)} episodes") and "double x1" in line


def test_outages_all_down_and_log_excerpt() -> None:
    from corral.lab.chaosreport import all_down, availability, log_excerpt, outages

    a = outages([(0.0, True), (1.0, False), (1.5, False), (2.0, True), (3.0, False)])
    assert a == [(1.0, 2.0), (3.0, 3.0)]
    b = outages([(0.0, True), (1.8, False), (2.5, True)])
    assert all_down({"a": a, "b": b}) == [(1.8, 2.0)]
    assert availability([(0.0, True), (1.0, False)]) == 0.5
    lines = [
        "2026-12-02 07:00:00,000 a",
        "2026-12-02 07:00:05,000 b",
        "Traceback (most recent call last):",
        "2026-12-02 07:00:09,000 c",
    ]
    from corral.lab.chaosreport import log_time

    t = log_time(lines[1])
    assert t is not None
    assert log_excerpt(lines, t, before=1, after=1) == lines[1:3]


def test_an_all_down_moment_says_whether_the_client_or_the_cluster_failed() -> None:
    """The moments of the chaos report's "all VIPs down" column: a client that missed its
    ticks for a request's whole timeout made its own requests time out (a starved machine);
    refused, unreachable or error answers mean no holder or a failing service; timeouts
    alone, slow answers."""
    from corral.lab.chaosreport import cause_of, send_gap

    ticks = [i * 0.01 for i in range(100)]  # a client sending every 10 ms
    assert send_gap(ticks, 0.2, 0.5) == pytest.approx(0.01)
    stalled = [t for t in ticks if not 0.3 < t < 0.6]  # 300 ms without a send
    assert send_gap(stalled, 0.2, 0.7) == pytest.approx(0.31, abs=0.011)
    timeouts = ["read_timeout", "connect_timeout"]
    assert cause_of(timeouts, 0.31, 0.1, 0.01) == "client stalled"
    assert cause_of(timeouts, 0.09, 0.1, 0.01) == "slow"
    assert cause_of([*timeouts, "refused"], 0.01, 0.1, 0.01) == "refused"
    assert cause_of(["os:EHOSTUNREACH"], 0.05, 0.1, 0.01) == "refused"
    assert cause_of(["http"], 0.01, 0.1, 0.01) == "refused"
