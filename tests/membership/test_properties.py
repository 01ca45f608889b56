"""Properties of the membership protocol, checked with hypothesis on the core and the simulator."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.core.membership import (
    Ack,
    Alive,
    Dead,
    MemberChanged,
    MemberDigest,
    Membership,
    MemberState,
    Message,
    Nack,
    NodeMeta,
    Packet,
    Ping,
    PingReq,
    PushPull,
    Suspect,
    profile,
)
from corral.core.membership.broadcast import BroadcastQueue
from corral.core.membership.config import suspicion_timeout
from corral.core.membership.messages import estimated_size
from corral.sim import Latency, Simulator

SIM = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NAMES = ["a", "b", "c", "d", "e"]


def _cluster(n: int, seed: int, lifeguard: bool, latency_ms: float, join: bool) -> Simulator:
    cfg = profile("lan", lifeguard=lifeguard)
    sim = Simulator(seed, cfg, Latency(low=latency_ms / 2000, mean=latency_ms / 1000))
    names = [f"n{i}" for i in range(n)]
    if join:
        for name in names:
            sim.add_node(name, [] if name == "n0" else ["n0"])
    else:
        sim.bootstrap(names)
    return sim


@SIM
@given(
    n=st.integers(2, 14),
    seed=st.integers(0, 2**16),
    lifeguard=st.booleans(),
    latency_ms=st.floats(0.1, 8.0),
    join=st.booleans(),
)
def test_members_that_keep_answering_are_never_declared_dead_without_loss(
    n: int, seed: int, lifeguard: bool, latency_ms: float, join: bool
) -> None:
    sim = _cluster(n, seed, lifeguard, latency_ms, join)
    bad: list[tuple[float, str, str]] = []

    def hook(now: float, observer: str, change: MemberChanged) -> None:
        if change.member.state is not MemberState.ALIVE:
            bad.append((now, observer, change.member.name))

    sim.change_hooks.append(hook)
    sim.run_until(8.0)
    assert not bad
    for node in sim.nodes.values():
        assert node.core.live_count() == n


@SIM
@given(
    n=st.integers(3, 12),
    seed=st.integers(0, 2**16),
    lifeguard=st.booleans(),
    loss=st.sampled_from([0.0, 0.01, 0.05]),
)
def test_a_crashed_member_is_eventually_declared_dead_by_everyone(
    n: int, seed: int, lifeguard: bool, loss: float
) -> None:
    sim = _cluster(n, seed, lifeguard, 0.5, join=False)
    sim.network.set_loss(loss)
    sim.run_until(1.0)
    victim = f"n{random.Random(seed).randrange(n)}"
    sim.crash(victim)
    done = sim.run_for(
        10.0,
        lambda: all(sim.view(x.name, victim) is MemberState.DEAD for x in sim.running()),
    )
    assert done, f"{victim} not declared dead by everyone within 10 s"


def _transcript(seed: int) -> list[tuple[float, str, str, str, int]]:
    sim = _cluster(8, seed, True, 1.0, join=True)
    sim.network.set_loss(0.05)
    log: list[tuple[float, str, str, str, int]] = []
    sim.change_hooks.append(
        lambda now, obs, ch: log.append(
            (now, obs, ch.member.name, ch.member.state.label, ch.member.incarnation)
        )
    )
    sim.run_until(2.0)
    sim.crash("n3")
    sim.stall("n5", 0.4)
    sim.run_until(6.0)
    return log


def test_a_run_is_a_pure_function_of_its_seed() -> None:
    assert _transcript(7) == _transcript(7)
    assert _transcript(7) != _transcript(8)


# ---------------------------------------------------------------- arbitrary input to one core

names = st.sampled_from(NAMES)
incs = st.integers(0, 6)
metas = st.builds(NodeMeta, roles=st.lists(st.sampled_from(["lb", "db"]), max_size=2).map(tuple))
claims = st.one_of(
    st.builds(Alive, names, incs, names, metas),
    st.builds(Suspect, names, incs, names),
    st.builds(Dead, names, incs, names),
)
digests = st.builds(MemberDigest, names, names, metas, incs, st.sampled_from(list(MemberState)))
messages_st: st.SearchStrategy[Message] = st.one_of(
    claims,
    st.builds(Ping, st.integers(0, 40), names),
    st.builds(PingReq, st.integers(0, 40), names, names, st.booleans()),
    st.builds(Ack, st.integers(0, 40)),
    st.builds(Nack, st.integers(0, 40)),
    st.builds(PushPull, st.booleans(), st.booleans(), st.lists(digests, max_size=4).map(tuple)),
)
steps = st.lists(
    st.tuples(
        st.floats(0.0, 0.5),
        st.one_of(
            st.none(), st.builds(Packet, names, st.lists(messages_st, max_size=4).map(tuple))
        ),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(steps=steps, seed=st.integers(0, 1000), lifeguard=st.booleans())
def test_any_input_never_crashes_and_incarnations_only_grow(
    steps: list[tuple[float, Packet | None]], seed: int, lifeguard: bool
) -> None:
    m = Membership("a", "a", profile("lan", lifeguard=lifeguard), random.Random(seed), 0.0)
    m.join(["b"], 0.0)
    now = 0.0
    seen: dict[str, int] = {}
    own = m.incarnation
    for dt, pkt in steps:
        now += dt
        if pkt is None:
            m.tick(now)
            assert m.next_deadline() > now or m.left  # tick leaves nothing overdue
        else:
            m.handle(pkt, pkt.sender, now)
        assert m.incarnation >= own
        own = m.incarnation
        for record in m.members():
            assert record.incarnation >= seen.get(record.name, 0)
            seen[record.name] = record.incarnation


# ---------------------------------------------------------------- small parts


@given(
    low=st.floats(0.01, 10.0),
    factor=st.floats(1.0, 10.0),
    k=st.integers(0, 6),
    c=st.integers(0, 8),
)
def test_suspicion_timeout_shrinks_with_confirmations_within_its_bounds(
    low: float, factor: float, k: int, c: int
) -> None:
    high = low * factor
    t = suspicion_timeout(low, high, k, c)
    assert low <= t <= high
    assert suspicion_timeout(low, high, k, c + 1) <= t
    assert suspicion_timeout(low, high, k, 0) == (high if k > 0 else low)


@given(
    pushes=st.lists(claims, min_size=1, max_size=40),
    budgets=st.lists(st.integers(0, 1500), min_size=1, max_size=30),
    limit=st.integers(1, 5),
)
def test_broadcast_queue_sends_only_latest_claims_within_budget_and_limit(
    pushes: list[Alive | Suspect | Dead], budgets: list[int], limit: int
) -> None:
    q = BroadcastQueue()
    latest: dict[str, Alive | Suspect | Dead] = {}
    for claim in pushes:
        q.push(claim)
        latest[claim.name] = claim
    sent: dict[int, int] = {}
    for budget in budgets:
        taken = q.take(budget, limit)
        assert sum(estimated_size(c) for c in taken) <= budget
        assert len({c.name for c in taken}) == len(taken)
        for claim in taken:
            assert latest[claim.name] is claim
            sent[id(claim)] = sent.get(id(claim), 0) + 1
            assert sent[id(claim)] <= limit
