"""The scheduler's entry point: ``schedule(spec, snapshot) -> Plan``.

Pure and deterministic: the same spec and snapshot always give the same plan, and a plan applied
to the snapshot it came from (:func:`corral.core.scheduler.apply.apply_plan`) gives a snapshot
whose plan has no actions (minimal disruption).
"""

from __future__ import annotations

from dataclasses import replace

from corral.core.scheduler.actions import ActionBuilder, diff_resource, resource_ranks
from corral.core.scheduler.model import Plan, Snapshot
from corral.core.scheduler.placement import Placer
from corral.core.scheduler.scores import Context
from corral.spec import Spec


def schedule(spec: Spec, snap: Snapshot) -> Plan:
    """Decide the target placement of every resource and the actions to get there.

    An unclean node that this plan fences is placed around as if it were already offline, and
    every action of a resource that ran there waits for the fence (``after``): the whole
    failover is one plan, and nothing exclusive starts before the fence has succeeded.
    """
    notes: list[str] = []
    if snap.maintenance.cluster:
        notes.append("cluster in maintenance: nothing is started, stopped or moved")
    if not snap.quorum:
        notes.append("no quorum: exclusive resources are not started, moved or promoted")
    fenced = _to_fence(spec, snap, notes)
    if fenced:
        nodes = dict(snap.nodes)
        for name in fenced:
            nodes[name] = replace(snap.node(name), state="offline", fenced=True)
        plan_snap = replace(snap, nodes=nodes)
    else:
        plan_snap = snap
    ctx = Context(spec, plan_snap)
    ranks = resource_ranks(ctx)
    placer = Placer(ctx)
    builder = ActionBuilder(ctx, ranks)
    for name in fenced:
        builder.add("fence", "", name, f"{name} is unclean (lost, lease not yet expired)")
        for inst in snap.instances:
            if inst.node == name:
                builder.fence_deps.setdefault(inst.resource, set()).add(name)
    decisions = {}
    for name in sorted(spec.resources, key=ranks.__getitem__):
        decisions[name] = placer.decide(name)
    if not snap.maintenance.cluster:
        for name in sorted(spec.resources, key=ranks.__getitem__):
            diff_resource(ctx, decisions[name], placer.scores.get(name) or {}, builder)
    ordered = {name: decisions[name] for name in spec.resources}
    return Plan(ordered, builder.build(), notes)


def _to_fence(spec: Spec, snap: Snapshot, notes: list[str]) -> list[str]:
    """Unclean nodes to fence now (rule 2's fast path), with a note for those that cannot be."""
    out = []
    for name, node in spec.nodes.items():
        status = snap.node(name)
        if status.state != "unclean":
            continue
        devices = spec.fencing if node.fence is None else node.fence
        if not devices:
            notes.append(f"{name} is unclean and has no fence device: waiting for its lease")
        elif status.fencing:
            notes.append(f"{name} is unclean and being fenced: what ran there waits")
        elif status.fence_failed:
            notes.append(f"{name} is unclean and its fence failed: waiting for its lease")
        elif not snap.quorum:
            notes.append(f"{name} is unclean: not fenced without quorum")
        elif snap.maintenance.cluster or status.maintenance or name in snap.maintenance.nodes:
            notes.append(f"{name} is unclean: not fenced while it is in maintenance")
        else:
            out.append(name)
    return out
