"""The membership core driven by hand: every transition, including the failure paths."""

from __future__ import annotations

import math

import pytest

from corral.core.membership import (
    TRANSITIONS,
    Ack,
    Alive,
    ClaimKind,
    Dead,
    Effect,
    LeaveDone,
    Member,
    MemberChanged,
    MemberDigest,
    Membership,
    MemberState,
    Message,
    Nack,
    NodeMeta,
    Ping,
    PingReq,
    PushPull,
    Suspect,
    next_state,
    profile,
)
from tests.membership.helpers import changes, core, messages, packet, primary, sends

ALL = frozenset("bcdef")
A, S, D, L = MemberState.ALIVE, MemberState.SUSPECT, MemberState.DEAD, MemberState.LEFT


def advance(
    m: Membership,
    until: float,
    silent: frozenset[str] | set[str] = frozenset(),
    nacks: bool = True,
) -> list[Effect]:
    """Fire every timer of ``m`` due up to ``until``, in order, with every other member answering
    at once (acks to pings, relayed acks or nacks to ping-reqs) except those in ``silent``."""
    out: list[Effect] = []
    while m.next_deadline() <= until:
        now = m.next_deadline()
        batch = m.tick(now)
        out += batch
        for send in sends(batch):
            first = send.packet.messages[0] if send.packet.messages else None
            if send.addr in silent or send.reliable:
                continue
            if isinstance(first, Ping):
                out += m.handle(packet(send.addr, Ack(first.seq)), send.addr, now)
            elif isinstance(first, PingReq):
                if first.target not in silent:
                    out += m.handle(packet(send.addr, Ack(first.seq)), send.addr, now)
                elif first.nack and nacks:
                    out += m.handle(packet(send.addr, Nack(first.seq)), send.addr, now)
    return out


def first_probe(m: Membership) -> tuple[float, str, int, list[Effect]]:
    """Run ``m`` until it pings someone: (time, target, seq, effects)."""
    out: list[Effect] = []
    for _ in range(100):
        t = m.next_deadline()
        out = m.tick(t)
        pings = primary(out, Ping)
        if pings:
            addr, ping = pings[0]
            assert isinstance(ping, Ping)
            return t, addr, ping.seq, out
    raise AssertionError("no probe")


def told_first(effects: list[Effect], name: str) -> list[Message]:
    """Messages sent to ``name`` before this node announced that it suspects ``name``."""
    for i, e in enumerate(effects):
        if isinstance(e, MemberChanged) and e.member.name == name and e.member.state is S:
            return messages(effects[:i], Suspect, to=name)
    raise AssertionError(f"{name} never suspected")


# ---------------------------------------------------------------- the transition table


EXPECTED = {
    # (state, claim): (incarnation rule, next state); None = always ignored
    (A, ClaimKind.ALIVE): (">", A),
    (A, ClaimKind.SUSPECT): (">=", S),
    (A, ClaimKind.DEAD): (">=", D),
    (A, ClaimKind.LEAVE): (">=", L),
    (S, ClaimKind.ALIVE): (">", A),
    (S, ClaimKind.SUSPECT): (">=", S),
    (S, ClaimKind.DEAD): (">=", D),
    (S, ClaimKind.LEAVE): (">=", L),
    (D, ClaimKind.ALIVE): (">", A),
    (D, ClaimKind.SUSPECT): None,
    (D, ClaimKind.DEAD): None,
    (D, ClaimKind.LEAVE): (">=", L),
    (L, ClaimKind.ALIVE): (">", A),
    (L, ClaimKind.SUSPECT): None,
    (L, ClaimKind.DEAD): None,
    (L, ClaimKind.LEAVE): None,
}


def test_transition_table_is_complete() -> None:
    assert set(TRANSITIONS) == {(s, k) for s in MemberState for k in ClaimKind}


@pytest.mark.parametrize(("state", "kind"), sorted(EXPECTED, key=str))
@pytest.mark.parametrize("delta", [-1, 0, 1])
def test_transition(state: MemberState, kind: ClaimKind, delta: int) -> None:
    record = Member("x", "x", NodeMeta(), 5, state, 0.0)
    got = next_state(record, kind, 5 + delta)
    rule = EXPECTED[(state, kind)]
    if rule is None:
        assert got is None
        return
    need, target = rule
    applies = delta > 0 if need == ">" else delta >= 0
    assert got is (target if applies else None)


