"""From target placement to actions: the smallest set of steps, in an order that is safe.

Ordering contract (the agent runs a plan's actions in list order; ``after`` says which earlier
actions each one waits for, so independent ones may run in parallel):

1. ``fence`` of unclean nodes;
2. ``demote`` then ``stop``, dependents first (reverse resource rank);
3. ``start``, ``move``, ``restart`` then ``promote``, dependencies first (resource rank).

Resource rank: ``A -> B`` (either kind) puts A before B; ``with: [B]`` or ``apart: [B]`` in A
puts B before A (A is placed relative to where B goes).
No action is emitted for what is in maintenance (rule 4) or on a node that is not online.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping

from corral.core.scheduler.model import Action, ActionKind, Decision, Instance, Score
from corral.core.scheduler.scores import Context

Slot = tuple[str, str | None]  # (node, item)
_PHASE = {"fence": 0, "demote": 1, "stop": 2, "start": 3, "move": 4, "restart": 5, "promote": 6}


def resource_ranks(ctx: Context) -> dict[str, int]:
    """Topological rank of every resource (Kahn's algorithm, ties in spec order)."""
    names = list(ctx.spec.resources)
    before: dict[str, set[str]] = {n: set() for n in names}
    for order in ctx.spec.order:
        if order.first in before and order.then in before:
            before[order.then].add(order.first)
    for name, res in ctx.spec.resources.items():
        before[name].update(o for o in (*res.with_, *res.apart) if o in before)
    rank: dict[str, int] = {}
    remaining = list(names)
    while remaining:
        ready = [n for n in remaining if before[n] <= rank.keys()] or remaining[:1]
        for n in ready:
            rank[n] = len(rank)
        remaining = [n for n in remaining if n not in rank]
    return rank


class ActionBuilder:
    """Accumulates actions per phase, then numbers and links them."""

    def __init__(self, ctx: Context, ranks: dict[str, int]) -> None:
        self.ctx = ctx
        self.ranks = ranks
        self.fences: list[Action] = []
        self.down: list[Action] = []  # demote, stop
        self.up: list[Action] = []  # start, move, restart, promote
        self.fence_deps: dict[str, set[str]] = {}  # resource -> nodes fenced in this plan
        spec = ctx.spec
        self._first_of: dict[str, set[str]] = {}
        self._then_of: dict[str, set[str]] = {}
        for o in spec.order:
            self._first_of.setdefault(o.then, set()).add(o.first)
            self._then_of.setdefault(o.first, set()).add(o.then)
        # resources whose actions may order this one's on the same node (with, apart)
        self._related: dict[str, set[str]] = {}
        for name, res in spec.resources.items():
            for other in (*res.with_, *res.apart):
                self._related.setdefault(name, set()).add(other)
                self._related.setdefault(other, set()).add(name)
        self._ordered = {
            n: self._first_of.get(n, set()) | self._then_of.get(n, set()) for n in spec.resources
        }

    def add(self, kind: ActionKind, res: str, node: str, reason: str, **kw: str | None) -> None:
        action = Action(0, kind, res, node, reason, to=kw.get("to"), item=kw.get("item"))
        if kind == "fence":
            self.fences.append(action)
        elif kind in ("stop", "demote"):
            self.down.append(action)
        else:
            self.up.append(action)

    def build(self) -> list[Action]:
        """Number the actions in a safe sequential order and link each to what it waits for.

        Dependencies (edges) come first; among actions that are ready, fences go first, then
        demotes/stops (dependents first), then starts/moves/promotes (dependencies first).
        Cost: candidate pairs come from indexes by resource and node, so a plan of thousands of
        actions is linked in time proportional to its edges, not to actions squared.
        """
        actions = [*self.fences, *self.down, *self.up]
        deps = self._edges(actions)
        keys = [self._priority(a) for a in actions]
        waiting = [len(d) for d in deps]
        unlocks: list[list[int]] = [[] for _ in actions]
        for i, needs in enumerate(deps):
            for j in needs:
                unlocks[j].append(i)
        ready = [(keys[i], i) for i in range(len(actions)) if not waiting[i]]
        heapq.heapify(ready)
        placed: list[int] = []
        done = [False] * len(actions)
        while len(placed) < len(actions):
            if not ready:  # a dependency cycle (cannot come from a valid spec): break it
                rest = min((keys[i], i) for i in range(len(actions)) if not done[i])
                ready.append(rest)
            _, i = heapq.heappop(ready)
            if done[i]:
                continue
            done[i] = True
            placed.append(i)
            for k in unlocks[i]:
                waiting[k] -= 1
                if waiting[k] == 0 and not done[k]:
                    heapq.heappush(ready, (keys[k], k))
        new_id = {old: new for new, old in enumerate(placed)}
        return [
            Action(
                new_id[old],
                a.kind,
                a.resource,
                a.node,
                a.reason,
                a.to,
                a.item,
                tuple(sorted(new_id[d] for d in deps[old] if new_id[d] < new_id[old])),
            )
            for old in placed
            for a in [actions[old]]
        ]

    def _priority(self, a: Action) -> tuple[int, int, int, int, str]:
        rank = self.ranks.get(a.resource, 0)
        group = 0 if a.kind == "fence" else 1 if a.kind in ("stop", "demote") else 2
        return (
            group,
            -rank if group == 1 else rank,
            _PHASE[a.kind],
            self.ctx.node_order[a.node],
            a.item or "",
        )

    def _edges(self, actions: list[Action]) -> list[set[int]]:
        """For each action, the indexes of the actions it waits for (see :meth:`_waits`)."""
        by_res: dict[str, list[int]] = {}
        by_res_node: dict[tuple[str, str], list[int]] = {}
        fences: list[int] = []
        for i, a in enumerate(actions):
            if a.kind == "fence":
                fences.append(i)
                continue
            by_res.setdefault(a.resource, []).append(i)
            for node in {a.node, _lands(a)}:
                by_res_node.setdefault((a.resource, node), []).append(i)
        out: list[set[int]] = []
        for i, a in enumerate(actions):
            if a.kind == "fence":
                out.append(set())
                continue
            candidates: list[int] = list(fences)
            related = self._related.get(a.resource, set())
            for node in {a.node, _lands(a)}:
                for res in (a.resource, *related):
                    candidates += by_res_node.get((res, node), ())
            if self.ctx.spec.resources[a.resource].exclusive or a.kind == "promote":
                candidates += by_res.get(a.resource, ())
            for res in self._ordered.get(a.resource, ()):
                candidates += by_res.get(res, ())
            out.append({j for j in set(candidates) if j != i and self._waits(a, actions[j])})
        return out

    def _waits(self, a: Action, b: Action) -> bool:
        """True when action ``a`` must wait for action ``b``."""
        if a.kind == "fence":
            return False
        if b.kind == "fence":
            return b.node in self.fence_deps.get(a.resource, ())
        spec = self.ctx.spec
        up, down = ("start", "move", "restart", "promote"), ("stop", "demote")
        if a.resource == b.resource:
            if a.kind == "promote":
                return (b.kind in ("start", "move") and _lands(b) == a.node) or b.kind == "demote"
            if a.kind == "stop" and b.kind == "demote":
                return b.node == a.node
            exclusive = spec.resources[a.resource].exclusive
            return (
                a.kind in ("start", "move") and b.kind == "stop" and (exclusive or b.node == a.node)
            )
        if a.kind in up and b.kind in up and b.resource in self._first_of.get(a.resource, ()):
            return True  # order: start the dependency first
        if (
            a.kind in down
            and b.kind in (*down, "move")
            and b.resource in self._then_of.get(a.resource, ())
        ):
            return True  # order: stop dependents first
        if (
            a.kind in ("start", "move")
            and b.kind in ("start", "move")
            and b.resource in spec.resources[a.resource].with_
            and _lands(b) == _lands(a)
        ):
            return True  # colocation: land beside what it goes with
        if a.kind == "stop" and b.kind in ("stop", "move") and b.node == a.node:
            return a.resource in spec.resources[b.resource].with_  # leave before it goes
        if a.kind in ("start", "move") and b.kind in ("stop", "move") and b.node == _lands(a):
            apart = spec.resources[a.resource].apart, spec.resources[b.resource].apart
            return b.resource in apart[0] or a.resource in apart[1]  # apart: make room first
        return False


def _lands(action: Action) -> str:
    return action.to if action.kind == "move" and action.to else action.node


def diff_resource(
    ctx: Context, decision: Decision, scores: Mapping[str, Score], out: ActionBuilder
) -> None:
    """Add the actions that turn what runs of one resource into ``decision.target``."""
    name = decision.resource
    res = ctx.spec.resources[name]
    observed = [i for i in ctx.observed.get(name, []) if ctx.snap.node(i.node).state == "online"]
    observed = [i for i in observed if not ctx.frozen(name, i.node)]
    target = [i for i in decision.target if not ctx.frozen(name, i.node)]
    if _unchanged(observed, target):
        return  # the common case on a large, healthy cluster: nothing to compare
    if res.exclusive and res.mode != "promotable":
        _diff_exclusive(decision, observed, target, scores, out)
    else:
        _diff_counted(decision, observed, target, scores, out)
    kept_slots = {(t.node, t.item) for t in target}
    for inst in observed:
        kept = (inst.node, inst.item) in kept_slots
        if kept and inst.health == "unhealthy":
            fails = ctx.snap.failures.get((name, inst.node))
            count = (
                f" (failure {fails.count} of {res.failure.migration_threshold})" if fails else ""
            )
            out.add("restart", name, inst.node, f"unhealthy{count}", item=inst.item)


def _unchanged(observed: list[Instance], target: list[Instance]) -> bool:
    if len(observed) != len(target):
        return False
    for have, want in zip(observed, target, strict=True):
        if (have.node, have.item, have.role, have.count) != (
            want.node,
            want.item,
            want.role,
            want.count,
        ) or have.health == "unhealthy":
            return False
    return True


def _by_slot(instances: Iterable[Instance]) -> dict[Slot, Instance]:
    return {(i.node, i.item): i for i in instances}


def _gone_reason(
    scores: Mapping[str, Score], node: str, decision: Decision, item: str | None = None
) -> str:
    """Why an instance leaves ``node``: the node is not allowed, the resource cannot run, or
    the placement prefers another node (``why_leave``)."""
    score = scores.get(node)
    if score is not None and score.total is None:
        return score.why
    if not decision.target and decision.reasons:
        return decision.reasons[-1]
    return decision.why_leave.get(item or "", "fewer instances wanted")


def _diff_exclusive(
    decision: Decision,
    observed: list[Instance],
    target: list[Instance],
    scores: Mapping[str, Score],
    out: ActionBuilder,
) -> None:
    """A/P resources, VIPs and vip-set members: one holder per item, so a change is a move."""
    name = decision.resource
    now = _by_slot(observed)
    want = {i.item: i for i in target}
    moved: set[str | None] = set()
    for node, item in sorted(now, key=lambda slot: (slot[0], slot[1] or "")):
        goal: Instance | None = want.get(item)
        if goal is not None and goal.node == node:
            continue
        if (
            goal is not None
            and item not in moved
            and not any(o.node == goal.node and o.item == item for o in observed)
        ):
            moved.add(item)
            why = _gone_reason(scores, node, decision, item)
            out.add("move", name, node, f"{node}: {why}", to=goal.node, item=item)
        else:
            out.add("stop", name, node, _gone_reason(scores, node, decision, item), item=item)
    for item, wanted in want.items():
        if item in moved or (wanted.node, item) in now:
            continue
        placed_why = decision.why_leave.get(item) if item else None
        reason = placed_why or _start_reason(scores, wanted.node)
        out.add("start", name, wanted.node, reason, item=item)


def _diff_counted(
    decision: Decision,
    observed: list[Instance],
    target: list[Instance],
    scores: Mapping[str, Score],
    out: ActionBuilder,
) -> None:
    """Active-active and promotable: per node, start/stop the difference, then fix roles."""
    name = decision.resource
    have = {i.node: i for i in observed}
    want = {i.node: i for i in target}
    for node, inst in have.items():
        goal = want.get(node)
        if goal is None:
            why = _gone_reason(scores, node, decision)
            if inst.role == "promoted":
                out.add("demote", name, node, why)
            for _ in range(inst.count):
                out.add("stop", name, node, why)
            continue
        if inst.role == "promoted" and goal.role != "promoted":
            out.add("demote", name, node, "another node has a higher promotion score")
        for _ in range(inst.count - goal.count):
            out.add("stop", name, node, "fewer instances wanted")
    for node, goal in want.items():
        current = have.get(node)
        for _ in range(goal.count - (current.count if current else 0)):
            out.add("start", name, node, _start_reason(scores, node))
        if goal.role == "promoted" and (current is None or current.role != "promoted"):
            out.add("promote", name, node, "highest promotion score")


def _start_reason(scores: Mapping[str, Score], node: str) -> str:
    score = scores.get(node)
    return f"placed here (score {score})" if score is not None else "placed here"
