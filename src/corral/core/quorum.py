"""Keeping exclusive instances while the store has no leader anywhere (pure).

Rule 1 stops every exclusive instance of a node (its VIPs first) when its lease was not renewed
for ``lease_ttl - safety_margin``: another node may take them once the lease expires. When the
store itself has lost quorum while every node is up, that rule makes the HA manager take every
API down. This module decides when an agent may instead **keep** what it holds (never start or
promote anything) past its renewal deadline: while it holds a fresh proof that no etcd member
can be a leader, so no lease can expire.

Why a proof keeps the lease alive (see ``docs/safety-rules.md``, "Store quorum loss"):
- etcd expires a lease only by a revoke that a leader commits, and a newly elected leader first
  extends every lease to at least its election time + TTL (the lessor's promotion; corral runs
  its embedded members without lease checkpointing, so the full TTL is granted again).
- A **proof round** starts at ``s`` (this node's monotonic clock): every voting member is asked
  for its status after ``s``, and every one answers that it has no leader, all answers received
  before ``s + election_timeout``.
- Then no lease expires in ``[s, s + ttl)``: a leader that could expire one there was elected
  before ``s`` and stayed leader past ``s``; it was asked in ``[s, s + election)`` and said it
  was not leader, so it lost its leadership before answering; but a leader steps down only an
  election timeout after it last heard from a quorum (check-quorum; pre-vote keeps any other
  member from deposing it sooner), so it committed nothing after ``s``. Any leader elected
  after ``s`` extends every lease to beyond ``s + ttl``.
- A round must start before the current keep deadline (the renewal deadline, or the previous
  proof's), so the lease was alive when it started: the proofs chain without a gap.

A member that does not answer counts as leaderless only by the **statement** of the agent that
supervises it (:class:`StoreWord`, carried in gossip metadata): "my member has been down for
``d`` seconds", made after it saw this round's nonce (so after ``s``), and received here at
``r`` with ``r - s <= d`` (so the member was already down at ``s``: it cannot have been a
leader then, nor acked one, and if it restarts later any leader it helps elect is new).

The keep deadline of a proof at ``s`` is ``s + ttl - safety_margin``, as for a renewal sent at
``s``; the keep is bounded (``max_keep`` after the renewal deadline it extends) so that an
unforeseen case cannot hold a VIP forever. A member that does not answer (killed, frozen,
unreachable) is never counted as leaderless: a timeout or a refused connection also looks like a
partition, in which the node must drop its instances as rule 1 says; only its own agent's
statement (which knows the process exited) stands for it.

Time is an input; nothing here reads a clock or the network.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class MemberAnswer:
    """One member's status answer: when it was received, and the leader it named (0: none)."""

    received: float
    leader: int


@dataclass(frozen=True)
class DeadStatement:
    """A peer agent's word that its member is down: received here at ``received``, down for
    ``down_for`` seconds when it was said, and whether it echoes this round's nonce."""

    received: float
    down_for: float
    echoes: bool


ECHO_MAX = 8  # nonces one statement echoes (one per peer asking at once)


@dataclass(frozen=True)
class StoreWord:
    """What an agent says about the store in its gossip metadata: ``ask``, the nonce of its
    current proof round ('' when none); ``down_ms``, how long the store member it supervises
    has been down (None: running, or not supervised here); ``echo``, the peers' round nonces
    it had seen when it said so. Encoded as ``a=<ask>;d=<ms>;e=<n1>,<n2>``."""

    ask: str = ""
    down_ms: int | None = None
    echo: tuple[str, ...] = ()

    def encode(self) -> str:
        parts = [f"a={self.ask}"] if self.ask else []
        if self.down_ms is not None:
            parts.append(f"d={self.down_ms}")
            parts.append("e=" + ",".join(self.echo[:ECHO_MAX]))
        return ";".join(parts)

    @classmethod
    def decode(cls, text: str) -> StoreWord:
        """The word in ``text``; an empty word for anything malformed (a word that cannot be
        read proves nothing)."""
        try:
            fields = dict(part.split("=", 1) for part in text.split(";") if part)
            down = fields.get("d")
            echo = tuple(n for n in fields.get("e", "").split(",") if n)
            ask = fields.get("a", "")
            if not all(_nonce_ok(n) for n in (*echo, *([ask] if ask else []))):
                return cls()
            down_ms = int(down) if down is not None else None
            if down_ms is not None and down_ms < 0:
                return cls()
            return cls(ask, down_ms, echo[:ECHO_MAX])
        except ValueError:
            return cls()


