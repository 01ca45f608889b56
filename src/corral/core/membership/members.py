"""The member record and the transition table for claims about other members.

The table is the whole protocol for what one node believes about another: given the state it
holds and an incoming claim, either the claim is ignored or the member moves to a new state.
Claims about ourselves never go through this table; the core refutes them instead.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

from corral.core.membership.messages import MemberState, NodeMeta


class Member(NamedTuple):
    """What one node knows about a member. Immutable: a change replaces the record, which lets
    a simulator share one record between thousands of tables."""

    name: str
    addr: str
    meta: NodeMeta
    incarnation: int
    state: MemberState
    since: float
    """When this node saw the member enter ``state`` (its own monotonic clock)."""


class ClaimKind(enum.Enum):
    ALIVE = "alive"
    SUSPECT = "suspect"
    DEAD = "dead"
    LEAVE = "leave"
    """A dead claim made by the member about itself: a graceful departure."""


class Need(enum.Enum):
    """How a claim's incarnation must compare with the one held for it to apply."""

    NEWER = ">"
    SAME_OR_NEWER = ">="


A, S, D, L = MemberState.ALIVE, MemberState.SUSPECT, MemberState.DEAD, MemberState.LEFT
_NEWER, _SAME = Need.NEWER, Need.SAME_OR_NEWER

TRANSITIONS: dict[tuple[MemberState, ClaimKind], tuple[Need, MemberState] | None] = {
    # Only a newer incarnation can say "alive" again: that is what makes refutation possible and
    # stops an old alive claim, still in flight, from clearing a fresh suspicion.
    (A, ClaimKind.ALIVE): (_NEWER, A),
    (A, ClaimKind.SUSPECT): (_SAME, S),
    (A, ClaimKind.DEAD): (_SAME, D),
    (A, ClaimKind.LEAVE): (_SAME, L),
    (S, ClaimKind.ALIVE): (_NEWER, A),
    # Suspect -> suspect is a confirmation (Lifeguard counts it); the core handles it.
    (S, ClaimKind.SUSPECT): (_SAME, S),
    (S, ClaimKind.DEAD): (_SAME, D),
    (S, ClaimKind.LEAVE): (_SAME, L),
    (D, ClaimKind.ALIVE): (_NEWER, A),
    (D, ClaimKind.SUSPECT): None,
    (D, ClaimKind.DEAD): None,
    # A leave overtaken by a failure verdict: record the departure, it is the better news.
    (D, ClaimKind.LEAVE): (_SAME, L),
    (L, ClaimKind.ALIVE): (_NEWER, A),
    (L, ClaimKind.SUSPECT): None,
    (L, ClaimKind.DEAD): None,
    (L, ClaimKind.LEAVE): None,
}


def next_state(current: Member, kind: ClaimKind, incarnation: int) -> MemberState | None:
    """The state ``current`` moves to on a ``kind`` claim at ``incarnation``, or ``None`` if the
    claim is stale or does not apply. Unknown members are the core's business: only an alive
    claim can introduce one."""
    rule = TRANSITIONS[(current.state, kind)]
    if rule is None:
        return None
    need, target = rule
    if need is Need.NEWER and incarnation <= current.incarnation:
        return None
    if need is Need.SAME_OR_NEWER and incarnation < current.incarnation:
        return None
    return target


def is_live(state: MemberState) -> bool:
    """Alive or suspect: still counted in ``N`` and still probed."""
    return state is MemberState.ALIVE or state is MemberState.SUSPECT
