"""The transition summary: state before, notes, actions, state after, reasons, scores.

Plain text, stable line order, meant for people (``corral simulate``) and for golden files
reviewed as diffs.
"""

from __future__ import annotations

from corral.core.scheduler.model import Instance, Plan, Score, Snapshot
from corral.core.scheduler.scores import Context, node_score
from corral.spec import Spec


def describe_state(spec: Spec, snap: Snapshot) -> list[str]:
    """Nodes and what runs where, one line per resource."""
    nodes = []
    for name in spec.nodes:
        status = snap.node(name)
        flags: list[str] = [status.state]
        if status.standby:
            flags.append("standby")
        if status.maintenance:
            flags.append("maintenance")
        if status.fenced:
            flags.append("fenced")
        nodes.append(f"{name} {'/'.join(flags)}")
    lines = ["nodes: " + ", ".join(nodes)]
    if not snap.quorum:
        lines.append("quorum: lost")
    by_res: dict[str, list[Instance]] = {}
    for inst in snap.instances:
        by_res.setdefault(inst.resource, []).append(inst)
    order = {n: i for i, n in enumerate(spec.nodes)}
    width = max((len(r) for r in spec.resources), default=0)
    for name in spec.resources:
        insts = sorted(by_res.get(name, []), key=lambda i: (order.get(i.node, 0), i.item or ""))
        where = ", ".join(_inst_text(i) for i in insts) or "-"
        lines.append(f"{name.ljust(width)}  {where}")
    return lines


def _inst_text(inst: Instance) -> str:
    text = inst.node if not inst.item else f"{inst.item}@{inst.node}"
    extra = []
    if inst.role == "promoted":
        extra.append("promoted")
    if inst.health != "healthy":
        extra.append(inst.health)
    if inst.score is not None:
        extra.append(f"score {inst.score}")
    if inst.count > 1:
        extra.append(f"x{inst.count}")
    return text + (f" ({', '.join(extra)})" if extra else "")


def all_scores(spec: Spec, snap: Snapshot, plan: Plan) -> dict[str, dict[str, Score]]:
    """Every node's score for every resource, with colocation taken from ``plan``'s target."""
    ctx = Context(spec, snap)
    placed = {name: {i.node for i in d.target} for name, d in plan.decisions.items()}
    return {
        name: {
            node: node_score(ctx, name, node, with_nodes=placed, apart_nodes=placed)
            for node in spec.nodes
        }
        for name in spec.resources
    }


def render_plan(spec: Spec, before: Snapshot, plan: Plan, after: Snapshot) -> str:
    out = ["Current state", *(f"  {line}" for line in describe_state(spec, before))]
    if plan.notes:
        out += ["", "Notes", *(f"  {n}" for n in plan.notes)]
    out += ["", "Actions"]
    if not plan.actions:
        out.append("  (none)")
    for action in plan.actions:
        deps = f" [after {', '.join(str(a + 1) for a in action.after)}]" if action.after else ""
        out.append(f"  {action.id + 1}. {action}: {action.reason}{deps}")
    out += ["", "Target state", *(f"  {line}" for line in describe_state(spec, after))]
    out += ["", "Reasons"]
    for name, decision in plan.decisions.items():
        for reason in decision.reasons:
            out.append(f"  {name}: {reason}")
        for block in decision.blocked:
            out.append(f"  {name}: BLOCKED {block}")
    out += ["", "Scores"]
    for name, scores in all_scores(spec, before, plan).items():
        cells = " | ".join(f"{node} {score}" for node, score in scores.items())
        out.append(f"  {name}: {cells}")
    return "\n".join(out) + "\n"


def explain(spec: Spec, snap: Snapshot, plan: Plan, resource: str) -> str:
    """Why each instance of ``resource`` is where it is (``corral explain``)."""
    decision = plan.decisions[resource]
    res = spec.resources[resource]
    out = [f"{resource}: {res.kind}, {res.mode if res.kind != 'vip-set' else 'vip-set'}"]
    targets = ", ".join(_inst_text(i) for i in decision.target) or "nowhere"
    out.append(f"  target: {targets}")
    out += [f"  {r}" for r in decision.reasons]
    out += [f"  BLOCKED {b}" for b in decision.blocked]
    actions = [a for a in plan.actions if a.resource == resource]
    out += [f"  action: {a}: {a.reason}" for a in actions]
    out.append("  scores:")
    for node, score in all_scores(spec, snap, plan)[resource].items():
        out.append(f"    {node}: {score}")
    deps = [
        f"{o.first} {'->' if o.kind == 'mandatory' else '~>'} {o.then}"
        for o in spec.order
        if resource in (o.first, o.then)
    ]
    if deps:
        out.append("  order: " + "; ".join(deps))
    return "\n".join(out) + "\n"
