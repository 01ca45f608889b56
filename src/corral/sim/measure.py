"""Experiments on the simulator: crash detection, load, false positives. Used by the benchmark.

Definitions (the benchmark's tables use these words exactly):

- **first detection**: time from a crash to the first failed probe of the crashed member by
  anyone (its first suspicion): SWIM's "time to first detection".
- **first dead**: time to the first death verdict (a suspicion timer ran out somewhere).
- **all know**: time until every running member holds it dead.
- **dissemination**: ``all know - first dead``, in protocol periods (``probe_interval``).
- **false positive**: a first-hand death verdict (the declaring member's own suspicion timer
  ran out) about a member that is running. Hearsay copies of that verdict are not counted again.
- **load**: datagrams and bytes sent per member per second; bytes are exact wire sizes (msgpack
  body + envelope with AES-GCM tag), stream frames (push-pull) included.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from corral.core.membership import MemberChanged, MembershipConfig, MemberState, Send
from corral.net.codec import encode_messages
from corral.net.wire import TAG
from corral.sim.network import Latency
from corral.sim.simulator import Simulator

# Envelope bytes besides the sender name: version, name length, boot, seq, timestamp, GCM tag.
_ENVELOPE = 2 + 24 + TAG


def wire_size(sender: str, send: Send) -> int:
    """Exact size of ``send`` on the wire (datagram, or stream frame with its length prefix)."""
    size = len(encode_messages(send.packet.messages)) + _ENVELOPE + len(sender.encode())
    return size + 4 if send.reliable else size


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100); ``nan`` for no values. With fewer than 100
    values the 99th percentile is the maximum."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Detection:
    """Crash-detection samples, in seconds (``inf`` when not reached in time)."""

    first_suspect: list[float] = field(default_factory=list)
    first_dead: list[float] = field(default_factory=list)
    all_dead: list[float] = field(default_factory=list)
    dissemination_periods: list[float] = field(default_factory=list)
    packets_per_node_s: float = 0.0
    bytes_per_node_s: float = 0.0
    sim_events: int = 0


@dataclass
class Load:
    packets_per_node_s: float
    bytes_per_node_s: float


class _Tracker:
    """Hooks that follow one victim at a time and count sends."""

    def __init__(self, sim: Simulator, measure_bytes: bool) -> None:
        self.sim = sim
        self.victim = ""
        self.suspect_at = math.inf
        self.dead_at = math.inf
        self.dead_seen: set[str] = set()
        self.packets = 0
        self.bytes = 0
        self.measure_bytes = measure_bytes
        sim.change_hooks.append(self.on_change)
        sim.send_hooks.append(self.on_send)

    def arm(self, victim: str) -> None:
        self.victim = victim
        self.suspect_at = self.dead_at = math.inf
        self.dead_seen = set()

    def on_change(self, now: float, observer: str, change: MemberChanged) -> None:
        m = change.member
        if m.name != self.victim:
            return
        if m.state is MemberState.SUSPECT and change.source == observer:
            self.suspect_at = min(self.suspect_at, now)
        elif m.state is MemberState.DEAD:
            if change.source == observer:
                self.dead_at = min(self.dead_at, now)
            self.dead_seen.add(observer)

    def on_send(self, now: float, sender: str, send: Send) -> None:
        self.packets += 1
        if self.measure_bytes:
            self.bytes += wire_size(sender, send)


def converged_cluster(n: int, config: MembershipConfig, seed: int, loss: float = 0.0) -> Simulator:
    """``n`` members that already know each other, on a LAN-like network."""
    sim = Simulator(seed, config, Latency(low=0.0002, mean=0.0005, cap=0.05), loss)
    sim.bootstrap([f"n{i}" for i in range(n)])
    return sim


def measure_load(sim: Simulator, seconds: float) -> Load:
    """Datagrams and bytes per running member per second over the next ``seconds``."""
    tracker = _Tracker(sim, measure_bytes=True)
    sim.run_for(seconds)
    members = len(sim.running())
    sim.change_hooks.remove(tracker.on_change)
    sim.send_hooks.remove(tracker.on_send)
    return Load(tracker.packets / members / seconds, tracker.bytes / members / seconds)


def measure_detection(
    make: Callable[[int], Simulator],
    runs: int,
    seed: int,
    timeout: float = 30.0,
    gap: float = 0.5,
    max_crashed: float = 0.2,
) -> Detection:
    """Crash ``runs`` members one after the other (each once every survivor knows, plus
    ``gap``) and time first detection, first dead and all know.

    ``make(i)`` builds the ``i``-th cluster (already warmed up); a new one is made whenever
    more than ``max_crashed`` of the current one has been crashed, so small clusters give as
    many samples as large ones without shrinking to nothing.
    """
    out = Detection()
    rng = random.Random(f"victims:{seed}")
    packets = node_seconds = 0.0
    done = 0
    for i in range(runs):
        sim = make(i)
        size = len(sim.running())
        tracker = _Tracker(sim, measure_bytes=True)
        start, start_events = sim.now, sim.events
        while done < runs and len(sim.running()) > size * (1 - max_crashed):
            _crash_one(sim, tracker, rng, timeout, out)
            sim.run_for(gap)
            done += 1
        packets += tracker.packets
        out.bytes_per_node_s += tracker.bytes
        node_seconds += len(sim.running()) * (sim.now - start)
        out.sim_events += sim.events - start_events
        if done >= runs:
            break
    out.packets_per_node_s = packets / node_seconds
    out.bytes_per_node_s /= node_seconds
    return out


def _crash_one(
    sim: Simulator, tracker: _Tracker, rng: random.Random, timeout: float, out: Detection
) -> None:
    victim = rng.choice([n.name for n in sim.running()])
    tracker.arm(victim)
    t0 = sim.now
    sim.crash(victim)
    observers = len(sim.running())
    sim.run_for(timeout, lambda: len(tracker.dead_seen) >= observers)
    everyone = len(tracker.dead_seen) >= observers
    out.first_suspect.append(tracker.suspect_at - t0)
    out.first_dead.append(tracker.dead_at - t0)
    out.all_dead.append(sim.now - t0 if everyone else math.inf)
    spread = (sim.now - tracker.dead_at) / sim.config.probe_interval if everyone else math.inf
    out.dissemination_periods.append(spread)


@dataclass
class FalsePositives:
    members: int
    seconds: float
    false_dead: int
    """First-hand death verdicts about running members (the slow member excluded)."""
    slow_declared_dead: int
    """First-hand death verdicts about the slow member (it is unresponsive: arguably right)."""
    suspicions: int

    @property
    def node_hours(self) -> float:
        return self.members * self.seconds / 3600

    @property
    def per_node_hour(self) -> float:
        return self.false_dead / self.node_hours


def measure_false_positives(
    n: int,
    config: MembershipConfig,
    seconds: float,
    seed: int,
    loss: float = 0.0,
    slow_delay: tuple[float, float] | None = None,
) -> FalsePositives:
    """Run ``n`` healthy members for ``seconds`` under ``loss`` (and, with ``slow_delay``, one
    member that handles packets that late) and count death verdicts about running members."""
    sim = converged_cluster(n, config, seed, loss)
    slow = "n0" if slow_delay is not None else ""
    if slow_delay is not None:
        sim.slow(slow, seconds, slow_delay)
    counts = {"false": 0, "slow": 0, "suspect": 0}

    def hook(now: float, observer: str, change: MemberChanged) -> None:
        if change.source != observer:
            return
        if change.member.state is MemberState.SUSPECT:
            counts["suspect"] += 1
        elif change.member.state is MemberState.DEAD:
            counts["slow" if change.member.name == slow else "false"] += 1

    sim.change_hooks.append(hook)
    sim.run_until(seconds)
    return FalsePositives(n, seconds, counts["false"], counts["slow"], counts["suspect"])
