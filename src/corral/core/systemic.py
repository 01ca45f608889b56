"""Systemic failures (pure): failures of one resource on most of its nodes at once.

When a machine is overloaded, or a dependency every instance needs is down, a resource fails
on most of its nodes within seconds. Counting those failures per node bans the resource from
every node in turn: an outage made by the failure policy. Such failures are one *systemic*
event instead: said once, not counted per node, and no ban follows; restarts in place go on
with the agent's backoff. ``docs/safety-rules.md`` ("Systemic failures") states the rule.

Contract (every time is wall-clock seconds: the agents stamp failures with their wall clock,
so nodes' clocks are assumed to agree to well within a window, as NTP keeps them):

- :func:`needed`: the fewest distinct failing nodes that are "more than ``share`` of ``size``
  nodes": ``floor(share * size) + 1``, and never fewer than two (one node failing alone is
  that node's failure, whatever the size). None when it cannot happen (fewer than two nodes).
- :func:`judge`, for a resource that runs on several nodes at once (active-active,
  promotable, a vip-set): a failure is systemic when it lies in a window of ``window``
  seconds (both ends included) in which the resource failed on :func:`needed` distinct nodes.
  Later failures can make an earlier one systemic (the first node to fail is no more to blame
  than the others): a failure is judged again on every step while it is listed.
- For a resource that runs on one node at a time (active-passive, a VIP: ``Policy.single``),
  only the window *ending* at a failure counts, against its eligible nodes, plus a chain: a
  failure within ``window`` of a systemic one is systemic too. So failing on its first node
  is an ordinary failure (it is counted and moves the resource as the policy says); failing
  on the node it moved to within the window (most nodes tried) is systemic, and from then on
  it stays where it runs, restarted in place, until a whole window passes without a failure.
  Its earlier failures stay counted: the ban that moved it holds, so it does not move back.
- A failure judged systemic stays systemic (``Failure.systemic``, kept in the failure
  record): the judgement only ever adds.
- :class:`Episode`: the chain of systemic failures, each within ``window`` of the previous
  one, that ends with the newest; open at ``now`` until ``window`` has passed since its last
  failure. :func:`transitions` compares the episodes open now with those already announced:
  one ``systemic`` event when an episode starts, one when it ends.
- ``window == 0`` turns the rule off: nothing new is judged systemic.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from datetime import UTC, datetime

from corral.spec import Resource, Spec
from corral.spec.durations import format_duration


@dataclass(frozen=True, order=True)
class Failure:
    """One failure of a resource: on ``node`` at ``at`` (wall seconds); ``systemic``: judged
    so already (it stays so)."""

    at: float
    node: str
    systemic: bool = False

    @property
    def key(self) -> tuple[str, float]:
        """What tells one failure from another (the flag aside)."""
        return (self.node, self.at)


@dataclass(frozen=True)
class Policy:
    """A resource's systemic rule: ``share`` and ``window`` from its failure policy;
    ``single``: it runs on one node at a time."""

    share: float = 0.5
    window: float = 60.0
    single: bool = False


@dataclass(frozen=True)
class Episode:
    """A systemic episode: ``since`` its first failure (wall seconds), on ``nodes`` (sorted),
    of the resource's ``size`` nodes."""

    since: float
    nodes: tuple[str, ...]
    size: int


@dataclass(frozen=True)
class Verdict:
    """What :func:`judge` found: ``new``, the failures judged systemic now that were not
    before (to be marked in their records); ``episode``, the episode open at ``now``."""

    new: frozenset[tuple[str, float]]
    episode: Episode | None


def policy_of(res: Resource) -> Policy:
    """The systemic rule of ``res`` (its effective failure policy; mode resolved)."""
    return Policy(
        res.failure.systemic_share, res.failure.systemic_window, res.mode == "active-passive"
    )


def scope(spec: Spec, name: str, online: Collection[str]) -> tuple[frozenset[str], int]:
    """The nodes whose failures of resource ``name`` are judged (the spec allows it there),
    and the resource's size: how many nodes it runs on or may be tried on. A resource on one
    node at a time may be tried on every allowed online node; one on several nodes runs on at
    most ``instances`` of them (a vip-set: one per VIP)."""
    res = spec.resources[name]
    allowed = frozenset(n for n, node in spec.nodes.items() if res.on.allows(n, node))
    size = len(allowed & set(online))
    if res.mode != "active-passive":
        cap = res.instances or (len(res.vip_set.addresses) if res.vip_set else None)
        size = min(size, cap) if cap else size
    return allowed, size


def needed(size: int, share: float) -> int | None:
    """The fewest distinct failing nodes that are more than ``share`` of ``size`` nodes, at
    least two; None when no number of them is (fewer than two nodes)."""
    # the epsilon: 0.29 * 100 is 28.999999999999996 in floating point, and 29 of 100 nodes
    # are not more than 29 % of them
    count = max(2, math.floor(share * size + 1e-9) + 1)
    return count if count <= size else None


