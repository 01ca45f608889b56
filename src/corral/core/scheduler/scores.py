"""Which nodes may hold a resource, and how much each is preferred.

Every node gets a :class:`Score`: ``None`` (not allowed, with the reason) or an integer built
from named parts, so ``corral explain`` can show exactly why a node won. Parts:

- ``prefer``: the spec's location preference for the node;
- ``sticky``: the resource's stickiness where an instance already runs (minimal disruption);
- ``move``: an operator's ``move`` request (:data:`MOVE_SCORE`, beats any other preference).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime

from corral.core.scheduler.model import Instance, NodeStatus, Score, Snapshot
from corral.spec import Resource, Spec
from corral.spec.durations import human_duration

MOVE_SCORE = 1_000_000


class Context:
    """The spec and snapshot with the lookups every placement step needs, computed once."""

    def __init__(self, spec: Spec, snap: Snapshot) -> None:
        self.spec = spec
        self.snap = snap
        self.node_order = {name: i for i, name in enumerate(spec.nodes)}
        self.observed: dict[str, list[Instance]] = {}
        order = self.node_order
        for inst in snap.instances:
            if inst.node in order and inst.resource in spec.resources:
                self.observed.setdefault(inst.resource, []).append(inst)
        # sorted so that nothing depends on the order agents happened to report in
        for group in self.observed.values():
            if len(group) > 1:
                group.sort(key=lambda i: (order[i.node], i.item or "", i.role))
        # static eligibility is shared by every resource with the same `on:` (cost: one pass
        # over the nodes per distinct placement, not per resource)
        self._static: dict[tuple[object, ...], list[str]] = {}
        self._static_sets: dict[tuple[object, ...], set[str]] = {}
        self._default_status = NodeStatus()
        m = snap.maintenance
        self._any_maintenance = bool(
            m.cluster
            or m.nodes
            or m.resources
            or m.instances
            or any(status.maintenance for status in snap.nodes.values())
        )
        self.kinds = {name: res.kind for name, res in spec.resources.items()}
        self._observed_nodes: dict[str, set[str]] = {}
        self._signatures: dict[str, tuple[object, ...]] = {}

    def observed_nodes(self, name: str) -> set[str]:
        """Nodes where ``name`` is reported running (any health, any state)."""
        found = self._observed_nodes.get(name)
        if found is None:
            found = {i.node for i in self.observed.get(name, ())}
            self._observed_nodes[name] = found
        return found

    def signature(self, name: str) -> tuple[object, ...]:
        """Resources with equal signatures have the same statically eligible nodes."""
        found = self._signatures.get(name)
        if found is None:
            found = self._signature(name)
            self._signatures[name] = found
        return found

    def _signature(self, name: str) -> tuple[object, ...]:
        place = self.spec.resources[name].on
        return (
            tuple(sorted(place.required_roles())),
            tuple(sorted(place.labels.items())),
            tuple(place.nodes),
            place.site,
        )

    def static_nodes(self, name: str) -> list[str]:
        """Nodes the spec allows for resource ``name`` (roles, labels, nodes, site), in order."""
        key = self.signature(name)
        if key not in self._static:
            place = self.spec.resources[name].on
            out = [n for n, node in self.spec.nodes.items() if place.allows(n, node)]
            self._static[key] = out
            self._static_sets[key] = set(out)
        return self._static[key]

    def static_set(self, name: str) -> set[str]:
        self.static_nodes(name)
        return self._static_sets[self.signature(name)]

    def status(self, node: str) -> NodeStatus:
        return self.snap.nodes.get(node, self._default_status)

    def frozen(self, resource: str, node: str) -> bool:
        """True when ``resource`` on ``node`` is in maintenance at any level (rule 4)."""
        if not self._any_maintenance:
            return False
        return self.snap.maintenance.covers(resource, node, self.status(node))

    def banned_by_failures(self, resource: str, node: str) -> str | None:
        """The reason ``resource`` is banned from ``node`` by its failure policy, if it is."""
        fail = self.snap.failures.get((resource, node))
        if fail is None:
            return None
        policy = self.spec.resources[resource].failure
        if fail.count < policy.migration_threshold:
            return None
        timeout = policy.failure_timeout
        if timeout > 0 and self.snap.now - fail.last >= timeout:
            return None
        if timeout <= 0:
            until = "until cleared (corral cleanup)"
        else:
            end = fail.last + timeout
            until = f"for {human_duration(end - self.snap.now)} more (until {_utc(end)})"
        return (
            f"{fail.count} failure(s) reached migration_threshold "
            f"{policy.migration_threshold}, banned {until}"
        )


def _utc(t: float) -> str:
    """``t`` (seconds since the epoch) as a time a person reads: ``2026-12-02 07:13:20 UTC``."""
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def static_reason(ctx: Context, res: Resource, node: str) -> str:
    """Why the spec itself keeps ``res`` off ``node``."""
    spec_node = ctx.spec.nodes[node]
    missing = [r for r in res.on.required_roles() if r not in spec_node.roles]
    if missing:
        return "lacks role " + ", ".join(missing)
    if res.on.nodes and node not in res.on.nodes:
        return "not in the resource's node list"
    if res.on.site is not None and spec_node.site != res.on.site:
        return f"not in site {res.on.site}"
    return "labels do not match"


def node_score(
    ctx: Context,
    name: str,
    node: str,
    *,
    with_nodes: dict[str, set[str]],
    apart_nodes: dict[str, set[str]],
    lift_failure_bans: bool = False,
) -> Score:
    """Score of ``node`` for resource ``name``.

    ``with_nodes``/``apart_nodes`` map the resources named in ``with``/``apart`` to the nodes
    where they are placed in this plan (colocation is decided in dependency order).
    ``lift_failure_bans``: ignore the failure policy's bans (the liveness rule, see
    :meth:`corral.core.scheduler.placement.Placer.decide`); an operator's ban still holds.
    """
    res = ctx.spec.resources[name]
    why = _excluded(ctx, name, node, lift_failure_bans) or _placement_excluded(
        res, node, with_nodes, apart_nodes
    )
    if why:
        return Score(None, why=why)
    parts: list[tuple[str, int]] = []
    if node in res.prefer:
        parts.append(("prefer", res.prefer[node]))
    if node in ctx.observed_nodes(name) and ctx.kinds[name] != "vip-set":
        # a vip-set's stickiness is per VIP, decided in placement
        parts.append(("sticky", res.stickiness))
    if ctx.snap.moves.get(name) == node:
        parts.append(("move", MOVE_SCORE))
    return Score(sum(v for _, v in parts), tuple(parts))


def _excluded(ctx: Context, name: str, node: str, lift_failure_bans: bool) -> str | None:
    """Why ``node`` cannot run ``name`` whatever else is placed (None: it can), in order:
    node state, standby, maintenance (rule 4), static placement, ticket, bans."""
    res = ctx.spec.resources[name]
    status = ctx.status(node)
    if status.state != "online":
        return f"node {status.state}"
    if status.standby:
        return "node in standby"
    if ctx.frozen(name, node):  # rule 4: nothing is started where maintenance applies
        return "in maintenance here"
    if node not in ctx.static_set(name):
        return static_reason(ctx, res, node)
    if res.ticket is not None:
        holder, site = ctx.snap.tickets.get(res.ticket), ctx.spec.nodes[node].site
        if holder is None or holder != site:
            return f"site {site} does not hold ticket {res.ticket}"
    if (name, node) in ctx.snap.bans:
        return "banned by an operator"
    return None if lift_failure_bans else ctx.banned_by_failures(name, node)


def _placement_excluded(
    res: Resource, node: str, with_nodes: dict[str, set[str]], apart_nodes: dict[str, set[str]]
) -> str | None:
    """Why colocation (``with``) or anti-colocation (``apart``) keeps ``res`` off ``node``."""
    for other in res.with_:
        if node not in with_nodes.get(other, set()):
            return f"{other} is not placed here (with)"
    for other in res.apart:
        if node in apart_nodes.get(other, set()):
            return f"{other} is placed here (apart)"
    return None


def ranked(scores: Mapping[str, Score], order: dict[str, int], load: dict[str, int]) -> list[str]:
    """Allowed nodes, best first: higher score, then fewer instances already placed (spread),
    then spec order (determinism)."""
    allowed: Iterable[str] = (n for n, s in scores.items() if s.total is not None)
    return sorted(
        allowed,
        key=lambda n: (-(scores[n].total or 0), load.get(n, 0), order[n]),
    )


class LazyScores(Mapping[str, Score]):
    """Scores of one resource, computed per node on first use.

    Placement of an exclusive resource on a large cluster looks at a handful of nodes (its
    preferences, where it runs, the least-loaded other node), so it must not pay for all of
    them; iteration (explanations, active-active) computes the rest in spec order.
    """

    def __init__(
        self,
        ctx: Context,
        name: str,
        placed: dict[str, set[str]],
        *,
        lift_failure_bans: bool = False,
    ) -> None:
        self._ctx = ctx
        self._name = name
        self._placed = placed
        self._lift = lift_failure_bans
        self._cache: dict[str, Score] = {}

    def __getitem__(self, node: str) -> Score:
        score = self._cache.get(node)
        if score is None:
            if node not in self._ctx.node_order:
                raise KeyError(node)
            score = node_score(
                self._ctx,
                self._name,
                node,
                with_nodes=self._placed,
                apart_nodes=self._placed,
                lift_failure_bans=self._lift,
            )
            self._cache[node] = score
        return score

    def __setitem__(self, node: str, score: Score) -> None:
        self._cache[node] = score

    def __iter__(self) -> Iterator[str]:
        return iter(self._ctx.node_order)

    def __len__(self) -> int:
        return len(self._ctx.node_order)

    def computed(self) -> dict[str, Score]:
        """The scores computed so far (no new work)."""
        return dict(self._cache)
