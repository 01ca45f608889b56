"""Carry out a plan on a snapshot, as agents would if every action succeeded.

Used by ``corral simulate`` (state after), by the golden tests, and by the property tests that
check idempotence: ``schedule(spec, apply_plan(snap, schedule(spec, snap)))`` has no actions.
"""

from __future__ import annotations

from dataclasses import replace

from corral.core.scheduler.model import Action, Instance, NodeStatus, Plan, Snapshot


def apply_plan(snap: Snapshot, plan: Plan) -> Snapshot:
    """The snapshot after every action of ``plan`` succeeded (instances on offline nodes are
    dropped: nothing runs on a node that is off)."""
    nodes = dict(snap.nodes)
    slots: dict[tuple[str, str, str | None], Instance] = {
        (i.resource, i.node, i.item): i for i in snap.instances
    }
    for action in plan.actions:
        _apply(action, nodes, slots)
    live = tuple(
        inst for inst in slots.values() if nodes.get(inst.node, NodeStatus()).state != "offline"
    )
    return replace(snap, nodes=nodes, instances=live)


def _apply(
    action: Action,
    nodes: dict[str, NodeStatus],
    slots: dict[tuple[str, str, str | None], Instance],
) -> None:
    key = (action.resource, action.node, action.item)
    inst = slots.get(key)
    if action.kind == "fence":
        nodes[action.node] = replace(
            nodes.get(action.node, NodeStatus()), state="offline", fenced=True
        )
    elif action.kind == "start":
        if inst is None:
            slots[key] = Instance(action.resource, action.node, item=action.item)
        else:
            slots[key] = replace(inst, count=inst.count + 1)
    elif action.kind == "stop" and inst is not None:
        if inst.count > 1:
            slots[key] = replace(inst, count=inst.count - 1)
        else:
            del slots[key]
    elif action.kind == "move" and action.to is not None:
        slots.pop(key, None)
        slots[(action.resource, action.to, action.item)] = Instance(
            action.resource, action.to, item=action.item
        )
    elif action.kind == "restart" and inst is not None:
        slots[key] = replace(inst, health="healthy")
    elif action.kind in ("promote", "demote") and inst is not None:
        slots[key] = replace(inst, role="promoted" if action.kind == "promote" else "started")
