"""What each RabbitMQ node does next: form, rejoin, wait, forget, force-boot (pure).

:func:`decide` is a pure function of the nodes' reports, the run records, which nodes are gone,
the claim of this outage and ``now``. It returns a :class:`Plan`: one :class:`Decision` per
reporting node, each with a reason for people (DESIGN rule 5), and at most one
:class:`~corral.core.rabbit.state.ForceBootClaim` that the controller must write (one
transaction, comparing the claim's absence and the controller key: DESIGN rule 6) *before* the
node acts on it. The same inputs give the same plan.

Actions (:data:`Action`):

- ``run``: the broker serves; nothing to do.
- ``start_first``: start from its own data without a running peer. Given to every node of the
  last-running set that reported, together: RabbitMQ (mnesia) makes a node that was not the
  last to stop wait for the peers that stopped after it, so the last-running nodes must come up
  together; any other node would wait 10 x 30 s and exit with BOOT FAILED.
- ``start``: start from its own data and rejoin the running cluster (``peer`` runs).
- ``join``: ``join_cluster peer`` (a node without data; ``reset``: its data is of a cluster
  that forgot it, and is dropped, saying so; ``regrow``: it replaces a member, so it is added
  back to every quorum queue afterwards, ``rabbitmq-queues grow``).
- ``wait``: nothing now; ``waiting_for`` names whom, ``until`` when the plan changes by itself
  (None: not by time).
- ``forget``: a running member runs ``forget_cluster_node peer`` (a replaced node, a node
  removed from the spec, or one fenced ``forget_fenced_after`` ago); this also drops it from
  every quorum queue.
- ``force_boot``: ``rabbitmqctl force_boot`` then start: boot without waiting for the peers.

The rules, in order:

1. **A node runs** (state ``running``): the cluster is up. Stopped members rejoin with their
   data (``start``); nodes without data ``join`` the first running member (spec order); a node
   whose data belongs to a cluster that forgot it is reset and joins (its data is of no
   cluster any more: RabbitMQ would refuse to boot it); a node that replaces a member (no
   data, or another identity, under a member's name) waits until a running member forgets the
   old one, then joins and regrows. ``paused`` nodes wait: ``pause_minority`` resumes them
   when they see a majority again (restarting one would not help and may lose its place).
2. **Nothing runs and no node ever formed** (no data, no run record): formation. The first
   reporting node in spec order ``start_first``; the others wait for it, then join.
3. **Nothing runs, the cluster had data** (an outage): the last-running set ``L`` is the
   ``running`` of the run record with the highest ``seq``. Its reporting members
   ``start_first`` together; every other node waits until one of ``L`` runs (its data is
   older: starting it first would make RabbitMQ wait, or with ``force_boot`` lose what ``L``
   accepted later). **A node outside ``L`` never starts first while a member of ``L`` may come
   back.**
4. **force_boot**, only when every member of ``L`` that did not report is *gone* (fenced,
   removed from the spec, or replaced by a node without its data), after ``force_boot_after``
   seconds of waiting (a fence that rebooted a node brings it back), and only from a strict
   majority of the resource's nodes (a minority may be the cut-off side of a partition). The
   node: a reporting member of ``L`` if any (it holds the newest data), else the node whose
   run record is newest, ties by spec order. Exactly one node per outage: once the claim of
   this outage exists, only its node may force-boot, even if it never comes back (then corral
   waits and says so: an operator decides).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from corral.core.rabbit.state import ForceBootClaim, NodeReport, RunRecord

Action = Literal["run", "start_first", "start", "join", "wait", "forget", "force_boot"]

DEFAULT_FORCE_BOOT_AFTER = 120.0
"""Seconds of waiting for the gone members of the last-running set before force-booting
without them: longer than a power fence's reboot of a lab node, shorter than RabbitMQ's own
boot wait (10 x 30 s) after which a waiting node gives up."""


@dataclass(frozen=True)
class Policy:
    """``force_boot_after``: see rule 4. ``forget_fenced_after``: forget a member fenced this
    long ago (None: never; a fenced node usually comes back with its data and rejoins, and
    forgetting it would make it drop that data)."""

    force_boot_after: float = DEFAULT_FORCE_BOOT_AFTER
    forget_fenced_after: float | None = None


@dataclass(frozen=True)
class Decision:
    """What ``node`` does next and why. ``peer``: the node to join or forget, or that runs."""

    node: str
    action: Action
    reason: str
    peer: str | None = None
    waiting_for: tuple[str, ...] = ()
    until: float | None = None
    reset: bool = False
    regrow: bool = False


@dataclass(frozen=True)
class Plan:
    """One decision per reporting node (spec order); ``claim``: the force-boot claim to write
    first (None: none to write); ``outage``: the current outage's id (None: the cluster runs,
    or it never formed); ``last_running``: the last-running set of that outage."""

    decisions: dict[str, Decision]
    claim: ForceBootClaim | None = None
    outage: int | None = None
    last_running: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Cluster:
    """The inputs. ``nodes``: the resource's nodes in spec order. ``reports``: node -> its
    latest report (nodes without one have no live agent). ``records``: node -> its run record.
    ``gone``: node -> why it will not come back as it was (``fenced``, ``removed``), with
    ``gone_since`` node -> when. ``claim``: the force-boot claim in the store, if any."""

    nodes: tuple[str, ...]
    reports: Mapping[str, NodeReport]
    records: Mapping[str, RunRecord] = field(default_factory=dict)
    gone: Mapping[str, str] = field(default_factory=dict)
    gone_since: Mapping[str, float] = field(default_factory=dict)
    claim: ForceBootClaim | None = None


def decide(cluster: Cluster, now: float, policy: Policy = Policy()) -> Plan:
    """The plan for ``cluster`` at ``now`` (see the module docstring)."""
    reports = {n: cluster.reports[n] for n in cluster.nodes if n in cluster.reports}
    running = [n for n, r in reports.items() if r.state == "running"]
    if running:
        return Plan(_running(cluster, reports, running, now, policy))
    if not cluster.records and not any(r.has_data for r in reports.values()):
        return Plan(_formation(reports))
    return _outage(cluster, reports, now, policy)


# --- rule 1: the cluster runs ----------------------------------------------------------------


def replaced(cluster: Cluster, node: str) -> str:
    """Why ``node``'s report is not the member of that name any more ("" when it is): it holds
    no data, or data of another identity, while a run record or a member knows the name."""
    report = cluster.reports.get(node)
    record = cluster.records.get(node)
    if report is None or report.state == "running":
        return ""
    known = record is not None or any(node in r.members for r in cluster.reports.values())
    if not report.has_data and known:
        return "replaced: it holds no data"
    if report.has_data and record is not None and report.identity != record.identity:
        return f"replaced: its data is {report.identity}, the member was {record.identity}"
    return ""


def _members(reports: Mapping[str, NodeReport], running: Sequence[str]) -> frozenset[str]:
    """The cluster as its running nodes know it."""
    return frozenset().union(*(reports[n].members for n in running))


def _to_forget(
    cluster: Cluster, members: frozenset[str], now: float, policy: Policy
) -> list[tuple[str, str]]:
    """(member, why) of the members the running cluster must forget, spec order first; a
    member whose broker still runs (or is paused, or booting) is not among them."""
    order = {n: i for i, n in enumerate(cluster.nodes)}
    out = []
    for node in sorted(members, key=lambda n: (order.get(n, len(order)), n)):
        report = cluster.reports.get(node)
        if report is not None and report.state != "stopped":
            continue  # RabbitMQ forgets only a node whose broker is down: stop it first
        if node not in order:
            out.append((node, "removed from the spec"))
        elif why := replaced(cluster, node):
            out.append((node, why))
        elif cluster.gone.get(node) == "removed":
            out.append((node, "removed by an operator"))
        elif _fenced_long(cluster, node, now, policy.forget_fenced_after):
            out.append((node, f"fenced over {policy.forget_fenced_after:g}s ago"))
    return out


def _fenced_long(cluster: Cluster, node: str, now: float, after: float | None) -> bool:
    """``node`` was fenced at least ``after`` seconds ago (``after`` None: never true)."""
    if after is None or cluster.gone.get(node) != "fenced":
        return False
    return now >= cluster.gone_since.get(node, now) + after


def _running(
    cluster: Cluster,
    reports: Mapping[str, NodeReport],
    running: list[str],
    now: float,
    policy: Policy,
) -> dict[str, Decision]:
    members = _members(reports, running)
    forget = _to_forget(cluster, members, now, policy)
    peer = running[0]
    out: dict[str, Decision] = {}
    for node, report in reports.items():
        if report.state == "running":
            out[node] = Decision(node, "run", f"serves, in a cluster of {_names(members)}")
        elif report.state == "paused":
            out[node] = Decision(
                node,
                "wait",
                "paused by pause_minority (it saw a minority): it resumes by itself when it "
                "sees a majority again; restarting it would not help",
                waiting_for=tuple(running),
            )
        elif report.state == "starting":
            out[node] = Decision(node, "wait", f"booting, to rejoin {_names(running)}")
        else:
            out[node] = _rejoin(cluster, report, members, forget, peer)
    if forget:
        gone, why = forget[0]
        out[peer] = Decision(
            peer,
            "forget",
            f"forget_cluster_node {gone} ({why}): drops it from the cluster and from every "
            "quorum queue's membership",
            peer=gone,
        )
    return out


def _rejoin(
    cluster: Cluster,
    report: NodeReport,
    members: frozenset[str],
    forget: list[tuple[str, str]],
    peer: str,
) -> Decision:
    """The decision for a stopped node while ``peer`` (and maybe others) runs."""
    node = report.node
    if any(node == gone for gone, _ in forget):
        return Decision(
            node,
            "wait",
            f"{replaced(cluster, node) or 'to be forgotten'}: waiting until {peer} forgets "
            f"the old {node}, then it joins",
            waiting_for=(peer,),
        )
    if not report.has_data:
        was_member = node in cluster.records
        why = "replaces a forgotten member" if was_member else "a new node"
        return Decision(
            node,
            "join",
            f"{why}: join_cluster {peer}"
            + ("; then added back to every quorum queue (grow)" if was_member else ""),
            peer=peer,
            regrow=was_member,
        )
    if node not in members:
        return Decision(
            node,
            "join",
            f"its data is of a cluster that forgot it (the running cluster is "
            f"{_names(members)}; RabbitMQ would refuse to boot it): reset, join_cluster {peer} "
            "and added back to every quorum queue",
            peer=peer,
            reset=True,
            regrow=True,
        )
    return Decision(
        node, "start", f"rejoins the running cluster ({peer} runs) with its data", peer=peer
    )


# --- rule 2: formation -----------------------------------------------------------------------


def _formation(reports: Mapping[str, NodeReport]) -> dict[str, Decision]:
    starting = [n for n, r in reports.items() if r.state != "stopped"]
    first = starting[0] if starting else next(iter(reports), None)
    out = {}
    for node in reports:
        if node == first:
            out[node] = Decision(
                node, "start_first", "a new cluster: the first node (spec order) forms it"
            )
        else:
            out[node] = Decision(
                node,
                "wait",
                f"a new cluster: waiting until {first} runs, then it joins",
                waiting_for=(str(first),),
            )
    return out


# --- rules 3 and 4: an outage ----------------------------------------------------------------


@dataclass(frozen=True)
class _Hold:
    """Why the nodes outside the last-running set wait while force_boot is not (yet) due."""

    reason: str
    waiting_for: tuple[str, ...]
    until: float | None = None


def _last_record(cluster: Cluster) -> RunRecord | None:
    return max(cluster.records.values(), key=lambda r: r.seq, default=None)


def _outage(
    cluster: Cluster, reports: Mapping[str, NodeReport], now: float, policy: Policy
) -> Plan:
    last = _last_record(cluster)
    if last is not None:
        lrs = last.running
    else:  # data but no record (a store restored without them): the members start together
        lrs = frozenset().union(*(r.members for r in reports.values() if r.has_data))
    outage = last.seq if last is not None else 0
    present = [n for n in lrs if n in reports and reports[n].has_data and not replaced(cluster, n)]
    present = [n for n in cluster.nodes if n in present and n not in cluster.gone]
    absent = sorted(lrs - set(present))
    claim = cluster.claim if cluster.claim is not None and cluster.claim.outage == outage else None
    if claim is not None:
        return Plan(_claimed(reports, claim), None, outage, lrs)
    fb = _force_boot(cluster, reports, lrs, present, absent, now, policy, outage)
    if isinstance(fb, ForceBootClaim):
        return Plan(_claimed(reports, fb), fb, outage, lrs)
    out = {}
    for node, report in reports.items():
        if node in present:
            out[node] = _start_first(report, lrs, absent)
        else:
            out[node] = _wait_for_lrs(cluster, report, lrs, fb)
    return Plan(out, None, outage, lrs)


def _start_first(report: NodeReport, lrs: frozenset[str], absent: list[str]) -> Decision:
    node = report.node
    with_ = f"; waiting for {_names(absent)}, which stopped with it" if absent else ""
    if report.state in ("starting", "paused"):
        return Decision(node, "wait", f"booting from its data{with_}", waiting_for=tuple(absent))
    return Decision(
        node,
        "start_first",
        f"was running when the cluster stopped (last-running set {_names(lrs)}): it starts "
        f"from its data, together with the others of that set{with_}",
        waiting_for=tuple(absent),
    )


def _wait_for_lrs(
    cluster: Cluster, report: NodeReport, lrs: frozenset[str], hold: _Hold | None
) -> Decision:
    node = report.node
    why = replaced(cluster, node)
    if not report.has_data or why:
        head = f"{why}; " if why else "no data: "
        text = f"{head}it joins once the cluster runs again"
    else:
        text = (
            f"stopped before the last-running set {_names(lrs)}: its data is older, it starts "
            "once one of them runs (never first while one of them may come back)"
        )
    if hold is not None:
        return Decision(
            node, "wait", f"{text}; {hold.reason}", waiting_for=hold.waiting_for, until=hold.until
        )
    return Decision(node, "wait", text, waiting_for=tuple(sorted(lrs)))


def _claimed(reports: Mapping[str, NodeReport], claim: ForceBootClaim) -> dict[str, Decision]:
    """The decisions once ``claim`` (of this outage) stands: only its node force-boots."""
    out = {}
    for node in reports:
        if node == claim.node:  # acted on once: the driver remembers the outage (a marker)
            out[node] = Decision(node, "force_boot", claim.reason)
        else:
            out[node] = Decision(
                node,
                "wait",
                f"{claim.node} holds this outage's force_boot claim: it boots first, this node "
                "follows once it runs (never a second force_boot in one outage)",
                waiting_for=(claim.node,),
            )
    return out


def _force_boot(
    cluster: Cluster,
    reports: Mapping[str, NodeReport],
    lrs: frozenset[str],
    present: list[str],
    absent: list[str],
    now: float,
    policy: Policy,
    outage: int,
) -> ForceBootClaim | _Hold | None:
    """The claim to write (rule 4), or a wait decision saying until when and why, or None when
    force_boot does not apply (every member of the last-running set may come back)."""
    gone = {n: _gone_why(cluster, n) for n in absent}
    if not absent or not all(gone.values()):
        return None
    said = ", ".join(f"{n} {why}" for n, why in gone.items())
    data = [n for n in cluster.nodes if n in reports and reports[n].has_data]
    data = [n for n in data if not replaced(cluster, n) and n not in cluster.gone]
    if 2 * len(data) <= len(cluster.nodes):
        return _Hold(
            f"the last-running set {_names(lrs)} cannot all come back ({said}), but only "
            f"{len(data)} of {len(cluster.nodes)} nodes with data reported: a minority never "
            "force-boots (it may be the cut-off side of a partition)",
            tuple(absent),
        )
    since = min(reports[n].since for n in data)
    until = since + policy.force_boot_after
    chosen = present[0] if present else _newest(cluster, data)
    if now < until:
        return _Hold(
            f"{said}: if not back by {until:.0f}, {chosen} force-boots "
            f"(waiting {policy.force_boot_after:g}s from {since:.0f})",
            tuple(absent),
            until,
        )
    reason = (
        f"force_boot: the last-running set {_names(lrs)} cannot all come back ({said}) and "
        f"{policy.force_boot_after:g}s have passed; {chosen} holds the newest data of the "
        "nodes that reported; the others join it"
    )
    return ForceBootClaim(outage, chosen, now, reason)


def _gone_why(cluster: Cluster, node: str) -> str:
    if node not in cluster.nodes:
        return "removed from the spec"
    if node in cluster.gone:
        return cluster.gone[node]
    return replaced(cluster, node)


def _newest(cluster: Cluster, candidates: list[str]) -> str:
    """The candidate whose run record is newest (spec order on a tie, and for no record)."""
    order = {n: i for i, n in enumerate(cluster.nodes)}

    def key(node: str) -> tuple[int, int]:
        record = cluster.records.get(node)
        return (-(record.seq if record is not None else -1), order[node])

    return min(candidates, key=key)


def _names(nodes: Sequence[str] | frozenset[str]) -> str:
    return "{" + ", ".join(sorted(nodes)) + "}"