def judge(failures: Iterable[Failure], size: int, policy: Policy, now: float) -> Verdict:
    """Judge a resource's listed failures (every node's, any order) against its ``size``
    (:func:`scope`) under ``policy`` at ``now`` (see the module contract)."""
    listed = sorted(failures)
    found = {f.key for f in listed if f.systemic}
    count = needed(size, policy.share)
    if count is not None and policy.window > 0:
        pick = _chained if policy.single else _windows
        found |= pick(listed, count, policy.window)
    unmarked = {f.key for f in listed if not f.systemic}  # two failures may share a time
    # a resource on one node at a time names the nodes it was tried on before, too
    reach = policy.window if policy.single else 0.0
    episode = _episode(listed, found, policy.window, reach, now, size)
    return Verdict(frozenset(found & unmarked), episode)


def _windows(listed: Sequence[Failure], count: int, window: float) -> set[tuple[str, float]]:
    """Failures that lie in a window of ``window`` seconds with failures on ``count`` distinct
    nodes (``listed`` sorted by time). A window holding a set of failures can start at the
    earliest of them, so only windows starting at a failure are tried: one pass, two
    pointers."""
    out: set[tuple[str, float]] = set()
    nodes: Counter[str] = Counter()
    end = 0  # listed[i:end] is the window starting at listed[i]
    covered = -1  # the last index inside some window that qualified so far
    for i, first in enumerate(listed):
        while end < len(listed) and listed[end].at - first.at <= window:
            nodes[listed[end].node] += 1
            end += 1
        if len(nodes) >= count:
            covered = end - 1
        if i <= covered:
            out.add(first.key)
        nodes[first.node] -= 1
        if not nodes[first.node]:
            del nodes[first.node]
    return out


def _chained(listed: Sequence[Failure], count: int, window: float) -> set[tuple[str, float]]:
    """One node at a time: a failure is systemic when the window ending at it holds failures
    on ``count`` distinct nodes, or when the failure before it was systemic and is within
    ``window`` of it (it stays where it runs). Earlier failures are not judged again: they
    moved the resource, as the policy says."""
    out: set[tuple[str, float]] = set()
    nodes: Counter[str] = Counter()
    start = 0  # listed[start:i + 1] is the window ending at listed[i]
    previous: Failure | None = None
    chained = False
    for failure in listed:
        nodes[failure.node] += 1
        while listed[start].at < failure.at - window:
            nodes[listed[start].node] -= 1
            if not nodes[listed[start].node]:
                del nodes[listed[start].node]
            start += 1
        near = previous is not None and failure.at - previous.at <= window
        chained = failure.systemic or len(nodes) >= count or (chained and near)
        if chained:
            out.add(failure.key)
        previous = failure
    return out


def _episode(
    listed: Sequence[Failure],
    found: Set[tuple[str, float]],
    window: float,
    reach: float,
    now: float,
    size: int,
) -> Episode | None:
    """The episode open at ``now``: the chain of systemic failures (``found`` among
    ``listed``, sorted), each within ``window`` of the one before, that ends with the newest;
    None once ``window`` has passed since the newest (or when there is none). Its nodes are
    those of every failure from ``reach`` before its first one on."""
    systemic = [f for f in listed if f.key in found]
    if not systemic or now - systemic[-1].at > window:
        return None
    first = len(systemic) - 1
    while first > 0 and systemic[first].at - systemic[first - 1].at <= window:
        first -= 1
    since = systemic[first].at
    nodes = {f.node for f in listed if f.at >= since - reach}
    return Episode(since, tuple(sorted(nodes)), size)


def judge_all(
    spec: Spec, failures: Mapping[str, Sequence[Failure]], online: Collection[str], now: float
) -> dict[str, Verdict]:
    """:func:`judge` for every resource of the spec with listed ``failures`` (resource ->
    every node's), each within its :func:`scope`; failures on nodes the spec does not allow
    it on any more are left out."""
    out = {}
    for name, listed in failures.items():
        if name not in spec.resources:
            continue
        allowed, size = scope(spec, name, online)
        mine = [f for f in listed if f.node in allowed]
        out[name] = judge(mine, size, policy_of(spec.resources[name]), now)
    return out


def transitions(
    open_now: Mapping[str, Episode], announced: Mapping[str, Episode]
) -> tuple[dict[str, Episode], list[str]]:
    """The episodes that start (open now, not announced yet) and the resources whose
    announced episode ended (not open any more, or the resource is gone), each in name
    order."""
    starts = {name: open_now[name] for name in sorted(open_now) if name not in announced}
    ends = sorted(name for name in announced if name not in open_now)
    return starts, ends


def start_text(name: str, episode: Episode, policy: Policy) -> str:
    """The one event that says an episode began."""
    within = format_duration(policy.window)
    where = ", ".join(episode.nodes)
    stays = "; it stays where it runs, restarted in place" if policy.single else ""
    return (
        f"resource {name} failed on {len(episode.nodes)} of {episode.size} nodes ({where}) "
        f"within {within}: a systemic failure (overload or a dependency down); not counted "
        f"per node, no ban{stays}"
    )


def end_text(name: str, episode: Episode, policy: Policy | None) -> str:
    """The one event that says an episode ended (``policy``: None when the resource left
    the spec)."""
    began = datetime.fromtimestamp(episode.since, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if policy is None:
        return f"resource {name}: the systemic failure since {began} ends (not in the spec)"
    return (
        f"resource {name}: the systemic failure since {began} is over (not failing on most "
        f"of its nodes for {format_duration(policy.window)}); failures count per node again"
    )