# ---------------------------------------------------------------- ping / ack


def test_ping_is_acked_to_its_source_with_the_same_seq() -> None:
    m = core()
    out = m.handle(packet("b", Ping(7, "a")), "b-addr", 1.0)
    assert primary(out, Ack) == [("b-addr", Ack(7))]


def test_ping_for_another_name_is_not_acked() -> None:
    m = core()
    out = m.handle(packet("b", Ping(7, "someone-else")), "b", 1.0)
    assert not messages(out, Ack)
    assert m.stats.misdirected == 1


def test_direct_ack_in_time_means_no_indirect_probe_and_no_suspicion() -> None:
    m = core()
    t, target, seq, _ = first_probe(m)
    m.handle(packet(target, Ack(seq)), target, t + 0.002)
    out = advance(m, t + 0.099)
    assert not messages(out, PingReq)
    assert not changes(out)
    assert m.member(target).state is A  # type: ignore[union-attr]


def test_silent_target_gets_ping_req_through_k_alive_helpers_then_suspected() -> None:
    m = core()
    t, target, seq, _ = first_probe(m)
    out = advance(m, t + m.config.probe_timeout, silent={target}, nacks=False)
    reqs = primary(out, PingReq)
    helpers = {addr for addr, _ in reqs}
    assert len(helpers) == m.config.indirect_checks == 4
    assert target not in helpers and "a" not in helpers
    assert all(r == PingReq(seq, target, target, True) for _, r in reqs)
    out = advance(m, t + m.config.probe_interval, ALL, nacks=False)
    [change] = [c for c in changes(out) if c.member.name == target]
    assert (change.previous, change.member.state, change.source) == (A, S, "a")
    # Buddy system: the suspect itself is told, before the suspicion is gossiped.
    assert Suspect(target, 0, "a") in told_first(out, target)
    # Four helpers asked, no nack came back: we are probably the slow one.
    assert m.health_score == 4


def test_nacks_from_every_helper_leave_the_health_score_alone() -> None:
    m = core()
    t, target, seq, _ = first_probe(m)
    out = advance(m, t + m.config.probe_timeout, silent={target}, nacks=False)
    for addr, _ in primary(out, PingReq):
        m.handle(packet(addr, Nack(seq)), addr, t + 0.05)
    advance(m, t + m.config.probe_interval, silent={target}, nacks=False)
    assert m.member(target).state is S  # type: ignore[union-attr]
    assert m.health_score == 0


def test_relayed_ack_during_the_indirect_window_saves_the_target() -> None:
    m = core()
    t, target, seq, _ = first_probe(m)
    out = advance(m, t + m.config.probe_timeout, silent={target}, nacks=False)
    helper = primary(out, PingReq)[0][0]
    m.handle(packet(helper, Ack(seq)), helper, t + 0.06)
    out = advance(m, t + m.config.probe_interval, silent={target}, nacks=False)
    assert m.member(target).state is A  # type: ignore[union-attr]
    assert m.health_score == 0  # an indirect success is no evidence either way


def test_late_ack_after_the_period_does_not_undo_the_suspicion() -> None:
    m = core()
    t, target, seq, _ = first_probe(m)
    advance(m, t + m.config.probe_interval, silent={target}, nacks=False)
    m.handle(packet(target, Ack(seq)), target, t + 0.2)
    assert m.member(target).state is S  # type: ignore[union-attr]


def test_awareness_stretches_the_probe_period_and_recovers_on_direct_acks() -> None:
    m = core()
    t, target, _, _ = first_probe(m)
    out = advance(m, t + m.config.probe_interval, ALL, nacks=False)  # failed probe: score 4
    assert m.health_score == 4
    m.handle(packet(target, Alive(target, 1, target, NodeMeta())), target, t + 0.1)  # refuted
    # The next probe started at the end of the failed one; its timeout is 5x longer.
    t2 = t + m.config.probe_interval
    target2, ping2 = primary(out, Ping)[-1]
    assert isinstance(ping2, Ping)
    out = advance(m, t2 + m.config.probe_timeout * 4.9, ALL)
    assert not messages(out, PingReq)  # still inside the stretched timeout
    m.handle(packet(target2, Ack(ping2.seq)), target2, t2 + m.config.probe_timeout * 4.9)
    assert m.health_score == 3
    for score in (2, 1, 0, 0):
        tp, tgt, sq, _ = first_probe(m)
        m.handle(packet(tgt, Ack(sq)), tgt, tp + 0.001)
        assert m.health_score == score


