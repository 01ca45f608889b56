"""Membership configuration and the ``lan`` / ``wan`` / ``local`` profiles.

Every figure the protocol derives from the configuration is a method here, so the formula lives
in one place and is documented once. ``N`` below is the number of members this node believes are
not dead (alive or suspect), itself included.

Derived figures:

- probe period ``= probe_interval x (score + 1)`` and probe timeout
  ``= probe_timeout x (score + 1)``, where ``score`` is the local health awareness score in
  ``[0, awareness_max - 1]`` (Lifeguard LHA; always 0 with ``lifeguard=False``).
- suspicion timeout. Let ``T = suspicion_mult x max(1, log10(N)) x probe_interval``: SWIM's
  ``O(log N)`` allowance for a suspicion to reach the suspect and its refutation to come back.
  Without Lifeguard the timeout is ``T``, fixed. With Lifeguard a suspicion starts at
  ``max = suspicion_max_mult x T`` and shrinks as ``c`` independent confirmations arrive,
  ``max(min, max - (max - min) x log(c + 1) / log(k + 1))`` with
  ``k = min(suspicion_confirmations, N - 2)``, down to ``min = suspicion_mult x probe_interval``.
  The minimum does not grow with ``N``: it applies only once ``k`` members have each seen the
  member fail a full probe round themselves, which is evidence no dissemination delay can
  produce; an unconfirmed suspicion still waits the full, ``log N``-scaled maximum. This keeps
  the death verdict on a crashed member flat in ``N`` (simulated: N=1,000 within 1.15x of N=10)
  with no false positive at 10% loss.
- retransmit limit of a broadcast ``= retransmit_mult x ceil(log10(N + 1))``: the SWIM bound that
  makes an infection-style broadcast reach every member with high probability.
- push-pull period ``= push_pull_interval x max(1, N / push_pull_scale)``: a push-pull carries
  the whole table (``O(N)`` bytes), so stretching its period with ``N`` keeps its bytes per node per
  second constant.
- relay timeout (how long a ping-req helper waits before it sends a nack)
  ``= 0.8 x probe_timeout``, so the nack reaches the requester before its indirect window closes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

ProfileName = Literal["lan", "wan", "local"]


@dataclass(frozen=True, slots=True)
class MembershipConfig:
    """Tuning of one member. All durations are seconds; see the module docstring for formulas."""

    probe_interval: float = 0.1
    """Time between two probes of this node (one protocol period), before awareness scaling."""
    probe_timeout: float = 0.04
    """Wait for a direct ack before asking ``indirect_checks`` helpers; a few LAN round trips."""
    indirect_checks: int = 4
    """``k`` of SWIM's ping-req: how many members probe a silent target on our behalf. With
    independent loss ``p`` per hop a probe fails with about ``(1-(1-p)^2) x (1-(1-p)^4)^k``:
    at ``p = 10%`` going from 3 to 4 helpers cuts false suspicions by 2.7x (simulated)."""
    suspicion_mult: float = 2.0
    """Suspicion timeout in probe intervals, per decade of cluster size (see ``T`` above)."""
    suspicion_max_mult: float = 4.0
    """Lifeguard: an unconfirmed suspicion waits this multiple of ``T``."""
    suspicion_confirmations: int = 3
    """Lifeguard: independent confirmations that bring a suspicion down to the minimum."""
    retransmit_mult: int = 6
    """Each broadcast rides on ``retransmit_mult x ceil(log10(N + 1))`` packets. A member misses
    a broadcast with probability about ``exp(-retransmit_limit x (1 - loss))``; 6 rather than
    memberlist's 4 is what took false positives at 10% loss to zero in the simulator."""
    gossip_interval: float = 0.05
    """Period of the gossip round that pushes pending broadcasts to ``gossip_nodes`` members."""
    gossip_nodes: int = 3
    """Fan-out of a gossip round."""
    gossip_to_dead: float = 10.0
    """Keep gossiping to a member this long after it died, so a wrongly declared node refutes."""
    dead_reap: float = 300.0
    """Forget a dead or departed member this long after its death (``>= gossip_to_dead``). A
    partition that lasts longer heals only through a new join."""
    reconnect_interval: float = 1.0
    """Ping one random dead member this often; if it answers, exchange state with it. This is
    what heals a partition once gossip to the dead has stopped."""
    push_pull_interval: float = 15.0
    """Anti-entropy: full state exchange with one random member, before scaling with ``N``."""
    push_pull_scale: int = 32
    """Cluster size above which the push-pull period grows linearly with ``N``."""
    join_retry: float = 1.0
    """Retry the seeds this often until a push-pull answer arrives."""
    awareness_max: int = 8
    """Lifeguard LHA: probe period and timeout grow up to this factor while we miss acks."""
    packet_budget: int = 1200
    """Bytes of messages (estimated, see ``messages.estimated_size``) per unreliable packet; the
    codec adds a fixed header and the AEAD overhead and must stay under the UDP payload limit."""
    lifeguard: bool = True
    """Switch Lifeguard (awareness, confirmations, nacks, buddy system) off for plain SWIM."""

    def __post_init__(self) -> None:
        if self.probe_timeout <= 0 or self.probe_interval <= self.probe_timeout:
            raise ValueError("need 0 < probe_timeout < probe_interval")
        if self.indirect_checks < 0 or self.gossip_nodes < 1 or self.retransmit_mult < 1:
            raise ValueError("indirect_checks >= 0, gossip_nodes >= 1, retransmit_mult >= 1")
        if self.suspicion_mult <= 0 or self.suspicion_max_mult < 1:
            raise ValueError("suspicion_mult > 0 and suspicion_max_mult >= 1")
        if self.awareness_max < 1 or self.dead_reap < self.gossip_to_dead:
            raise ValueError("awareness_max >= 1 and dead_reap >= gossip_to_dead")
        if self.packet_budget < 256:
            raise ValueError("packet_budget must leave room for a message (>= 256 bytes)")

    def with_(self, **changes: object) -> MembershipConfig:
        """A copy with ``changes`` applied (validated again)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def suspicion_bounds(self, n: int) -> tuple[float, float]:
        """``(minimum, maximum)`` suspicion timeout for a cluster of ``n`` live members."""
        scaled = self.suspicion_mult * max(1.0, math.log10(max(n, 1))) * self.probe_interval
        if not self.lifeguard:
            return scaled, scaled
        return self.suspicion_mult * self.probe_interval, scaled * self.suspicion_max_mult

    def confirmations_wanted(self, n: int) -> int:
        """``k``: confirmations that bring a suspicion to its minimum (the accused and we cannot
        confirm, hence ``n - 2``); 0 without Lifeguard."""
        if not self.lifeguard:
            return 0
        return max(0, min(self.suspicion_confirmations, n - 2))

    def retransmit_limit(self, n: int) -> int:
        """How many packets carry one broadcast before it is dropped from the queue."""
        return self.retransmit_mult * max(1, math.ceil(math.log10(n + 1)))

    def push_pull_period(self, n: int) -> float:
        """Period of anti-entropy for a cluster of ``n`` live members."""
        return self.push_pull_interval * max(1.0, n / self.push_pull_scale)

    def relay_timeout(self) -> float:
        """How long a ping-req helper waits for the target before it answers with a nack."""
        return 0.8 * self.probe_timeout


def suspicion_timeout(low: float, high: float, k: int, confirmations: int) -> float:
    """Lifeguard's shrinking timeout: ``high`` with no confirmation, ``low`` with ``k`` or more,
    logarithmic in between (each new confirmation matters less than the previous one)."""
    if k <= 0 or confirmations >= k:
        return low
    frac = math.log(confirmations + 1) / math.log(k + 1)
    return max(low, high - (high - low) * frac)


_PROFILES: dict[str, MembershipConfig] = {
    # Loopback or one rack: sub-millisecond RTT, so a 20 ms probe timeout is generous.
    "local": MembershipConfig(
        probe_interval=0.05,
        probe_timeout=0.02,
        gossip_interval=0.025,
        push_pull_interval=10.0,
        gossip_to_dead=5.0,
        dead_reap=120.0,
        reconnect_interval=0.5,
        join_retry=0.5,
    ),
    # A data-centre LAN, RTT ~1 ms: a crash detected well under a second (DESIGN.md; simulated,
    # 3 members: 0.60 s median, 0.9 s worst) at 5 probes a second. 0.1 s probes detect in 0.35 s
    # but cost an idle agent ~0.3 % of a core more (bench/agent_idle.py, probe-* patches): on a
    # VM every probe period is a separate wake-up with cold caches. Suspicion timeouts keep the
    # length in seconds they had at 0.1 s (suspicion_mult 2 x 0.1 = 1 x 0.2).
    "lan": MembershipConfig(probe_interval=0.2, suspicion_mult=1.0),
    # Sites over a WAN: RTT up to ~100 ms with jitter; slower, more patient, wider fan-out.
    "wan": MembershipConfig(
        probe_interval=1.0,
        probe_timeout=0.5,
        suspicion_mult=3.0,
        suspicion_max_mult=6.0,
        gossip_interval=0.2,
        gossip_nodes=4,
        gossip_to_dead=30.0,
        dead_reap=900.0,
        reconnect_interval=5.0,
        push_pull_interval=60.0,
        join_retry=3.0,
    ),
}


def with_probe_interval(config: MembershipConfig, interval: float | None) -> MembershipConfig:
    """``config`` probing every ``interval`` seconds (``None``: unchanged). The suspicion
    multiplier is scaled so that suspicion timeouts keep their length in seconds: a shorter
    interval finds a crash sooner, it does not make a suspicion shorter. Raises ``ValueError``
    when ``interval`` is not longer than the probe timeout."""
    if interval is None or interval == config.probe_interval:
        return config
    if interval <= config.probe_timeout:
        raise ValueError(
            f"a probe interval of {interval:g}s must be longer than the probe timeout "
            f"({config.probe_timeout:g}s)"
        )
    mult = config.suspicion_mult * config.probe_interval / interval
    return config.with_(probe_interval=interval, suspicion_mult=mult)


def profile(name: str, **overrides: object) -> MembershipConfig:
    """The configuration of profile ``name`` (``lan``, ``wan`` or ``local``) with ``overrides``.

    Raises ``ValueError`` for an unknown profile or an inconsistent override.
    """
    try:
        base = _PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown membership profile {name!r} (lan, wan, local)") from None
    return base.with_(**overrides) if overrides else base
