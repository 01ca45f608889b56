"""What a member believes about the others: claims in, state changes out.

The half of the core that applies alive / suspect / dead claims through the transition table
(:mod:`.members`), runs suspicions (Lifeguard confirmations), refutes claims about ourselves,
and merges push-pull state. :class:`~.core.Membership` mixes it in; the attributes and output
methods declared here are the ones it provides.
"""

from __future__ import annotations

from corral.core.membership.config import MembershipConfig
from corral.core.membership.lifeguard import Awareness, Suspicion
from corral.core.membership.members import ClaimKind, Member, is_live, next_state
from corral.core.membership.messages import (
    Alive,
    Claim,
    Dead,
    MemberDigest,
    MemberState,
    Message,
    NodeMeta,
    PushPull,
    Suspect,
)
from corral.core.membership.stats import Stats
from corral.core.membership.table import MemberTable
from corral.core.membership.timers import Timer, TimerHeap


class Claims:
    """Claim handling for :class:`~.core.Membership` (a mixin: it has no state of its own)."""

    name: str
    addr: str
    meta: NodeMeta
    incarnation: int
    config: MembershipConfig
    stats: Stats
    leaving: bool
    joined: bool
    _table: MemberTable
    _suspicions: dict[str, Suspicion]
    _timers: TimerHeap
    _awareness: Awareness
    _now: float

    def live_count(self) -> int:
        raise NotImplementedError

    def _change(self, record: Member, previous: MemberState | None, source: str) -> None:
        raise NotImplementedError

    def _broadcast(self, claim: Claim) -> None:
        raise NotImplementedError

    def _send(self, addr: str, msgs: tuple[Message, ...]) -> None:
        raise NotImplementedError

    def _send_reliable(self, addr: str, msg: PushPull) -> None:
        raise NotImplementedError

    def _on_alive(self, msg: Alive, sender: str, src: str, now: float) -> None:
        if msg.name == self.name:
            self._claim_about_self(ClaimKind.ALIVE, msg.incarnation, sender, msg)
            return
        current = self._table.get(msg.name)
        if current is None:
            record = Member(msg.name, msg.addr, msg.meta, msg.incarnation, MemberState.ALIVE, now)
            self._change(record, None, sender)
            self._broadcast(msg)
            return
        if msg.addr != current.addr and is_live(current.state):
            # Two live nodes claiming one name: keep the one we know, never flap between them.
            self.stats.conflicts += 1
            return
        target = next_state(current, ClaimKind.ALIVE, msg.incarnation)
        if target is None:
            return
        since = current.since if current.state is target else now
        record = Member(msg.name, msg.addr, msg.meta, msg.incarnation, target, since)
        self._suspicions.pop(msg.name, None)
        self._change(record, current.state, sender)
        self._broadcast(msg)

    def _on_suspect(self, msg: Suspect, sender: str, src: str, now: float) -> None:
        if msg.name == self.name:
            self._claim_about_self(ClaimKind.SUSPECT, msg.incarnation, msg.accuser, None)
            return
        current = self._table.get(msg.name)
        if current is None:
            return
        if next_state(current, ClaimKind.SUSPECT, msg.incarnation) is None:
            return
        if current.state is MemberState.SUSPECT:
            self._confirm(current, msg, now)
            return
        record = current._replace(incarnation=msg.incarnation, state=MemberState.SUSPECT, since=now)
        n = self.live_count()
        low, high = self.config.suspicion_bounds(n)
        k = self.config.confirmations_wanted(n)
        susp = Suspicion(msg.accuser, msg.incarnation, now, low, high, k)
        self._suspicions[msg.name] = susp
        self._timers.at(susp.deadline(), Timer.SUSPICION, msg.name)
        self.stats.suspicions += 1
        self._change(record, current.state, msg.accuser)
        self._broadcast(msg)

    def _confirm(self, current: Member, msg: Suspect, now: float) -> None:
        susp = self._suspicions.get(current.name)
        if susp is None:
            return
        if msg.incarnation > current.incarnation:
            self._table.put(current._replace(incarnation=msg.incarnation))
            susp.incarnation = msg.incarnation
        if susp.confirm(msg.accuser):
            self.stats.confirmations += 1
            # The deadline only moves earlier; the old timer entry finds nothing to do.
            self._timers.at(max(now, susp.deadline()), Timer.SUSPICION, current.name)
            self._broadcast(msg)  # others should count this independent accuser too

    def _on_dead(self, msg: Dead, sender: str, src: str, now: float) -> None:
        if msg.name == self.name:
            if not self.leaving:
                self._claim_about_self(ClaimKind.DEAD, msg.incarnation, msg.accuser, None)
            return
        current = self._table.get(msg.name)
        if current is None:
            return
        kind = ClaimKind.LEAVE if msg.accuser == msg.name else ClaimKind.DEAD
        target = next_state(current, kind, msg.incarnation)
        if target is None:
            return
        record = current._replace(incarnation=msg.incarnation, state=target, since=now)
        self._suspicions.pop(msg.name, None)
        self._change(record, current.state, msg.accuser)
        self._broadcast(msg)

    def _claim_about_self(
        self, kind: ClaimKind, incarnation: int, accuser: str, alive: Alive | None
    ) -> None:
        """Refute any claim about us that is not our own current alive claim."""
        if self.leaving or incarnation < self.incarnation:
            return
        if (
            alive is not None
            and incarnation == self.incarnation
            and (alive.addr, alive.meta) == (self.addr, self.meta)
        ):
            return  # our own news coming back
        if kind is not ClaimKind.ALIVE:
            # Being suspected is evidence that we are the slow one (Lifeguard).
            self._awareness.apply(1)
        if kind is ClaimKind.DEAD and self.config.lifeguard:
            self._retract_lone_suspicions()
        self.incarnation = max(incarnation, self.incarnation) + 1
        self.stats.refutations += 1
        claim = Alive(self.name, self.incarnation, self.addr, self.meta)
        self._broadcast(claim)
        accuser_record = self._table.get(accuser)
        if self.config.lifeguard and accuser_record is not None and accuser != self.name:
            self._send(accuser_record.addr, (claim,))  # answer the accuser at once

    def _retract_lone_suspicions(self) -> None:
        """We were declared dead, so we were cut off or stalled: suspicions that only we raised
        are evidence of that, not of the members we accused. Withdraw them (our own view only;
        a probe will raise them again if they were right) so that they cannot run out into
        death verdicts just after the partition heals."""
        for name, susp in list(self._suspicions.items()):
            record = self._table.get(name)
            if susp.accusers != {self.name} or record is None:
                continue
            del self._suspicions[name]
            self.stats.retracted += 1
            self._change(
                record._replace(state=MemberState.ALIVE, since=self._now), record.state, self.name
            )

    def _on_push_pull(self, msg: PushPull, sender: str, src: str, now: float) -> None:
        for d in msg.members:
            self._merge(d, sender, now)
        if not msg.reply:
            # Answer after merging, so the answer carries any refutation the merge caused; to
            # the address the sender advertises (a stream's source port is ephemeral).
            reply_to = next((d.addr for d in msg.members if d.name == sender), src)
            self._send_reliable(reply_to, PushPull(msg.join, True, self._digests()))
        else:
            self.joined = True

    def _merge(self, d: MemberDigest, sender: str, now: float) -> None:
        state = d.state
        if state is MemberState.ALIVE:
            self._on_alive(Alive(d.name, d.incarnation, d.addr, d.meta), sender, "", now)
        elif state is MemberState.LEFT:
            self._on_dead(Dead(d.name, d.incarnation, d.name), sender, "", now)
        elif d.name == self.name:
            kind = ClaimKind.DEAD if state is MemberState.DEAD else ClaimKind.SUSPECT
            self._claim_about_self(kind, d.incarnation, sender, None)
        else:
            # A remote death verdict becomes a suspicion here: if it was wrong, the member
            # still has a chance to refute it before we agree.
            if d.name not in self._table:
                return
            self._on_suspect(Suspect(d.name, d.incarnation, sender), sender, "", now)

    def _digests(self) -> tuple[MemberDigest, ...]:
        me = MemberDigest(self.name, self.addr, self.meta, self.incarnation, MemberState.ALIVE)
        rest = tuple(
            MemberDigest(r.name, r.addr, r.meta, r.incarnation, r.state)
            for r in self._table.records()
        )
        return (me, *rest)