# ---------------------------------------------------------------- ping-req helper


def test_helper_relays_the_targets_ack_under_the_requesters_seq() -> None:
    m = core()
    out = m.handle(packet("b", PingReq(42, "c", "c", True)), "b", 1.0)
    [(addr, ping)] = primary(out, Ping)
    assert addr == "c" and isinstance(ping, Ping) and ping.target == "c"
    out = m.handle(packet("c", Ack(ping.seq)), "c", 1.001)
    assert primary(out, Ack) == [("b", Ack(42))]
    assert not messages(advance(m, 2.0), Nack)


def test_helper_nacks_when_the_target_stays_silent() -> None:
    m = core()
    m.handle(packet("b", PingReq(42, "c", "c", True)), "b", 1.0)
    out = advance(m, 1.0 + m.config.relay_timeout())
    assert primary(out, Nack) == [("b", Nack(42))]


def test_helper_without_nack_request_stays_quiet() -> None:
    m = core()
    m.handle(packet("b", PingReq(42, "c", "c", False)), "b", 1.0)
    assert not messages(advance(m, 2.0), Nack)


# ---------------------------------------------------------------- suspicion


def suspect_b(m: Membership, accuser: str = "c", now: float = 1.0) -> None:
    m.handle(packet(accuser, Suspect("b", 0, accuser)), accuser, now)


def test_suspicion_starts_at_the_maximum_and_expires_into_dead() -> None:
    m = core()
    suspect_b(m)
    low, high = m.config.suspicion_bounds(6)
    susp = m.suspicion("b")
    assert susp is not None and susp.deadline() == pytest.approx(1.0 + high)
    cfg = m.config
    scaled = (
        cfg.suspicion_mult * max(1.0, math.log10(6)) * cfg.probe_interval
    )  # SWIM's log N allowance
    assert high == pytest.approx(scaled * cfg.suspicion_max_mult)
    assert low == pytest.approx(cfg.suspicion_mult * cfg.probe_interval)  # flat in N
    out = advance(m, 1.0 + high - 0.001)
    assert m.member("b").state is S  # type: ignore[union-attr]
    out = advance(m, 1.0 + high)
    [change] = [c for c in changes(out) if c.member.name == "b"]
    assert (change.member.state, change.source) == (D, "a")
    assert m.stats.dead_declared == 1


def test_independent_confirmations_shrink_the_timeout_to_the_minimum() -> None:
    m = core()
    suspect_b(m, "c")
    low, high = m.config.suspicion_bounds(6)
    k = m.config.confirmations_wanted(6)
    assert k == 3
    deadlines = [m.suspicion("b").deadline()]  # type: ignore[union-attr]
    for accuser in ("d", "d", "e", "f"):
        suspect_b(m, accuser, 1.01)
        deadlines.append(m.suspicion("b").deadline())  # type: ignore[union-attr]
    assert deadlines[1] < deadlines[0]
    assert deadlines[2] == deadlines[1]  # the same accuser twice is one confirmation
    assert deadlines[-1] == pytest.approx(1.0 + low)
    expected_one = high - (high - low) * math.log(2) / math.log(k + 1)
    assert deadlines[1] == pytest.approx(1.0 + expected_one)


def test_confirmation_after_the_new_deadline_has_passed_kills_at_once() -> None:
    m = core()
    suspect_b(m, "c", 1.0)
    low, _ = m.config.suspicion_bounds(6)
    for accuser in ("d", "e"):
        suspect_b(m, accuser, 1.0 + low + 0.01)
    out = m.tick(1.0 + low + 0.5)
    assert any(c.member.state is D for c in changes(out))


