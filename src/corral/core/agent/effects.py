"""What the agent core decides: typed reasons and the effects the shell carries out (pure).

The core (:class:`corral.core.agent.core.AgentCore`) returns effects; the asyncio shell
(:mod:`corral.agent.node`) carries them out in order and reports back what happened. A reason
is a :class:`Why`, not prose: whether a stop drains, whether a failure is counted, and what an
event says are read from it, never from the wording of a message.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Why(Enum):
    """Why the core asks for an action. ``drain``: a stop for this reason first takes the
    instance out of the load balancers (planned: the controller moved it, an operator asked,
    the agent shuts down); a self-fence never waits for a drain (rule 1)."""

    ASSIGNED = ("assigned to this node", False)
    NOT_ASSIGNED = ("not assigned to this node", True)
    SELF_FENCE = ("self-fence: node lease not renewed in time (rule 1)", False)
    PROMOTED_ELSEWHERE = ("the promoted role is assigned elsewhere", False)
    PROMOTE_ASSIGNED = ("assigned the promoted role", False)
    FAILED = ("the service manager reports it failed", False)
    UNHEALTHY = ("its health checks fail", False)
    OPERATOR_RESTART = ("restart requested by an operator", True)
    SHUTDOWN = ("agent shutting down", True)

    def __init__(self, text: str, drain: bool) -> None:
        self.text = text
        self.drain = drain


@dataclass(frozen=True)
class Start:
    """Start instance ``key`` (an exclusive one only if the lease is still fresh when the
    start begins: the shell asks :meth:`AgentCore.may_start` at that moment)."""

    key: str
    why: Why


@dataclass(frozen=True)
class Stop:
    """Stop instance ``key``; ``why.drain`` says whether load balancers drain it first."""

    key: str
    why: Why


@dataclass(frozen=True)
class Restart:
    """Restart ``key`` in place (it failed): stop it, and start it only if the stop worked.
    The failure is counted by the :class:`CountFailure` the core puts before it."""

    key: str
    why: Why


@dataclass(frozen=True)
class Promote:
    key: str
    why: Why


@dataclass(frozen=True)
class Demote:
    key: str
    why: Why


@dataclass(frozen=True)
class CountFailure:
    """Add one to ``failcounts/<node>/<resource>`` (the scheduler bans after the threshold)."""

    resource: str
    reason: str


@dataclass(frozen=True)
class Event:
    """An event for operators (``events/``): ``kind`` as in the event record."""

    kind: str
    text: str
    resource: str = ""


@dataclass(frozen=True)
class Note:
    """A decision worth a debug line and the agent's recent decisions, not an event."""

    text: str


Effect = Start | Stop | Restart | Promote | Demote | CountFailure | Event | Note
