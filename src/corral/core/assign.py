"""From a plan to the assignments the controller writes (pure).

Agents act on assignments level-triggered: each starts what is assigned to it and stops the rest.
The plan's ordering constraints across nodes are kept by *staging*:

- handoff (rule 1 across nodes): an exclusive instance (active-passive, a VIP or vip-set
  member, a promoted role) is not assigned to its new node while another live node still runs
  it; that node gets no assignment, stops it, reports, and the next round assigns the new node.
  An instance on a node that is no longer online is gone (lease expired or fenced: rule 2).
- order: a new instance of ``then`` is not assigned until ``first`` runs somewhere (reported
  running and not unhealthy). Instances already running stay assigned.
The returned assignment of each resource is sorted (node, item) so equal plans write equal
values.
"""

from __future__ import annotations

from corral.core.scheduler import Instance, Plan, Snapshot
from corral.spec import Spec

Assigned = dict[str, list[Instance]]


def staged_assignments(spec: Spec, snap: Snapshot, plan: Plan) -> tuple[Assigned, list[str]]:
    """The assignments to write now, and notes on what waits (for events and status)."""
    live = [i for i in snap.instances if snap.node(i.node).state == "online"]
    running = {i.resource for i in live if i.health != "unhealthy"}
    holders: dict[tuple[str, str | None], set[str]] = {}
    promoted: dict[str, set[str]] = {}
    for inst in live:
        holders.setdefault((inst.resource, inst.item), set()).add(inst.node)
        if inst.role == "promoted":
            promoted.setdefault(inst.resource, set()).add(inst.node)
    out: Assigned = {}
    notes: list[str] = []
    order = {n: i for i, n in enumerate(spec.nodes)}
    for name, decision in plan.decisions.items():
        res = spec.resources[name]
        waits_for = [o.first for o in spec.order if o.then == name and o.first not in running]
        target_promoted = {i.node for i in decision.target if i.role == "promoted"}
        chosen: list[Instance] = []
        for inst in decision.target:
            if snap.node(inst.node).state != "online":
                continue
            here = holders.get((name, inst.item), set())
            if inst.node not in here and waits_for:
                notes.append(f"{name} on {inst.node} waits for {', '.join(waits_for)} to run")
                continue
            if res.exclusive and res.mode != "promotable" and here - {inst.node}:
                others = ", ".join(sorted(here - {inst.node}))
                notes.append(f"{inst.key} waits for {others} to stop it (handoff)")
                continue
            if inst.role == "promoted" and promoted.get(name, set()) - target_promoted:
                inst = Instance(inst.resource, inst.node, "started", item=inst.item)
                notes.append(f"{name} promotion on {inst.node} waits for the old one to demote")
            chosen.append(inst)
        chosen.sort(key=lambda i: (order[i.node], i.item or ""))
        out[name] = chosen
    return out, notes