def test_refutation_with_a_higher_incarnation_clears_the_suspicion() -> None:
    m = core()
    suspect_b(m)
    out = m.handle(packet("b", Alive("b", 1, "b", NodeMeta())), "b", 1.1)
    assert [(c.previous, c.member.state) for c in changes(out)] == [(S, A)]
    assert m.suspicion("b") is None
    assert not changes(advance(m, 10.0))


def test_alive_at_the_same_incarnation_does_not_clear_a_suspicion() -> None:
    m = core()
    suspect_b(m)
    m.handle(packet("b", Alive("b", 0, "b", NodeMeta())), "b", 1.1)
    assert m.member("b").state is S  # type: ignore[union-attr]


def test_stale_suspicion_is_ignored() -> None:
    m = core()
    m.handle(packet("b", Alive("b", 3, "b", NodeMeta())), "b", 1.0)
    m.handle(packet("c", Suspect("b", 2, "c")), "c", 1.1)
    assert m.member("b").state is A  # type: ignore[union-attr]


def test_plain_swim_uses_a_fixed_minimum_timeout_and_no_lifeguard_parts() -> None:
    m = core(config=profile("lan", lifeguard=False))
    suspect_b(m, "c")
    low, high = m.config.suspicion_bounds(6)
    assert (
        low
        == high
        == pytest.approx(
            m.config.suspicion_mult * max(1.0, math.log10(6)) * m.config.probe_interval
        )
    )
    suspect_b(m, "d", 1.01)
    assert m.suspicion("b").deadline() == pytest.approx(1.0 + low)  # type: ignore[union-attr]
    t, target, _, _ = first_probe(m)
    out = advance(m, t + m.config.probe_interval, silent={target}, nacks=False)
    assert all(isinstance(r, PingReq) and not r.nack for r in messages(out, PingReq))
    assert Suspect(target, 0, "a") not in told_first(out, target)  # no buddy system
    assert m.health_score == 0


# ---------------------------------------------------------------- claims about ourselves


def test_suspicion_of_ourselves_is_refuted_with_a_higher_incarnation() -> None:
    m = core()
    out = m.handle(packet("c", Suspect("a", 0, "c")), "c", 1.0)
    assert m.incarnation == 1
    # The accuser hears the refutation at once (Lifeguard), the rest through gossip.
    assert Alive("a", 1, "a", NodeMeta()) in messages(out, Alive, to="c")
    assert m.stats.refutations == 1
    assert m.health_score == 1


def test_death_of_ourselves_is_refuted_and_old_news_is_not() -> None:
    m = core()
    m.handle(packet("c", Dead("a", 4, "c")), "c", 1.0)
    assert m.incarnation == 5
    m.handle(packet("c", Suspect("a", 3, "c")), "c", 1.1)
    m.handle(packet("c", Alive("a", 5, "a", NodeMeta())), "c", 1.2)
    assert m.incarnation == 5


def test_incarnation_only_grows_through_meta_updates_too() -> None:
    m = core()
    m.update_meta(NodeMeta(roles=("lb",), site="s1", api="10.0.0.1:9000"), 1.0)
    assert m.incarnation == 1
    out = advance(m, 1.2)  # the gossip round carries the new metadata
    assert any(isinstance(a, Alive) and a.meta.site == "s1" for a in messages(out, Alive))


# ---------------------------------------------------------------- membership changes


def test_unknown_member_is_learnt_from_an_alive_claim_with_its_metadata() -> None:
    m = core()
    meta = NodeMeta(roles=("controller",), site="dc1", api="10.1.1.1:7000")
    out = m.handle(packet("z", Alive("z", 0, "z:1", meta)), "z:1", 1.0)
    [change] = changes(out)
    assert change.previous is None and change.member.meta == meta
    assert m.last_seen("z") is None  # "z" was unknown when its packet arrived
    m.handle(packet("z", Ping(1, "a")), "z:1", 2.0)
    assert m.last_seen("z") == 2.0


def test_suspect_or_dead_claims_about_unknown_members_are_ignored() -> None:
    m = core()
    out = m.handle(packet("c", Suspect("q", 0, "c"), Dead("r", 0, "c")), "c", 1.0)
    assert not changes(out)
    assert m.member("q") is None and m.member("r") is None


