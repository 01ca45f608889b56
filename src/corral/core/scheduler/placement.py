"""Per-resource placement: the target instances of one resource, with reasons.

Safety is enforced here (safety rules 1-4), each rule at the line that names it:
an exclusive instance that may still run on an unclean node blocks any new holder; without
quorum nothing exclusive starts; what is in maintenance is left exactly as it is.
"""

from __future__ import annotations

import heapq

from corral.core.scheduler.model import Decision, Instance, Score
from corral.core.scheduler.scores import Context, LazyScores, ranked
from corral.core.scheduler.vipset import VipSpread


class Placer:
    """Decides resources one at a time, in dependency order, remembering where each went."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.placed: dict[str, set[str]] = {}
        self.load: dict[str, int] = {}
        self.scores: dict[str, LazyScores] = {}
        self._heaps: dict[tuple[object, ...], list[tuple[int, int, str]]] = {}

    # --- entry ----------------------------------------------------------------------------

    def decide(self, name: str) -> Decision:
        ctx = self.ctx
        decision = Decision(name)
        observed = ctx.observed.get(name, [])
        if ctx.snap.maintenance.cluster or name in ctx.snap.maintenance.resources:
            decision.target = [_keep(i) for i in observed if self._alive(i.node)]
            decision.reasons.append("in maintenance: left as it is (nothing started or stopped)")
            return self._record(decision)
        frozen = [i for i in observed if self._alive(i.node) and ctx.frozen(name, i.node)]
        for inst in frozen:
            decision.reasons.append(f"{inst.key} in maintenance: left as it is")
        missing = self._missing_dependencies(name)
        if missing:
            decision.target = [_keep(i) for i in frozen]
            decision.reasons.append(
                f"not running: needs {', '.join(missing)} first (mandatory order), "
                "which has no instance"
            )
            return self._record(decision)
        self._place(decision, frozen, lift=False)
        if not decision.target and self._failure_banned(name):
            # The liveness rule: a failure-policy ban never leaves a resource with no place
            # to run while a node could run it. It runs on where it is banned, restarted
            # there with the agent's backoff, instead of nowhere (a machine so loaded that
            # checks fail everywhere must not turn that into an outage of every API).
            # Pacemaker's migration-threshold leaves it stopped; corral departs from it on
            # purpose. Operator bans are not lifted, and the mode's placement enforces the
            # safety rules (2-4) again on the lifted scores.
            lifted = Decision(name)
            self._place(lifted, frozen, lift=True)
            if lifted.target:
                where = ", ".join(
                    sorted({i.node for i in lifted.target}, key=ctx.node_order.__getitem__)
                )
                lifted.reasons.insert(
                    0,
                    f"banned by its failure policy on every node that could run it; runs on "
                    f"{where} anyway (liveness rule), restarted there with backoff",
                )
                decision = lifted
        return self._record(decision)

    def _place(self, decision: Decision, frozen: list[Instance], *, lift: bool) -> None:
        """Decide ``decision`` by its resource's mode; ``lift``: ignore failure-policy bans."""
        name = decision.resource
        res = self.ctx.spec.resources[name]
        scores = LazyScores(self.ctx, name, self.placed, lift_failure_bans=lift)
        for inst in frozen:  # rule 4: nothing else is placed where maintenance froze it
            scores[inst.node] = Score(None, why="in maintenance here")
        self.scores[name] = scores
        if res.kind == "vip-set":
            self._vip_set(decision, scores, frozen)
        elif res.mode == "active-active":
            self._active_active(decision, scores, frozen)
        elif res.mode == "promotable":
            self._promotable(decision, scores, frozen)
        else:
            self._exclusive(decision, scores, frozen)

    def _failure_banned(self, name: str) -> bool:
        """True when the failure policy bans ``name`` from at least one node."""
        return any(self.ctx.banned_by_failures(name, n) for n in self.ctx.static_nodes(name))

    # --- helpers --------------------------------------------------------------------------

    def _alive(self, node: str) -> bool:
        return self.ctx.status(node).state != "offline"

    def _record(self, decision: Decision) -> Decision:
        self.placed[decision.resource] = {i.node for i in decision.target}
        for inst in decision.target:
            self.load[inst.node] = self.load.get(inst.node, 0) + inst.count
        return decision

    def _missing_dependencies(self, name: str) -> list[str]:
        return [
            o.first
            for o in self.ctx.spec.order
            if o.then == name and o.kind == "mandatory" and not self.placed.get(o.first)
        ]

    def _unclean_holders(self, name: str, *, promoted_only: bool = False) -> list[Instance]:
        """Exclusive instances that may still run on an unclean node (rule 2 keeps them)."""
        return [
            i
            for i in self.ctx.observed.get(name, [])
            if self.ctx.snap.node(i.node).state == "unclean"
            and (not promoted_only or i.role == "promoted")
        ]

    def _wait_text(self, node: str) -> str:
        if self.ctx.spec.fencing and self.ctx.spec.nodes[node].fence != []:
            return f"waiting for {node} to be fenced (it may still run it)"
        return (
            f"waiting for {node}'s lease to expire (no fence device is configured; "
            "it may still run it)"
        )

    def _ranked(self, scores: LazyScores) -> list[str]:
        return ranked(scores, self.ctx.node_order, self.load)

    def _exclusive_candidates(self, name: str, scores: LazyScores) -> list[str]:
        """Allowed nodes that can win an exclusive placement, best first.

        Only nodes with a score other than 0 (preferences, where it runs, a move) and the
        least-loaded other allowed node can win, so only those are scored: O(specials + log N)
        per resource instead of O(N). Same result as ranking every node.
        """
        ctx = self.ctx
        res = ctx.spec.resources[name]
        if res.with_:  # only where its partners are: a small set
            partners = set.intersection(*(self.placed.get(o, set()) for o in res.with_))
            return ranked({n: scores[n] for n in partners}, ctx.node_order, self.load)
        special = {n for n in res.prefer if n in ctx.node_order}
        special |= {i.node for i in ctx.observed.get(name, [])}
        if name in ctx.snap.moves and ctx.snap.moves[name] in ctx.node_order:
            special.add(ctx.snap.moves[name])
        pool = {n: scores[n] for n in special}
        if not any((score.total or 0) > 0 for score in pool.values()):
            # every other allowed node scores 0, so one of them can only win when no special
            # node scores above 0
            default = self._least_loaded(name, scores, special)
            if default is not None:
                pool[default] = scores[default]
        return ranked(pool, ctx.node_order, self.load)

    def _least_loaded(self, name: str, scores: LazyScores, skip: set[str]) -> str | None:
        """The allowed node outside ``skip`` with the fewest instances (then spec order)."""
        key = self.ctx.signature(name)
        heap = self._heaps.get(key)
        if heap is None:
            order = self.ctx.node_order
            heap = [(self.load.get(n, 0), order[n], n) for n in self.ctx.static_nodes(name)]
            heapq.heapify(heap)
            self._heaps[key] = heap
        aside: list[tuple[int, int, str]] = []
        found = None
        while heap:
            load, order_, node = heap[0]
            current = self.load.get(node, 0)
            if load != current:  # stale entry: loads only grow during a plan
                heapq.heapreplace(heap, (current, order_, node))
                continue
            if node in skip or scores[node].total is None:
                aside.append(heapq.heappop(heap))
                continue
            found = node
            break
        for entry in aside:
            heapq.heappush(heap, entry)
        return found

    def _why_not(self, scores: LazyScores) -> str:
        reasons = sorted({f"{n}: {s.why}" for n, s in scores.items() if s.total is None})
        return "; ".join(reasons)

    # --- modes ----------------------------------------------------------------------------

    def _exclusive(self, d: Decision, scores: LazyScores, frozen: list[Instance]) -> None:
        ctx = self.ctx
        if frozen:
            d.target = [_keep(frozen[0])]
            return
        held = self._unclean_holders(d.resource)
        if held:  # rule 2: no second holder before the first is fenced or its lease expired
            d.blocked.append(self._wait_text(held[0].node))
            return
        for res_name, node in sorted(ctx.snap.maintenance.instances):
            if res_name == d.resource and ctx.snap.node(node).state != "online":
                d.blocked.append(  # rule 4: not failed over from where maintenance holds it
                    f"in maintenance on {node}, which is {ctx.snap.node(node).state}: not "
                    "failed over; end the maintenance to recover it"
                )
                return
        best = self._exclusive_candidates(d.resource, scores)
        current = [i.node for i in ctx.observed.get(d.resource, []) if i.node in best]
        if not ctx.snap.quorum:  # rule 3
            if current:
                d.target = [Instance(d.resource, current[0])]
                d.reasons.append(f"stays on {current[0]} (no quorum: nothing exclusive moves)")
            else:
                d.blocked.append("no quorum: exclusive resources are not started")
            return
        if not best:
            d.reasons.append("cannot run anywhere: " + self._why_not(scores))
            return
        node = best[0]
        d.target = [Instance(d.resource, node)]
        d.reasons.append(_why_here(node, scores, current))
        if len(set(current)) > 1:
            d.why_leave[""] = f"runs on one node at a time; kept on {node}"
        elif current and current[0] != node and ctx.snap.moves.get(d.resource) == node:
            d.why_leave[""] = f"an operator moved it to {node}"
        elif current and current[0] != node:
            d.why_leave[""] = (
                f"{node} scores higher ({scores[node].total} vs {scores[current[0]].total})"
            )

    def _active_active(self, d: Decision, scores: LazyScores, frozen: list[Instance]) -> None:
        """Every allowed node (or ``instances`` of them, at most ``max_per_node`` each).

        Running instances on allowed nodes are kept first (stickiness per instance, so the plan
        applied to its own result is stable); the rest go to the best-ranked nodes, spread.
        """
        res = self.ctx.spec.resources[d.resource]
        per_node: dict[str, int] = {}
        for inst in frozen:
            per_node[inst.node] = per_node.get(inst.node, 0) + inst.count
        best = self._ranked(scores)
        fixed = sum(per_node.values())
        wanted = (
            res.instances if res.instances is not None else len(best) * res.max_per_node + fixed
        )
        total = fixed
        running = {i.node: i.count for i in self.ctx.observed.get(d.resource, [])}
        for node in best:  # keep what runs, best nodes first
            keep = min(running.get(node, 0), res.max_per_node, wanted - total)
            if keep > 0:
                per_node[node] = keep
                total += keep
        for _round in range(res.max_per_node):  # then spread the rest, one per node per round
            for node in best:
                if total >= wanted:
                    break
                if per_node.get(node, 0) <= _round and per_node.get(node, 0) < res.max_per_node:
                    per_node[node] = per_node.get(node, 0) + 1
                    total += 1
        frozen_nodes = {i.node for i in frozen}
        d.target = [_keep(i) for i in frozen] + [
            Instance(d.resource, node, count=count)
            for node, count in sorted(per_node.items(), key=lambda kv: self.ctx.node_order[kv[0]])
            if node not in frozen_nodes
        ]
        if total < wanted and res.instances is not None:
            d.blocked.append(f"only {total} of {wanted} instances can run: {self._why_not(scores)}")
        if not d.target:
            d.reasons.append("cannot run anywhere: " + self._why_not(scores))
        else:
            nodes = ", ".join(
                sorted({i.node for i in d.target}, key=self.ctx.node_order.__getitem__)
            )
            d.reasons.append(f"runs on {nodes}")

    def _promotable(self, d: Decision, scores: LazyScores, frozen: list[Instance]) -> None:
        ctx = self.ctx
        res = ctx.spec.resources[d.resource]
        self._active_active(d, scores, frozen)
        limit = res.promoted if res.promoted is not None else 1
        observed = {i.node: i for i in ctx.observed.get(d.resource, [])}
        held = self._unclean_holders(d.resource, promoted_only=True)
        for inst in held:
            d.blocked.append(self._wait_text(inst.node) + " (promoted)")
        slots = limit - len(held) - sum(1 for i in frozen if i.role == "promoted")
        candidates = [i.node for i in d.target if i.node not in {f.node for f in frozen}]
        if d.resource in ctx.snap.wait_for_all:
            reported = [n for n in candidates if observed.get(n) and observed[n].score is not None]
            if len(reported) < len(candidates) or not candidates:
                d.blocked.append(
                    f"promotion waits until all candidates report ({len(reported)} of "
                    f"{len(candidates)} have)"
                )
                slots = 0
        if not ctx.snap.quorum:  # rule 3: keep current promotions, make no new ones
            keep = [n for n in candidates if observed.get(n) and observed[n].role == "promoted"]
            candidates = keep
            if slots > len(keep):
                d.blocked.append("no quorum: no new promotion")

        def promotion_key(node: str) -> tuple[int, int]:
            inst = observed.get(node)
            # location parts without instance stickiness: a fresh instance must not outrank the
            # promoted one only because it now runs (that would flip on the next plan)
            location = sum(v for label, v in scores[node].parts if label != "sticky")
            value = location + (inst.score or 0 if inst else 0)
            if inst is not None and inst.role == "promoted":
                value += res.stickiness
            return (-value, ctx.node_order[node])

        chosen = sorted(candidates, key=promotion_key)[: max(slots, 0)]
        d.target = [
            Instance(
                i.resource, i.node, role="promoted" if i.node in chosen else i.role, count=i.count
            )
            if i.node in candidates
            else i
            for i in d.target
        ]
        if chosen:
            d.reasons.append("promoted on " + ", ".join(chosen) + " (highest promotion score)")

    def _vip_set(self, d: Decision, scores: LazyScores, frozen: list[Instance]) -> None:
        ctx = self.ctx
        res = ctx.spec.resources[d.resource]
        assert res.vip_set is not None
        holders: dict[str, list[Instance]] = {}
        for inst in ctx.observed.get(d.resource, []):
            if inst.item and ctx.snap.node(inst.node).state != "offline":
                holders.setdefault(inst.item, []).append(inst)

        def ready(node: str) -> bool:
            """What the VIPs go with (``with:``, HAProxy) is healthy there now."""
            return all(
                any(i.node == node and i.health == "healthy" for i in ctx.observed.get(p, []))
                for p in res.with_
            )

        spread = VipSpread(
            [str(a.ip) for a in res.vip_set.addresses],
            ctx.static_nodes(d.resource),
            self._ranked(scores),
            holders,
            ready,
            ctx.node_order,
        )
        frozen_items = {i.item: i for i in frozen if i.item}
        for item, kept in frozen_items.items():
            spread.keep(item, kept.node)
        free = [
            i
            for i in spread.items
            if i not in spread.assign and not self._vip_blocked(d, i, spread)
        ]
        if res.vip_set.fail_back and ctx.snap.quorum:
            spread.fail_back(free)
        spread.stick(free)
        for item in spread.spread(free):
            d.reasons.append(f"{item} cannot run anywhere: " + self._why_not(scores))
        d.why_leave.update(spread.why)
        d.target = [
            _keep(frozen_items[item])
            if item in frozen_items
            else Instance(d.resource, spread.assign[item], item=item)
            for item in spread.items
            if item in spread.assign
        ]
        if d.target:
            d.reasons.append(
                "one VIP per node while there are enough nodes: "
                + ", ".join(f"{i.item} on {i.node}" for i in d.target)
            )

    def _vip_blocked(self, d: Decision, item: str, spread: VipSpread) -> bool:
        """Whether ``item`` must wait (rule 2: its holder is unclean; rule 3: no quorum and
        it runs on no allowed node); says why in ``d.blocked``."""
        snap = self.ctx.snap
        holders = spread.holders.get(item, [])
        unclean = [i.node for i in holders if snap.node(i.node).state == "unclean"]
        if unclean:
            d.blocked.append(f"{item}: " + self._wait_text(unclean[0]))  # rule 2
            return True
        if not snap.quorum and not any(i.node in spread.allowed for i in holders):
            d.blocked.append(f"{item}: no quorum, not started")  # rule 3
            return True
        return False


def _keep(inst: Instance) -> Instance:
    """An observed instance kept as the target, exactly as it is."""
    return inst


def _why_here(node: str, scores: LazyScores, current: list[str]) -> str:
    score = scores[node]
    if node in current:
        return f"stays on {node} (score {score})"
    others = [
        f"{n} {s.total}" for n, s in scores.computed().items() if s.total is not None and n != node
    ]
    tail = f"; next best: {', '.join(others[:3])}" if others else ""
    return f"placed on {node} (score {score}){tail}"
