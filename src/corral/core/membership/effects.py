"""What the core asks its shell to do, and what it tells it. Frozen dataclasses, no behaviour.

Ordering contract: a call to ``tick`` / ``handle`` / ``join`` / ``leave`` returns its effects in
the order they were produced. A :class:`MemberChanged` always precedes the sends that spread the
news it reports. Shells send packets in order and may deliver notifications at once; they must
not reorder sends to the same address.
"""

from __future__ import annotations

from dataclasses import dataclass

from corral.core.membership.members import Member
from corral.core.membership.messages import MemberState, Packet


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``packet`` to ``addr``: a datagram, or a stream frame when ``reliable`` (push-pull)."""

    addr: str
    packet: Packet
    reliable: bool = False


@dataclass(frozen=True, slots=True)
class MemberChanged:
    """This node's view of a member changed.

    ``previous`` is ``None`` for a member seen for the first time, and equals ``member.state``
    when only the incarnation, address or metadata changed. ``source`` names the node whose
    claim caused the change: this node's own name when it reached the verdict itself (a failed
    probe, an expired suspicion), which is how a first-hand detection is told from hearsay.
    """

    member: Member
    previous: MemberState | None
    source: str


@dataclass(frozen=True, slots=True)
class LeaveDone:
    """The leave announcement has been sent as often as the retransmit limit asks (or the leave
    grace period ran out); the shell may now close its sockets."""


Effect = Send | MemberChanged | LeaveDone
