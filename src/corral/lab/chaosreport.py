"""Figures of a chaos run, computed from what was recorded (pure: no I/O, no clock).

- :func:`outages`: per VIP, the intervals in which its requests failed: from the send time of
  the first failure after a success (or the start) to the send time of the next success (or
  the last request). A failure between two successes is an outage of that length (short ones
  are kept: the caller filters).
- :func:`all_down`: the intervals in which every VIP was in an outage at once.
- :func:`cause_of`: what an outage interval was made of: the client's own stall (it missed
  its ticks), only timeouts (slow answers), or refused/unreachable/error answers.
- :func:`failover_bounds`: the timing profile's failover bounds, from its formulas.
- :func:`log_excerpt`: agent log lines whose timestamp is within a window of a moment.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable, Sequence
from typing import Any

Interval = tuple[float, float]


def outages(samples: Iterable[tuple[float, bool]]) -> list[Interval]:
    """Outage intervals of one VIP from ``(send time, ok)`` samples (any order)."""
    out: list[Interval] = []
    start: float | None = None
    last = None
    for t, ok in sorted(samples):
        last = t
        if not ok and start is None:
            start = t
        elif ok and start is not None:
            out.append((start, t))
            start = None
    if start is not None and last is not None:
        out.append((start, last))
    return out


def intersect(a: Sequence[Interval], b: Sequence[Interval]) -> list[Interval]:
    """Intervals covered by both ``a`` and ``b`` (each sorted, non-overlapping)."""
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo < hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def send_gap(sends: Sequence[float], lo: float, hi: float) -> float:
    """The longest time between two consecutive sends (``sends`` sorted) within ``[lo, hi]``:
    how long the client itself stalled there (it sends every interval when it runs)."""
    inside = [t for t in sends if lo <= t <= hi]
    return max((b - a for a, b in itertools.pairwise(inside)), default=hi - lo)


def cause_of(errors: Iterable[str | None], gap: float, timeout: float, interval: float) -> str:
    """Why requests failed in one outage interval, from their error kinds and the client's
    longest send gap there (``interval`` apart when it runs): ``client stalled`` when the
    client did not run for a request's whole timeout (its own requests then time out, whatever
    the cluster does: a loaded machine, not an outage); else ``refused`` when any failure was
    refused, unreachable, reset or an error status (an address without a holder, or a
    service down or failing); else
    ``slow`` (timeouts only: no answer within the timeout, which a starved machine and a
    failover both give; the client's gap, printed beside it, tells them apart)."""
    kinds = {e for e in errors if e}
    if gap >= max(timeout, 2 * interval):
        return "client stalled"
    if kinds - {"connect_timeout", "read_timeout"}:
        return "refused"
    return "slow"


def all_down(per_vip: dict[str, list[Interval]]) -> list[Interval]:
    """Intervals in which every VIP of ``per_vip`` was out at once (none for no VIPs)."""
    lists = list(per_vip.values())
    if not lists:
        return []
    common = lists[0]
    for other in lists[1:]:
        common = intersect(common, other)
    return common


def availability(samples: Sequence[tuple[float, bool]]) -> float | None:
    """Share of successful requests (None without requests)."""
    return None if not samples else sum(1 for _, ok in samples if ok) / len(samples)


def during(t: float, timeline: Sequence[dict[str, Any]]) -> str:
    """The episode in progress at ``t`` (``episode N kind on nodes``); after an episode's
    end and before the next one's start, ``after episode N kind (converging)``."""
    last = None
    for ep in timeline:
        if ep["start"] <= t:
            last = ep
    if last is None:
        return "before the first episode"
    nodes = ",".join(last.get("nodes", ()))
    text = f"episode {last['index']} {last['kind']}" + (f" on {nodes}" if nodes else "")
    return text if t <= last.get("end", float("inf")) else f"after {text} (converging)"


def failover_bounds(timing: Any, gossip: Any, nodes: int, probe: float = 0.1) -> dict[str, str]:
    """The profile's failover bounds, each with its formula (``timing``: a resolved
    :class:`~corral.spec.profiles.Timing`; ``gossip``: a ``MembershipConfig``)."""
    low, high = gossip.suspicion_bounds(nodes)
    detect_lo = gossip.probe_interval + gossip.probe_timeout + low
    detect_hi = gossip.probe_interval + gossip.probe_timeout + high
    lease = timing.lease_ttl + 0.5 + probe
    return {
        "fence path": (
            f"detection (probe {gossip.probe_interval:g}s + timeout {gossip.probe_timeout:g}s "
            f"+ suspicion {low:g}..{high:g}s = {detect_lo:.2f}..{detect_hi:.2f}s) + fence "
            f"(the device's power-off) + ARP probe {probe:g}s"
        ),
        "lease path": (
            f"lease TTL {timing.lease_ttl:g}s + etcd expiry tick 0.5s + ARP probe {probe:g}s "
            f"= {lease:.2f}s after the holder's last keepalive"
        ),
        "frozen node, leases alone": (
            "a paused node keeps its VIPs in the kernel until it is thawed or fenced: without "
            "fencing the VIP is held twice from the lease path's takeover until the thaw "
            "(reported apart as frozen-unfenced)"
        ),
    }


def log_time(line: str) -> float | None:
    """The wall-clock time of a log line ``YYYY-MM-DD HH:MM:SS,mmm ...`` (local time)."""
    try:
        stamp = dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
    except ValueError:
        return None
    return stamp.timestamp()


def log_excerpt(
    lines: Sequence[str], wall: float, before: float = 2.0, after: float = 2.0, limit: int = 30
) -> list[str]:
    """The lines stamped within ``[wall - before, wall + after]`` (unstamped lines, such as a
    traceback's, go with the stamped line before them); at most ``limit`` lines."""
    out: list[str] = []
    keep = False
    for line in lines:
        t = log_time(line)
        if t is not None:
            keep = wall - before <= t <= wall + after
        if keep:
            out.append(line)
            if len(out) >= limit:
                break
    return out