def _nonce_ok(nonce: str) -> bool:
    return 0 < len(nonce) <= 16 and all(c in "0123456789abcdef" for c in nonce)


@dataclass(frozen=True)
class Verdict:
    """A round's outcome: ``proven`` (no member can be a leader at ``started``) and why not."""

    proven: bool
    reason: str


def judge_round(
    started: float,
    members: tuple[str, ...],
    answers: Mapping[str, MemberAnswer],
    election_timeout: float,
    statements: Mapping[str, DeadStatement] | None = None,
) -> Verdict:
    """Whether the round that started at ``started`` proves that no member can be a leader.

    ``members``: every voting member of the store; ``answers``: the members that answered, by
    name; ``statements``: peer agents' words that their member is down, by member. Proven only
    when every member either answered, with no leader, received in
    ``[started, started + election_timeout)``, or is the subject of a statement that echoes the
    round's nonce and was received no later than ``down_for`` after ``started``."""
    if not members:
        return Verdict(False, "no voting members are known")
    stated = statements or {}
    down = [m for m in members if m not in answers and _dead_at(stated.get(m), started)]
    missing = [m for m in members if m not in answers and m not in down]
    if missing:
        return Verdict(False, f"no answer from {', '.join(sorted(missing))}")
    for name in members:
        if name in down:
            continue
        answer = answers[name]
        if answer.leader != 0:
            return Verdict(False, f"{name} has a leader ({answer.leader:x})")
        if not started <= answer.received < started + election_timeout:
            late = answer.received - started
            return Verdict(False, f"{name} answered {late:.2f}s into the round (too late)")
    if down:
        return Verdict(
            True,
            f"none of {len(members)} member(s) has a leader ({', '.join(sorted(down))} down)",
        )
    return Verdict(True, f"none of {len(members)} member(s) has a leader")


def _dead_at(statement: DeadStatement | None, started: float) -> bool:
    """The statement shows its member down at ``started``: said after it (it echoes the
    round's nonce) and covering it (received within ``down_for`` of it)."""
    return (
        statement is not None
        and statement.echoes
        and started <= statement.received <= started + statement.down_for
    )


class KeepWindow:
    """The keep deadline of one node's exclusive instances, past its renewal deadline.

    ``renewal_deadline(d)`` reports the rule-1 deadline of the node's last renewal (called after
    every renewal; a later renewal ends any keep). ``proof(s, verdict, lifetime)`` records a
    judged round that started at ``s``; a proven round extends the keep deadline to
    ``s + lifetime`` (``lifetime`` = ``ttl - safety_margin``) if it started before the current
    deadline (no gap in the chain), never beyond ``max_keep`` past the renewal deadline.
    ``deadline()`` is the later of the renewal deadline and the keep."""

    def __init__(self, max_keep: float) -> None:
        self.max_keep = max_keep
        self._renewal = -math.inf
        self._keep = -math.inf

    def renewal_deadline(self, deadline: float) -> None:
        if deadline > self._renewal:
            self._renewal = deadline
            if self._keep <= deadline:
                self._keep = -math.inf

    def proof(self, started: float, verdict: Verdict, lifetime: float) -> bool:
        """Record a judged round; True when it extended the keep deadline."""
        if not verdict.proven or self._renewal == -math.inf or started >= self.deadline():
            return False
        until = min(started + lifetime, self._renewal + self.max_keep)
        if until <= self.deadline():
            return False
        self._keep = until
        return True

    def deadline(self) -> float:
        return max(self._renewal, self._keep)

    def extended(self, now: float) -> bool:
        """True while a proof extends the renewal deadline and has not run out at ``now``."""
        return self._keep > self._renewal and now < self._keep


def leader_of(body: bytes) -> int:
    """The member's leader id from etcd's ``/v3/maintenance/status`` answer (0: it names none).
    Raises ``ValueError`` for a body that is not a status (an answer that cannot be read is no
    proof)."""
    value = json.loads(body)
    if not isinstance(value, dict) or "header" not in value:
        raise ValueError("not an etcd status")
    return int(value.get("leader", 0))
