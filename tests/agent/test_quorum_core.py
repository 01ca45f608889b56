"""The proof that no store member has a leader, and the keep window it extends (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corral.core.quorum import (
    DeadStatement,
    KeepWindow,
    MemberAnswer,
    StoreWord,
    Verdict,
    judge_round,
)

MEMBERS = ("a", "b", "c")
ELECTION = 0.5
PROVEN = Verdict(True, "test")


def leaderless(at: float) -> dict[str, MemberAnswer]:
    return {m: MemberAnswer(at, 0) for m in MEMBERS}


def test_every_member_leaderless_in_time_is_a_proof() -> None:
    verdict = judge_round(10.0, MEMBERS, leaderless(10.2), ELECTION)
    assert verdict.proven, verdict.reason


def test_a_silent_member_is_never_counted_as_leaderless() -> None:
    answers = leaderless(10.1)
    del answers["c"]  # killed, frozen, or behind a firewall: all look the same
    verdict = judge_round(10.0, MEMBERS, answers, ELECTION)
    assert not verdict.proven and "no answer from c" in verdict.reason


def test_a_member_with_a_leader_refutes() -> None:
    answers = leaderless(10.1)
    answers["b"] = MemberAnswer(10.1, 0xBEEF)  # a partition: b follows a leader elsewhere
    verdict = judge_round(10.0, MEMBERS, answers, ELECTION)
    assert not verdict.proven and "b has a leader (beef)" in verdict.reason


def test_an_answer_after_an_election_timeout_is_too_late() -> None:
    """A leader that answered late may have committed (an expiry) after the round started
    and stepped down since: answers must all come within an election timeout."""
    answers = leaderless(10.1)
    answers["a"] = MemberAnswer(10.0 + ELECTION, 0)
    assert not judge_round(10.0, MEMBERS, answers, ELECTION).proven
    answers["a"] = MemberAnswer(9.99, 0)  # before the round: not an answer to it
    assert not judge_round(10.0, MEMBERS, answers, ELECTION).proven


def test_no_members_no_proof() -> None:
    assert not judge_round(0.0, (), {}, ELECTION).proven


def test_a_proof_keeps_ttl_minus_margin_past_its_start() -> None:
    window = KeepWindow(max_keep=600.0)
    window.renewal_deadline(12.25)  # renewal sent at 10, ttl 3, margin 0.75
    assert window.proof(12.0, PROVEN, 2.25)
    assert window.deadline() == 14.25
    assert window.extended(13.0) and not window.extended(14.25)


def test_a_round_started_after_the_deadline_cannot_revive_it() -> None:
    """The chain must have no gap: after the deadline the lease may have expired already."""
    window = KeepWindow(max_keep=600.0)
    window.renewal_deadline(12.25)
    assert not window.proof(12.25, PROVEN, 2.25)
    assert window.deadline() == 12.25


def test_a_refuted_round_does_not_extend_and_a_renewal_ends_the_keep() -> None:
    window = KeepWindow(max_keep=600.0)
    window.renewal_deadline(12.25)
    assert not window.proof(12.0, Verdict(False, "no answer"), 2.25)
    assert window.proof(12.0, PROVEN, 2.25)
    window.renewal_deadline(15.0)  # renewals resumed
    assert window.deadline() == 15.0 and not window.extended(14.0)


def test_the_keep_is_bounded() -> None:
    window = KeepWindow(max_keep=5.0)
    window.renewal_deadline(10.0)
    started = 9.0
    while window.proof(started, PROVEN, 2.25):
        started = window.deadline() - 0.5
    assert window.deadline() == 15.0  # the bound: 5 s past the renewal deadline


@given(
    st.lists(st.tuples(st.floats(0, 20), st.booleans(), st.floats(0.1, 5)), min_size=1, max_size=30)
)
def test_the_deadline_never_exceeds_a_proven_start_plus_lifetime_or_the_bound(
    rounds: list[tuple[float, bool, float]],
) -> None:
    """Whatever rounds come (in any order, proven or not), the keep deadline is the renewal
    deadline or the start of a proven round that began before the deadline then in force,
    plus the lifetime; never past the bound."""
    window = KeepWindow(max_keep=8.0)
    window.renewal_deadline(5.0)
    allowed = {5.0}
    for started, proven, lifetime in rounds:
        before = window.deadline()
        window.proof(started, Verdict(proven, ""), lifetime)
        after = window.deadline()
        if after != before:
            assert proven and started < before
            assert after == min(started + lifetime, 13.0)
        allowed.add(after)
        assert after <= 13.0
    assert window.deadline() in allowed


def test_a_silent_member_stated_down_since_before_the_round_counts() -> None:
    """Two members killed: the survivor answers; the dead ones' agents say, after seeing the
    round's nonce, how long their member has been down."""
    answers = {"a": MemberAnswer(10.1, 0)}
    statements = {
        "b": DeadStatement(received=10.4, down_for=3.0, echoes=True),
        "c": DeadStatement(received=10.3, down_for=0.5, echoes=True),
    }
    verdict = judge_round(10.0, MEMBERS, answers, ELECTION, statements)
    assert verdict.proven and "(b, c down)" in verdict.reason


@pytest.mark.parametrize(
    ("statement", "why"),
    [
        (DeadStatement(10.4, 3.0, echoes=False), "said before the round: it may be stale"),
        (DeadStatement(10.6, 0.5, echoes=True), "down only since after the round started"),
        (DeadStatement(9.9, 3.0, echoes=True), "heard before the round started"),
    ],
)
def test_a_statement_that_does_not_cover_the_round_start_is_refused(
    statement: DeadStatement, why: str
) -> None:
    answers = {"a": MemberAnswer(10.1, 0), "b": MemberAnswer(10.1, 0)}
    verdict = judge_round(10.0, MEMBERS, answers, ELECTION, {"c": statement})
    assert not verdict.proven, why
    assert "no answer from c" in verdict.reason


def test_a_direct_answer_with_a_leader_beats_a_statement() -> None:
    answers = {m: MemberAnswer(10.1, 0) for m in MEMBERS}
    answers["c"] = MemberAnswer(10.1, 7)
    statement = {"c": DeadStatement(10.2, 5.0, echoes=True)}
    assert not judge_round(10.0, MEMBERS, answers, ELECTION, statement).proven


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", StoreWord()),
        ("garbage", StoreWord()),
        ("a=zz", StoreWord()),  # not a nonce
        ("a=" + "f" * 40, StoreWord()),  # too long
        ("d=-5;e=", StoreWord()),
        ("d=x", StoreWord()),
        ("d=1;e=ABC", StoreWord()),
        ("a=0123;e=abc", StoreWord("0123", None, ("abc",))),  # no d=: states nothing
    ],
)
def test_a_malformed_word_states_nothing(text: str, expected: StoreWord) -> None:
    assert StoreWord.decode(text) == expected


def test_a_word_round_trips() -> None:
    word = StoreWord("ab12", 1500, ("cd34", "ef56"))
    assert StoreWord.decode(word.encode()) == word
    assert StoreWord.decode(StoreWord("ab12").encode()) == StoreWord("ab12")
