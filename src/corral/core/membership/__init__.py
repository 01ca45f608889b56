"""Gossip membership: SWIM with Lifeguard, as a pure core (no sockets, no clock).

Public API: :class:`Membership` (the state machine), :class:`MembershipConfig` and
:func:`profile` (``lan`` / ``wan`` / ``local``), the effects :class:`Send`,
:class:`MemberChanged`, :class:`LeaveDone`, the record :class:`Member`, and the messages of
:mod:`.messages`. Shells (``corral.net``) and the simulator (``corral.sim``) drive it.
"""

from corral.core.membership.config import (
    MembershipConfig,
    ProfileName,
    profile,
    with_probe_interval,
)
from corral.core.membership.core import Membership
from corral.core.membership.effects import Effect, LeaveDone, MemberChanged, Send
from corral.core.membership.members import TRANSITIONS, ClaimKind, Member, next_state
from corral.core.membership.messages import (
    NO_META,
    Ack,
    Alive,
    Dead,
    MemberDigest,
    MemberState,
    Message,
    Nack,
    NodeMeta,
    Packet,
    Ping,
    PingReq,
    PushPull,
    Suspect,
)
from corral.core.membership.stats import Stats

__all__ = [
    "NO_META",
    "TRANSITIONS",
    "Ack",
    "Alive",
    "ClaimKind",
    "Dead",
    "Effect",
    "LeaveDone",
    "Member",
    "MemberChanged",
    "MemberDigest",
    "MemberState",
    "Membership",
    "MembershipConfig",
    "Message",
    "Nack",
    "NodeMeta",
    "Packet",
    "Ping",
    "PingReq",
    "ProfileName",
    "PushPull",
    "Send",
    "Stats",
    "Suspect",
    "next_state",
    "profile",
    "with_probe_interval",
]
