"""The membership core: SWIM with Lifeguard, as a synchronous state machine without I/O.

Inputs: :meth:`Membership.handle` (a packet arrived), :meth:`Membership.tick` (time passed),
:meth:`Membership.join`, :meth:`Membership.leave`, :meth:`Membership.update_meta`. Each takes
``now`` (seconds on the caller's monotonic clock, never decreasing) and returns a list of
:mod:`effects <corral.core.membership.effects>`. The shell must call :meth:`tick` no later than
:meth:`next_deadline` (calling it earlier or more often is harmless).

One protocol period (``probe_interval x (score + 1)``):

1. ping the next member in randomised round-robin order (a suspect ping also carries the
   suspicion: Lifeguard's buddy system);
2. no ack within the probe timeout: ask ``indirect_checks`` alive members to ping it (ping-req),
   each answering with the relayed ack or, with Lifeguard, a nack;
3. no ack by the end of the period: suspect it, tell it first (buddy system), gossip the
   suspicion; Lifeguard moves the health score by the nacks that did not come.

A suspicion becomes a death when its timer runs out (see :class:`~.lifeguard.Suspicion`) unless
the suspect refutes it with a higher incarnation. Claims spread piggybacked on every packet and
through gossip rounds (at most one per ``gossip_interval``, and none while nothing is pending);
push-pull with a random member repairs what gossip missed, and a reconnect round pings one dead
member now and then so that a healed partition merges again.

Timers are internal (a heap with lazy cancellation); :meth:`Membership.next_deadline` skips the
ones whose reason went away, so an idle member wakes its shell about once per probe.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

from corral.core.clock import Grid
from corral.core.membership.broadcast import BroadcastQueue
from corral.core.membership.claims import Claims
from corral.core.membership.config import MembershipConfig
from corral.core.membership.effects import Effect, LeaveDone, MemberChanged, Send
from corral.core.membership.lifeguard import Awareness, Suspicion
from corral.core.membership.members import Member, is_live
from corral.core.membership.messages import (
    NO_META,
    Ack,
    Alive,
    Claim,
    Dead,
    MemberState,
    Message,
    Nack,
    NodeMeta,
    Packet,
    Ping,
    PingReq,
    PushPull,
    Suspect,
    estimated_size,
    packet_overhead,
)
from corral.core.membership.stats import Stats
from corral.core.membership.table import MemberTable
from corral.core.membership.timers import Timer, TimerHeap


class _Probe:
    """The probe of the current protocol period."""

    __slots__ = ("acked", "end_at", "helpers", "indirect", "nacks", "seq", "target", "timeout_at")

    def __init__(self, seq: int, target: Member, timeout_at: float, end_at: float) -> None:
        self.seq = seq
        self.target = target
        self.timeout_at = timeout_at
        self.end_at = end_at
        self.acked = False
        self.indirect = False
        self.helpers = 0
        self.nacks = 0


class Membership(Claims):
    """One member's view of the cluster. Not thread-safe; one caller drives it."""

    def __init__(
        self,
        name: str,
        addr: str,
        config: MembershipConfig,
        rng: random.Random,
        now: float,
        meta: NodeMeta = NO_META,
        incarnation: int = 0,
        phase: float | None = None,
    ) -> None:
        """``phase``: protocol periods end on the instants ``phase + k x probe_interval`` (see
        :meth:`_period_end`); ``None`` (the simulator): each period runs from the end of the
        previous one, at a random phase."""
        self.name = name
        self.addr = addr
        self.meta = meta
        self.config = config
        self.incarnation = incarnation
        self.stats = Stats()
        self._rng = rng
        self._table = MemberTable(rng)
        self._queue = BroadcastQueue()
        self._timers = TimerHeap()
        self._suspicions: dict[str, Suspicion] = {}
        self._relays: dict[int, tuple[str, int, bool]] = {}
        self._reconnects: dict[int, str] = {}
        self._hinted: dict[str, float] = {}
        self._last_seen: dict[str, float] = {}
        self._awareness = Awareness(config.awareness_max, config.lifeguard)
        self._probe: _Probe | None = None
        self._seq = 0
        self._since = now
        self._seeds: tuple[str, ...] = ()
        self._now = now
        self._last_push_pull = now
        self._gossip_at = float("inf")
        self._last_gossip = -float("inf")
        self.joined = True
        self.leaving = False
        self.left = False
        self._grid = None if phase is None else Grid(config.probe_interval, phase)
        self._overhead = packet_overhead(name)
        self._out: list[Effect] = []
        self._dispatch = {
            Ping: self._on_ping,
            PingReq: self._on_ping_req,
            Ack: self._on_ack,
            Nack: self._on_nack,
            Alive: self._on_alive,
            Suspect: self._on_suspect,
            Dead: self._on_dead,
            PushPull: self._on_push_pull,
        }
        self._first_timers(now)

    def _first_timers(self, now: float) -> None:
        """Random phases, so that members started together do not probe in lockstep."""
        t, config, rng = self._timers, self.config, self._rng
        first = now + rng.uniform(0, config.probe_interval)
        t.at(first if self._grid is None else self._grid.at_or_after(first), Timer.PROBE)
        t.at(now + config.push_pull_period(1) * (0.5 + rng.random()), Timer.PUSH_PULL)
        t.at(now + config.dead_reap / 2, Timer.REAP)
        t.at(self._on_grid(now + config.reconnect_interval * (0.5 + rng.random())), Timer.RECONNECT)

    # ------------------------------------------------------------------ queries

    @property
    def health_score(self) -> int:
        """Lifeguard's local health score (0 = healthy); timeouts scale by ``score + 1``."""
        return self._awareness.score

    def live_count(self) -> int:
        """``N``: alive and suspect members, this node included unless it is leaving."""
        return self._table.live + (0 if self.leaving else 1)

    def self_record(self) -> Member:
        state = MemberState.LEFT if self.leaving else MemberState.ALIVE
        return Member(self.name, self.addr, self.meta, self.incarnation, state, self._since)

    def member(self, name: str) -> Member | None:
        """This node's record of ``name`` (itself included), or ``None`` if unknown."""
        return self.self_record() if name == self.name else self._table.get(name)

    def members(self) -> list[Member]:
        """Every member this node knows, itself first, then by name."""
        rest = sorted(self._table.records(), key=lambda r: r.name)
        return [self.self_record(), *rest]

    def last_seen(self, name: str) -> float | None:
        """When a packet from ``name`` last arrived (``now`` of that :meth:`handle` call)."""
        return self._last_seen.get(name)

    def suspicion(self, name: str) -> Suspicion | None:
        return self._suspicions.get(name)

    def next_deadline(self) -> float:
        """The earliest time at which :meth:`tick` has work to do (``inf`` once left)."""
        if self.left:
            return float("inf")
        timers = self._timers
        while True:
            top = timers.peek()
            if top is None:
                return float("inf")
            if self._timer_live(*top):
                return top[0]
            timers.pop()  # a timer whose reason went away: do not wake the shell for it

    def _timer_live(self, deadline: float, kind: Timer, key: object) -> bool:
        probe = self._probe
        if kind is Timer.PROBE_TIMEOUT:
            return probe is not None and probe.seq == key and not probe.acked
        if kind is Timer.PROBE_END:
            return probe is not None and probe.seq == key
        if kind is Timer.RELAY:
            return key in self._relays
        if kind is Timer.SUSPICION:
            susp = self._suspicions.get(key)  # type: ignore[call-overload]
            return susp is not None and susp.deadline() <= deadline + 1e-9
        return True

    # ------------------------------------------------------------------ commands

    def preload(self, records: dict[str, Member]) -> None:
        """Start from a converged table (simulator bootstraps, snapshots); no effects."""
        records = {n: r for n, r in records.items() if n != self.name}
        self._table.preload(records)

    def join(self, seeds: Iterable[str], now: float) -> list[Effect]:
        """Announce ourselves and exchange state with every seed address (push-pull).

        Seeds are retried every ``join_retry`` until one answers; :attr:`joined` turns true on
        the first push-pull answer. An empty seed list starts a new cluster.
        """
        self._now = now
        self._seeds = tuple(s for s in seeds if s != self.addr)
        self._broadcast(Alive(self.name, self.incarnation, self.addr, self.meta))
        self.joined = not self._seeds
        if self._seeds:
            self._send_join()
            self._timers.at(now + self.config.join_retry, Timer.JOIN)
        return self._flush()

    def leave(self, now: float) -> list[Effect]:
        """Leave gracefully: gossip our departure, stop probing, then :class:`LeaveDone`."""
        if self.leaving:
            return []
        self._now = now
        self.leaving = True
        self._probe = None
        self._broadcast(Dead(self.name, self.incarnation, self.name))
        self._gossip_round(now)
        grace = self.config.gossip_interval * (self.config.retransmit_limit(self._table.live) + 2)
        self._timers.at(now + grace, Timer.LEAVE)
        self._check_leave_done(now, force=False)
        return self._flush()

    def update_meta(self, meta: NodeMeta, now: float) -> list[Effect]:
        """Publish new metadata under a new incarnation."""
        self._now = now
        if not self.leaving:
            self.meta = meta
            self.incarnation += 1
            self._broadcast(Alive(self.name, self.incarnation, self.addr, meta))
        return self._flush()

    # ------------------------------------------------------------------ inputs

    def handle(self, packet: Packet, src: str, now: float) -> list[Effect]:
        """Process a packet that arrived from address ``src``. Never raises on content: unknown
        members, stale claims and foreign names are ignored (and counted)."""
        if self.left:
            return []
        self.stats.packets_in += 1
        self._now = now
        sender = packet.sender
        record = self._table.get(sender)
        if record is not None:
            self._last_seen[sender] = now
            if record.state is MemberState.DEAD:
                self._hint_dead(record, now)
        dispatch = self._dispatch
        for msg in packet.messages:
            dispatch[type(msg)](msg, sender, src, now)  # type: ignore[operator]
        return self._flush()

    def tick(self, now: float) -> list[Effect]:
        """Fire every timer due at ``now``."""
        self._now = now
        timers = self._timers
        while not self.left:
            top = timers.peek()
            if top is None or top[0] > now:
                break
            _, kind, key = timers.pop()
            self._fire(kind, key, now)
        return self._flush()

    # ------------------------------------------------------------------ timers

    def _fire(self, kind: Timer, key: object, now: float) -> None:
        _ON_TIMER[kind](self, key, now)

    def _gossip_due(self, now: float) -> None:
        self._gossip_at = float("inf")
        self._gossip_round(now)
        if self._queue:
            self._gossip_at = now + self.config.gossip_interval
            self._timers.at(self._gossip_at, Timer.GOSSIP)

    def _join_due(self, now: float) -> None:
        if not self.joined and not self.leaving:
            self._send_join()
            self._timers.at(now + self.config.join_retry, Timer.JOIN)

    def _start_probe(self, now: float) -> None:
        if self.leaving:
            return
        cfg = self.config
        period = self._awareness.scale(cfg.probe_interval)
        target = self._table.next_probe()
        if target is None:
            self._timers.at(self._period_end(now, period), Timer.PROBE)
            return
        self._seq += 1
        timeout_at = now + self._awareness.scale(cfg.probe_timeout)
        probe = _Probe(self._seq, target, timeout_at, now)
        probe.end_at = self._period_end(now, period)
        self._probe = probe
        self.stats.probes += 1
        msgs: tuple[Message, ...] = (Ping(probe.seq, target.name),)
        if cfg.lifeguard and target.state is MemberState.SUSPECT:
            # Buddy system: the suspect hears of the suspicion from every prober at once.
            msgs += (Suspect(target.name, target.incarnation, self.name),)
        self._send(target.addr, msgs)
        self._timers.at(probe.timeout_at, Timer.PROBE_TIMEOUT, probe.seq)
        self._timers.at(probe.end_at, Timer.PROBE_END, probe.seq)

    def _period_end(self, now: float, period: float) -> float:
        """When a protocol period that starts at ``now`` ends. Without a grid: ``now +
        period``. On a grid: the first grid instant at or after ``now + period - slack``, with
        ``slack = min(probe_interval, probe_interval - probe_timeout) / 2``: a period that
        starts on the grid lasts ``period`` exactly, one that starts up to ``slack`` late
        keeps at least half of its indirect-probe window, and a late timer does not drift the
        schedule. Members on one grid (clocks that agree) probe in the same instant and find
        each other awake: the same probe rate for fewer wake-ups."""
        if self._grid is None:
            return now + period
        cfg = self.config
        slack = min(cfg.probe_interval / 2, (cfg.probe_interval - cfg.probe_timeout) / 2)
        return self._grid.at_or_after(now + period - slack)

    def _probe_timeout(self, seq: object, now: float) -> None:
        probe = self._probe
        if probe is None or probe.seq != seq or probe.acked:
            return
        probe.indirect = True
        target = probe.target
        helpers = self._table.pick(
            self.config.indirect_checks,
            lambda r: r.state is MemberState.ALIVE and r.name != target.name,
        )
        probe.helpers = len(helpers)
        req = PingReq(probe.seq, target.name, target.addr, self.config.lifeguard)
        for helper in helpers:
            self.stats.ping_reqs_sent += 1
            self._send(helper.addr, (req,))

    def _probe_end(self, seq: object, now: float) -> None:
        probe = self._probe
        if probe is None or probe.seq != seq:
            return
        self._probe = None
        if not probe.acked:
            self.stats.probe_failures += 1
            if probe.helpers:
                self._awareness.apply(probe.helpers - probe.nacks)
            else:
                self._awareness.apply(1)
            current = self._table.get(probe.target.name)
            if current is not None and is_live(current.state):
                claim = Suspect(current.name, current.incarnation, self.name)
                if self.config.lifeguard:
                    self._send(current.addr, (claim,))  # tell the suspect first
                self._on_suspect(claim, self.name, self.addr, now)
        self._start_probe(now)

    def _relay_timeout(self, seq: object) -> None:
        relay = self._relays.pop(seq, None)  # type: ignore[call-overload]
        if relay is not None and relay[2]:
            self._send(relay[0], (Nack(relay[1]),))

    def _suspicion_timeout(self, name: object, now: float) -> None:
        assert isinstance(name, str)
        susp = self._suspicions.get(name)
        if susp is None or susp.deadline() > now:
            return
        record = self._table.get(name)
        if record is None or record.state is not MemberState.SUSPECT:
            self._suspicions.pop(name, None)
            return
        self.stats.dead_declared += 1
        self._on_dead(Dead(name, record.incarnation, self.name), self.name, self.addr, now)

    def _gossip_round(self, now: float) -> None:
        if not len(self._queue):
            return
        self._last_gossip = now
        horizon = now - self.config.gossip_to_dead
        targets = self._table.pick(
            self.config.gossip_nodes, lambda r: is_live(r.state) or r.since > horizon
        )
        for target in targets:
            self._send(target.addr, ())

    def _push_pull_round(self, now: float) -> None:
        period = self.config.push_pull_period(self.live_count())
        if now - self._last_push_pull < 0.5 * period:
            # Scheduled when the table was smaller (at start, before the join or a preload):
            # re-spread over the period that fits the cluster we now know.
            later = self._last_push_pull + period * (0.5 + self._rng.random())
            self._timers.at(later, Timer.PUSH_PULL)
            return
        self._last_push_pull = now
        self._timers.at(now + period, Timer.PUSH_PULL)
        if self.leaving:
            return
        peers = self._table.pick(1, lambda r: r.state is MemberState.ALIVE)
        if peers:
            self.stats.push_pulls += 1
            self._send_reliable(peers[0].addr, PushPull(False, False, self._digests()))

    def _reap(self, now: float) -> None:
        self._timers.at(now + self.config.dead_reap / 2, Timer.REAP)
        horizon = now - self.config.dead_reap
        old = [n for n, since in self._table.dead_since.items() if since <= horizon]
        for name in old:
            self._table.remove(name)
            self._last_seen.pop(name, None)
            self._hinted.pop(name, None)

    def _on_grid(self, when: float) -> float:
        """``when``, moved to the next grid instant when periods are on a grid: a periodic
        timer there shares the wake-up of a probe instead of waking the node on its own."""
        return when if self._grid is None else self._grid.at_or_after(when)

    def _reconnect_round(self, now: float) -> None:
        self._timers.at(self._on_grid(now + self.config.reconnect_interval), Timer.RECONNECT)
        self._reconnects.clear()  # answers to older rounds are no longer awaited
        if self.leaving:
            return
        dead = [n for n in self._table.dead_since if self._table.state_of(n) is MemberState.DEAD]
        if not dead:
            return
        record = self._table.get(self._rng.choice(dead))
        assert record is not None
        self._seq += 1
        self._reconnects[self._seq] = record.name
        self._send(record.addr, (Ping(self._seq, record.name),))

    def _hint_dead(self, record: Member, now: float) -> None:
        """A member we hold dead is talking to us: tell it, so it refutes (at most once per
        reconnect interval per member)."""
        last = self._hinted.get(record.name)
        if last is not None and now - last < self.config.reconnect_interval:
            return
        self._hinted[record.name] = now
        self._send(record.addr, (Dead(record.name, record.incarnation, self.name),))

    def _check_leave_done(self, now: float, force: bool) -> None:
        if self.left or not self.leaving:
            return
        if force or self._queue.pending(self.name) is None or self._table.live == 0:
            self.left = True
            self._out.append(LeaveDone())

    def _send_join(self) -> None:
        self._last_push_pull = self._now
        digests = self._digests()
        for seed in self._seeds:
            self._send_reliable(seed, PushPull(True, False, digests))

    # ------------------------------------------------------------------ probe messages

    def _on_ping(self, msg: Ping, sender: str, src: str, now: float) -> None:
        if msg.target != self.name:
            self.stats.misdirected += 1  # the address now belongs to someone else
            return
        self._send(src, (Ack(msg.seq),))

    def _on_ping_req(self, msg: PingReq, sender: str, src: str, now: float) -> None:
        if msg.target == self.name or self.leaving:
            return
        self._seq += 1
        self._relays[self._seq] = (src, msg.seq, msg.nack)
        self.stats.relays += 1
        self._send(msg.target_addr, (Ping(self._seq, msg.target),))
        self._timers.at(now + self.config.relay_timeout(), Timer.RELAY, self._seq)

    def _on_ack(self, msg: Ack, sender: str, src: str, now: float) -> None:
        relay = self._relays.pop(msg.seq, None)
        if relay is not None:
            self._send(relay[0], (Ack(relay[1]),))
            return
        back = self._reconnects.pop(msg.seq, None)
        if back is not None:
            # A dead member answered: exchange state so both sides learn and refute.
            record = self._table.get(back)
            if record is not None and record.state is MemberState.DEAD:
                self._send_reliable(src, PushPull(False, False, self._digests()))
            return
        probe = self._probe
        if probe is None or probe.seq != msg.seq or probe.acked:
            return
        probe.acked = True
        if sender == probe.target.name and now <= probe.timeout_at:
            self._awareness.apply(-1)

    def _on_nack(self, msg: Nack, sender: str, src: str, now: float) -> None:
        probe = self._probe
        if probe is not None and probe.seq == msg.seq:
            probe.nacks += 1

    # ------------------------------------------------------------------ output

    def _change(self, record: Member, previous: MemberState | None, source: str) -> None:
        self._table.put(record)
        self._out.append(MemberChanged(record, previous, source))

    def _broadcast(self, claim: Claim) -> None:
        """Queue ``claim`` for piggybacking, and make sure a gossip round will carry it within
        ``gossip_interval`` (no timer runs while there is nothing to gossip)."""
        self._queue.push(claim)
        at = max(self._now, self._last_gossip + self.config.gossip_interval)
        if at < self._gossip_at:
            self._gossip_at = at
            self._timers.at(at, Timer.GOSSIP)

    def _send(self, addr: str, msgs: tuple[Message, ...]) -> None:
        """Send ``msgs`` to ``addr`` with as many pending claims piggybacked as fit."""
        budget = self.config.packet_budget - self._overhead
        for m in msgs:
            budget -= estimated_size(m)
        claims: list[Claim] = self._queue.take(budget, self._limit()) if self._queue else []
        if not msgs and not claims:
            return
        self.stats.packets_out += 1
        self._out.append(Send(addr, Packet(self.name, (*msgs, *claims))))
        if self.leaving:
            self._check_leave_done(0.0, force=False)

    def _send_reliable(self, addr: str, msg: PushPull) -> None:
        self.stats.packets_out += 1
        self._out.append(Send(addr, Packet(self.name, (msg,)), reliable=True))

    def _limit(self) -> int:
        return self.config.retransmit_limit(self.live_count())

    def _flush(self) -> list[Effect]:
        out, self._out = self._out, []
        return out


# What each timer does when it fires: ``handler(membership, key, now)``.
_ON_TIMER: dict[Timer, Callable[[Membership, Any, float], None]] = {
    Timer.PROBE: lambda m, key, now: m._start_probe(now),
    Timer.PROBE_TIMEOUT: lambda m, key, now: m._probe_timeout(key, now),
    Timer.PROBE_END: lambda m, key, now: m._probe_end(key, now),
    Timer.RELAY: lambda m, key, now: m._relay_timeout(key),
    Timer.SUSPICION: lambda m, key, now: m._suspicion_timeout(key, now),
    Timer.GOSSIP: lambda m, key, now: m._gossip_due(now),
    Timer.PUSH_PULL: lambda m, key, now: m._push_pull_round(now),
    Timer.REAP: lambda m, key, now: m._reap(now),
    Timer.JOIN: lambda m, key, now: m._join_due(now),
    Timer.LEAVE: lambda m, key, now: m._check_leave_done(now, force=True),
    Timer.RECONNECT: lambda m, key, now: m._reconnect_round(now),
}