def test_alive_claim_from_another_address_is_a_conflict_not_a_takeover() -> None:
    m = core()
    m.handle(packet("b", Alive("b", 9, "impostor:1", NodeMeta())), "impostor:1", 1.0)
    assert m.member("b").addr == "b"  # type: ignore[union-attr]
    assert m.stats.conflicts == 1


def test_dead_member_may_come_back_at_a_new_address() -> None:
    m = core()
    m.handle(packet("c", Dead("b", 0, "c")), "c", 1.0)
    m.handle(packet("b", Alive("b", 1, "b:2", NodeMeta())), "b:2", 2.0)
    record = m.member("b")
    assert record is not None and (record.state, record.addr) == (A, "b:2")


def test_dead_members_are_forgotten_after_dead_reap() -> None:
    m = core()
    m.handle(packet("c", Dead("b", 0, "c")), "c", 1.0)
    advance(m, 1.0 + m.config.dead_reap + m.config.dead_reap / 2)
    assert m.member("b") is None


def test_packet_from_a_member_we_hold_dead_gets_told_so() -> None:
    m = core()
    m.handle(packet("c", Dead("b", 0, "c")), "c", 1.0)
    out = m.handle(packet("b", Ping(3, "a")), "b", 2.0)
    assert Dead("b", 0, "a") in messages(out, Dead, to="b")
    out = m.handle(packet("b", Ping(4, "a")), "b", 2.01)  # rate limited
    assert Dead("b", 0, "a") not in messages(out, Dead, to="b")


def test_reconnect_pings_a_dead_member_and_exchanges_state_when_it_answers() -> None:
    m = core()
    m.handle(packet("c", Dead("b", 0, "c")), "c", 1.0)
    out = advance(m, 1.0 + 2 * m.config.reconnect_interval, {"b"})
    pings = [(addr, p) for addr, p in primary(out, Ping) if addr == "b"]
    assert pings
    _, ping = pings[-1]
    assert isinstance(ping, Ping)
    out = m.handle(packet("b", Ack(ping.seq)), "b", m.next_deadline() - 1e-6)
    assert [s.addr for s in sends(out) if s.reliable] == ["b"]


# ---------------------------------------------------------------- join, leave, push-pull


def test_join_pushes_state_to_each_seed_and_retries_until_answered() -> None:
    m = core(peers=())
    out = m.join(["s1", "s2", "a"], 0.0)  # our own address is not a seed
    assert sorted(s.addr for s in sends(out) if s.reliable) == ["s1", "s2"]
    assert not m.joined
    out = advance(m, m.config.join_retry)
    assert sorted(s.addr for s in sends(out) if s.reliable) == ["s1", "s2"]
    digest = MemberDigest("s1", "s1", NodeMeta(), 0, A)
    out = m.handle(packet("s1", PushPull(True, True, (digest,))), "s1", 1.5)
    assert m.joined and m.member("s1") is not None
    assert not [s for s in sends(out) if s.reliable]  # a reply is never answered
    out = advance(m, 1.5 + 3 * m.config.join_retry)
    assert not [s for s in sends(out) if s.reliable and s.addr in ("s1", "s2")]


def test_push_pull_is_answered_after_merging_and_turns_deaths_into_suspicions() -> None:
    m = core()
    digests = (
        MemberDigest("a", "a", NodeMeta(), 0, D),  # we are said to be dead: refute
        MemberDigest("b", "b", NodeMeta(), 0, D),  # b is said to be dead: suspect only
        MemberDigest("n", "n", NodeMeta(), 2, A),
        MemberDigest("c", "c", NodeMeta(), 0, L),
    )
    out = m.handle(packet("x", PushPull(False, False, digests)), "x", 1.0)
    assert m.member("b").state is S  # type: ignore[union-attr]
    assert m.member("n").state is A  # type: ignore[union-attr]
    assert m.member("c").state is L  # type: ignore[union-attr]
    [reply] = [s for s in sends(out) if s.reliable]
    assert reply.addr == "x"
    msg = reply.packet.messages[0]
    assert isinstance(msg, PushPull) and msg.reply
    me = next(d for d in msg.members if d.name == "a")
    assert (me.state, me.incarnation) == (A, 1)  # the answer already carries the refutation


