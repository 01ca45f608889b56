"""Who bootstraps a Galera cluster, and in which order the others join (pure).

:func:`decide` is a pure function of what the nodes reported, which nodes are gone, whether
a Primary component runs, and the time. It returns one of:

- :class:`Join`: some node runs a Primary component now: there is no bootstrap, every other
  node joins it (IST or SST), in :attr:`Join.order`.
- :class:`Wait`: not every node's state is known yet; :attr:`Wait.missing` names them and
  :attr:`Wait.until` says until when (None: until they report, however long).
- :class:`Bootstrap`: :attr:`Bootstrap.node` starts a new Primary component
  (``--wsrep-new-cluster``) from :attr:`Bootstrap.position`; the others join after it is
  Primary, in :attr:`Bootstrap.join_order`. A bootstrap is an exclusive decision (DESIGN rule
  6): the caller writes it as the one claim of :mod:`corral.records.galera` before anyone acts.
- :class:`Refuse`: corral will not choose (histories that cannot be compared, a minority);
  the reason says what an operator can do.

Every decision carries a reason for people (DESIGN rule 5); the same inputs give the same
decision.

The rules, in order:

1. A Primary component runs (``primary`` not empty): join it. Nothing else is considered: a
   second Primary started beside a live one is the split brain this module exists to prevent.
2. A node's state is *known* when it reported a position: its grastate seqno, or when that is
   -1 (an unclean stop) the position ``--wsrep-recover`` found, or that it holds no history
   (no grastate, or the nil UUID: a fresh node, it will need a full state transfer). A node
   that runs mariadbd outside a Primary component, or whose seqno is -1 with no recovered
   position, is *unknown*: its files are not final. **An unknown or unreported node is never
   assumed to be behind**: while one is not gone, the decision is :class:`Wait` with no end
   (the resource agent's PR 1547 failure, every node ``seqno: -1``, is handled by recovery:
   the agent runs ``--wsrep-recover`` and reports the recovered position, then corral goes on).
   A ``safe_to_bootstrap: 1`` on a node without history means nothing (left by a failed state
   transfer, resource-agents PR 1323) and is ignored.
3. Gone nodes (``gone``: fenced by corral, rule 2, or removed by an operator) cannot bootstrap
   and their reports are not read. corral still waits for them until ``waiting_since +
   wait`` (a power fence that rebooted a node brings it back with its report); after that it
   bootstraps from the nodes that reported, but only when they are a strict majority of the
   expected nodes, and says so (:attr:`Bootstrap.partial`, an event). A minority never
   bootstraps: :class:`Refuse`. (The resource agent waits for every node and leaves a
   partial start to a person.) Transactions committed only on the gone nodes are lost by
   such a bootstrap; the reason says which nodes.
4. Histories: positions of different cluster state UUIDs are not comparable (a seqno counts
   within one history only). When the known nodes hold two or more histories, corral refuses:
   bootstrapping one would wipe the others by state transfer, and which one is right is a
   person's call (someone bootstrapped by hand, or two clusters share a name). An operator
   removes or wipes the nodes of the history to drop; then corral goes on. Fresh nodes hold
   no history and never block.
5. The candidate among the nodes of the one history: the highest seqno; on a tie a node whose
   grastate says ``safe_to_bootstrap: 1``; then a node that shares the newest saved view; then
   the spec's node order. In a consistent shutdown the node marked safe is the last one to
   leave and holds the highest seqno, so this is "safe_to_bootstrap first"; when a node
   without the mark is *ahead* (a hand-edited file), the position wins, since bootstrapping the
   marked node would discard committed transactions, and the reason says so. When no node has
   history at all, this is a new cluster: the first node in spec order bootstraps.
6. The chosen node's grastate may say ``safe_to_bootstrap: 0`` (always so after a crash):
   Galera refuses to bootstrap it until the mark is set, so :attr:`Bootstrap.force` tells the
   driver to set it first; the claim (rule 6) is what makes that safe.
7. Join order: the nodes that share the newest saved view (``gvwstate.dat``) first, then the
   others; within each, the most advanced first (more likely to get an IST), then spec order;
   fresh nodes last. (Measured on Debian 12: nodes whose saved views disagree, started at
   once, hung for minutes; the two that shared the newest view, started first, formed in 8 s.)

Saved views are ordered by the view sequence number, the last field of ``view_id`` (``"<type>
<uuid> <seq>"``); two different views with the same sequence number (two components of a
partition) are ordered by how many reporting nodes share them, then by their text.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from corral.core.galera.state import NIL_UUID, NodeState, Position

DEFAULT_WAIT = 60.0
"""Seconds to wait for gone (fenced) nodes to come back before bootstrapping without them: a
power fence that reboots a node brings it back in well under a minute in the lab, a real
server's firmware takes longer (a spec field overrides it). Nodes that are not gone are waited
for without end."""


@dataclass(frozen=True)
class Wait:
    missing: tuple[str, ...]
    until: float | None  # None: no end (a node that is not gone is never assumed behind)
    reason: str


@dataclass(frozen=True)
class Bootstrap:
    node: str
    position: Position  # start from here (``--wsrep-start-position`` after a crash)
    join_order: tuple[str, ...]
    force: bool  # its grastate says safe_to_bootstrap: 0: set it to 1 first
    partial: bool  # without the gone nodes, from a majority (an event)
    reason: str


@dataclass(frozen=True)
class Join:
    primary: tuple[str, ...]  # the nodes running the Primary component
    order: tuple[str, ...]  # the others, in the order they join
    reason: str


@dataclass(frozen=True)
class Refuse:
    reason: str


Decision = Wait | Bootstrap | Join | Refuse


@dataclass(frozen=True)
class _Known:
    """A node whose state is known: its position, or None when it holds no history."""

    node: str
    position: Position | None
    recovered: bool  # the position came from --wsrep-recover
    safe: bool
    view_id: str | None


def known_position(state: NodeState) -> tuple[Position | None, bool] | str:
    """``(position or None for no history, recovered?)``, or why the state is unknown."""
    if state.running:
        return "runs mariadbd outside a Primary component (its files are not final)"
    grastate = state.grastate
    if grastate is None or grastate.position.uuid == NIL_UUID:
        return None, False
    if grastate.position.seqno >= 0:
        return grastate.position, False
    found = state.recovered
    if found is None or (found.seqno < 0 and found.uuid != NIL_UUID):
        return "seqno -1 and no recovered position yet (--wsrep-recover)"
    if found.uuid == NIL_UUID:
        return None, True  # nothing committed: it needs a full state transfer
    return found, True


def view_seq(view_id: str) -> int:
    """The sequence number of a saved view (the last field of ``view_id``), -1 if none."""
    last = view_id.split()[-1] if view_id.split() else ""
    return int(last) if last.isdigit() else -1


def newest_view(known: Collection[_Known]) -> str | None:
    """The newest saved view among ``known``: by sequence, then holders, then text."""
    holders: dict[str, int] = {}
    for k in known:
        if k.view_id is not None:
            holders[k.view_id] = holders.get(k.view_id, 0) + 1
    if not holders:
        return None
    return max(holders, key=lambda v: (view_seq(v), holders[v], [-ord(c) for c in v]))


def decide(
    expected: Sequence[str],
    reports: Mapping[str, NodeState],
    gone: Mapping[str, str],
    primary: Collection[str],
    waiting_since: float,
    now: float,
    wait: float = DEFAULT_WAIT,
) -> Decision:
    """The decision for one Galera resource (see the module docstring for the rules).

    ``expected``: the resource's nodes in spec order. ``reports``: node -> its latest report
    (nodes not expected are ignored). ``gone``: node -> why it is gone for good ("fenced",
    "removed"). ``primary``: the nodes that run a Primary component now. ``waiting_since``:
    when the controller began to wait for reports (the same clock as ``now``; restart it when
    the gone nodes change, so that a node fenced late still gets its ``wait``).

    Asked only while no bootstrap claim holds (:func:`corral.records.galera.claim_holds`):
    under a claim, the claimant is bootstrapping and nothing else may."""
    if not expected:
        return Refuse("the resource has no nodes")
    order = {n: i for i, n in enumerate(expected)}
    running = [n for n in expected if n in primary and n not in gone]
    if running:
        return _join(expected, reports, gone, running)
    known, unknown = _classify(expected, reports, gone)
    if unknown:
        said = "; ".join(f"{n} {why}" for n, why in unknown.items())
        tail = f" ({_gone_text(gone, expected)} gone)" if _gone_in(gone, expected) else ""
        return Wait(
            tuple(unknown),
            None,
            f"waiting for every node's position: {said}{tail}; a node "
            "whose state is unknown is never assumed behind (fence or remove it to go on)",
        )
    absent = tuple(n for n in expected if n in gone)
    if absent and now < waiting_since + wait:
        return Wait(
            absent,
            waiting_since + wait,
            f"{_gone_text(gone, expected)} gone: waiting up to {wait:g}s for "
            f"{'it' if len(absent) == 1 else 'them'} to come back before bootstrapping without",
        )
    if absent and 2 * len(known) <= len(expected):
        return Refuse(
            f"only {len(known)} of {len(expected)} nodes reported ({_gone_text(gone, expected)}"
            " gone): a minority never bootstraps (it may not hold the last commits); bring a "
            "gone node back or remove nodes from the spec"
        )
    return _choose(list(known.values()), order, absent, gone, expected)


def _classify(
    expected: Sequence[str], reports: Mapping[str, NodeState], gone: Mapping[str, str]
) -> tuple[dict[str, _Known], dict[str, str]]:
    """The nodes not gone: (known ones, unknown ones -> why), in spec order."""
    known: dict[str, _Known] = {}
    unknown: dict[str, str] = {}
    for node in expected:
        if node in gone:
            continue
        state = reports.get(node)
        if state is None:
            unknown[node] = "has not reported"
            continue
        got = known_position(state)
        if isinstance(got, str):
            unknown[node] = got
            continue
        grastate = state.grastate
        # the mark on a node without history means nothing (a failed state transfer)
        safe = grastate is not None and grastate.safe_to_bootstrap and got[0] is not None
        view = state.view.view_id if state.view is not None else None
        known[node] = _Known(node, got[0], got[1], safe, view)
    return known, unknown


def _gone_in(gone: Mapping[str, str], expected: Sequence[str]) -> list[str]:
    return [n for n in expected if n in gone]


def _gone_text(gone: Mapping[str, str], expected: Sequence[str]) -> str:
    return ", ".join(f"{n} ({gone[n]})" for n in _gone_in(gone, expected))


def _pos(position: Position) -> str:
    return f"{position.uuid}:{position.seqno}"


def _choose(
    known: list[_Known],
    order: Mapping[str, int],
    absent: tuple[str, ...],
    gone: Mapping[str, str],
    expected: Sequence[str],
) -> Decision:
    """Rules 4 to 7 on the known nodes (every node not gone is known here)."""
    histories: dict[str, list[str]] = {}
    for k in known:
        if k.position is not None:
            histories.setdefault(k.position.uuid, []).append(k.node)
    if len(histories) > 1:
        said = "; ".join(f"{u}: {', '.join(ns)}" for u, ns in sorted(histories.items()))
        return Refuse(
            f"the nodes hold different cluster histories ({said}): their positions cannot be "
            "compared and bootstrapping one would wipe the others; remove or wipe the nodes "
            "of the history to drop"
        )
    newest = newest_view(known)
    ranked = sorted(known, key=lambda k: _rank(k, newest, order))
    if not histories:  # a new cluster: spec order alone (a fresh node's saved view means nothing)
        ranked = sorted(known, key=lambda k: order[k.node])
    first = ranked[0]
    joiners = _join_order(ranked[1:], newest, order)
    partial = bool(absent)
    tail = ""
    if partial:
        tail = (
            f"; from {len(known)} of {len(expected)} nodes: {_gone_text(gone, expected)} gone,"
            f" transactions only {'it' if len(absent) == 1 else 'they'} committed are lost"
        )
    if first.position is None:
        return Bootstrap(
            first.node,
            Position(NIL_UUID, -1),
            joiners,
            False,
            partial,
            f"{first.node} bootstraps a new cluster: no node holds any history{tail}",
        )
    force = not first.safe
    return Bootstrap(
        first.node, first.position, joiners, force, partial, _why(first, ranked) + tail
    )


def _rank(k: _Known, newest: str | None, order: Mapping[str, int]) -> tuple[int, int, int, int]:
    """Sort key, best first: seqno, safe_to_bootstrap, shares the newest view, spec order."""
    seqno = k.position.seqno if k.position is not None else -2  # fresh after any history
    shares = newest is not None and k.view_id == newest
    return (-seqno, -int(k.safe), -int(shares), order[k.node])


def _join_order(
    others: Collection[_Known], newest: str | None, order: Mapping[str, int]
) -> tuple[str, ...]:
    """Rule 7: fresh nodes last; before them the newest view's nodes first, then the most
    advanced, then spec order."""

    def key(k: _Known) -> tuple[int, int, int, int]:
        seqno = k.position.seqno if k.position is not None else -2
        shares = newest is not None and k.view_id == newest
        return (int(k.position is None), -int(shares), -seqno, order[k.node])

    return tuple(k.node for k in sorted(others, key=key))


def _why(first: _Known, ranked: list[_Known]) -> str:
    """Why ``first`` bootstraps (it has a position)."""
    assert first.position is not None
    pos = _pos(first.position) + (" (recovered)" if first.recovered else "")
    others = len(ranked) - 1
    ties = [k.node for k in ranked[1:] if k.position == first.position]
    marked = [k.node for k in ranked if k.safe]
    if first.safe:
        why = f"{first.node} bootstraps: safe_to_bootstrap, at {pos}"
    elif marked:
        behind = ", ".join(marked)
        why = (
            f"{first.node} bootstraps: at {pos} it is ahead of {behind} (safe_to_bootstrap): "
            "the position wins, bootstrapping a node behind would discard commits"
        )
    else:
        why = f"{first.node} bootstraps: the highest position, {pos}; no node is safe_to_bootstrap"
    if ties:
        why += f"; level with {', '.join(ties)} (taken: newest saved view, then spec order)"
    if not first.safe:
        why += "; its grastate is marked safe_to_bootstrap first"
    if others:
        why += f"; {others} {'joins' if others == 1 else 'join'} after it is Primary"
    return why


def _join(
    expected: Sequence[str],
    reports: Mapping[str, NodeState],
    gone: Mapping[str, str],
    running: list[str],
) -> Join:
    """Rule 1: a Primary runs; every other node that is not gone joins it."""
    order = {n: i for i, n in enumerate(expected)}
    others: list[_Known] = []
    for node in expected:
        if node in gone or node in running:
            continue
        state = reports.get(node)
        got = known_position(state) if state is not None else "unknown"
        position = got[0] if not isinstance(got, str) else None
        view = state.view.view_id if state is not None and state.view is not None else None
        others.append(_Known(node, position, False, False, view))
    ranked = _join_order(others, newest_view(others), order)
    said = ", ".join(running)
    reason = f"{said} {'runs' if len(running) == 1 else 'run'} a Primary component: no bootstrap"
    verb = "joins" if len(ranked) == 1 else "join"
    reason += f"; {', '.join(ranked)} {verb} it" if ranked else "; every node is in it"
    return Join(tuple(running), ranked, reason)