def test_leave_announces_departure_and_finishes() -> None:
    m = core()
    out = m.leave(1.0)
    assert Dead("a", 0, "a") in messages(out, Dead)
    out += advance(m, 3.0)
    assert sum(isinstance(e, LeaveDone) for e in out) == 1
    assert m.left and m.next_deadline() == math.inf
    assert m.handle(packet("b", Ping(1, "a")), "b", 4.0) == []


def test_leaving_member_is_marked_left_by_others() -> None:
    m = core()
    out = m.handle(packet("b", Dead("b", 0, "b")), "b", 1.0)
    assert [(c.previous, c.member.state) for c in changes(out)] == [(A, L)]
    assert not changes(m.handle(packet("c", Suspect("b", 0, "c")), "c", 1.1))


def test_leaving_member_ignores_death_claims_about_itself() -> None:
    m = core()
    m.leave(1.0)
    m.handle(packet("b", Dead("a", 0, "b")), "b", 1.01)
    assert m.incarnation == 0


def test_lone_member_leaves_at_once() -> None:
    m = core(peers=())
    assert any(isinstance(e, LeaveDone) for e in m.leave(0.0))


# ---------------------------------------------------------------- packets and piggyback


def test_piggybacked_claims_respect_the_packet_budget_and_retransmit_limit() -> None:
    m = core()
    for i in range(200):
        m.handle(packet("b", Alive(f"m{i:03}", 0, f"m{i:03}", NodeMeta())), "b", 1.0)
    limit = m.config.retransmit_limit(m.live_count())
    seen: dict[str, int] = {}
    out = advance(m, 30.0)
    for s in sends(out):
        if s.reliable:
            continue
        assert sum(_size(x) for x in s.packet.messages) <= m.config.packet_budget
        for msg in s.packet.messages[1:] if isinstance(s.packet.messages[0], Ping) else ():
            if isinstance(msg, Alive):
                seen[msg.name] = seen.get(msg.name, 0) + 1
    assert max(seen.values()) <= limit


def _size(msg: object) -> int:
    from corral.core.membership.messages import estimated_size

    return estimated_size(msg)  # type: ignore[arg-type]


def test_tick_before_the_deadline_does_nothing() -> None:
    m = core()
    deadline = m.next_deadline()
    assert m.tick(deadline - 1e-6) == []
    assert m.next_deadline() == deadline


def test_learning_we_were_declared_dead_withdraws_suspicions_we_raised_alone() -> None:
    m = core()
    t, target, _, _ = first_probe(m)
    advance(m, t + m.config.probe_interval, ALL, nacks=False)  # we alone suspect target
    m.handle(packet("c", Suspect("b", 0, "c")), "c", t + 0.11)  # not ours alone: kept
    out = m.handle(packet("d", Dead("a", 0, "d")), "d", t + 0.12)  # we were cut off
    assert m.incarnation == 1
    assert [(c.member.name, c.member.state) for c in changes(out)] == [(target, A)]
    assert m.member("b").state is S  # type: ignore[union-attr]
    assert m.stats.retracted == 1


def test_plain_swim_keeps_its_suspicions_when_declared_dead() -> None:
    m = core(config=profile("lan", lifeguard=False))
    t, target, _, _ = first_probe(m)
    advance(m, t + m.config.probe_interval, ALL, nacks=False)
    m.handle(packet("d", Dead("a", 0, "d")), "d", t + 0.12)
    assert m.member(target).state is S  # type: ignore[union-attr]


def test_push_pull_period_follows_the_cluster_size_known_now() -> None:
    peers = tuple(f"p{i}" for i in range(999))
    m = core(peers=peers)
    period = m.config.push_pull_period(1000)
    assert period > 100 * m.config.push_pull_interval / 4  # linear in N beyond push_pull_scale
    out = advance(m, 0.5 * period - 1)
    assert not [s for s in sends(out) if s.reliable]  # not at the small-cluster period
    out = advance(m, 1.5 * period + 1)
    assert len([s for s in sends(out) if s.reliable]) == 1


def test_every_timer_has_a_handler() -> None:
    from corral.core.membership.core import _ON_TIMER
    from corral.core.membership.timers import Timer

    assert set(_ON_TIMER) == set(Timer)
