"""What-if: a state with faults and admin changes applied, and the scheduler's answer to it, as
plain data. One reading for ``corral simulate`` (a state file) and the API's ``/v1/simulate``
(the live state); nothing is written anywhere.

Faults (each a tuple of names from the spec; :class:`~corral.actions.ActionError` names the
field of one that is not): ``fail_nodes`` (the node is lost: unclean), ``fail_resources``
(``RES@NODE`` fails its health check: unhealthy, one more failure), ``maintenance``
(``cluster``, ``node:NODE``, ``RESOURCE`` or ``RESOURCE@NODE``), ``standby`` (the node drains).
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

from corral.actions.admin import ActionError, pair
from corral.core.scheduler import (
    FailCount,
    Instance,
    Maintenance,
    NodeStatus,
    Snapshot,
    apply_plan,
    render_plan,
    schedule,
)
from corral.records.view import SCHEMAS
from corral.spec import Spec

FIELDS = {  # the field of each fault, as the CLI and the API name it
    "fail_nodes": ("--fail-node", "fail_node"),
    "fail_resources": ("--fail-resource", "fail_resource"),
    "maintenance": ("--maintenance", "maintenance"),
    "standby": ("--standby", "standby"),
}


def inject(
    spec: Spec,
    snap: Snapshot,
    *,
    fail_nodes: tuple[str, ...] = (),
    fail_resources: tuple[str, ...] = (),
    maintenance: tuple[str, ...] = (),
    standby: tuple[str, ...] = (),
) -> Snapshot:
    """``snap`` with the faults and admin changes applied (:class:`ActionError`: ``field`` is
    the key of :data:`FIELDS` of the one that is wrong)."""
    nodes = dict(snap.nodes)
    for field, names in (("fail_nodes", fail_nodes), ("standby", standby)):
        for name in names:
            if name not in spec.nodes:
                raise ActionError(f"unknown node {name!r} (known: {', '.join(spec.nodes)})", field)
    for name in fail_nodes:
        nodes[name] = replace(snap.node(name), state="unclean")
    for name in standby:
        nodes[name] = replace(nodes.get(name, NodeStatus()), standby=True)
    instances = list(snap.instances)
    failures = dict(snap.failures)
    for text in fail_resources:
        res, node = pair(spec, text, "fail_resources")
        instances = [
            replace(i, health="unhealthy") if (i.resource, i.node) == (res, node) else i
            for i in instances
        ]
        if not any((i.resource, i.node) == (res, node) for i in instances):
            instances.append(Instance(res, node, health="unhealthy"))
        old = failures.get((res, node))
        failures[(res, node)] = FailCount((old.count if old else 0) + 1, snap.now)
    maint = _maintenance(spec, snap.maintenance, maintenance)
    return replace(
        snap, nodes=nodes, instances=tuple(instances), failures=failures, maintenance=maint
    )


def _maintenance(spec: Spec, maint: Maintenance, texts: tuple[str, ...]) -> Maintenance:
    for text in texts:
        if text == "cluster":
            maint = replace(maint, cluster=True)
        elif text.startswith("node:") and text[5:] in spec.nodes:
            maint = replace(maint, nodes=maint.nodes | {text[5:]})
        elif "@" in text:
            maint = replace(maint, instances=maint.instances | {pair(spec, text, "maintenance")})
        elif text in spec.resources:
            maint = replace(maint, resources=maint.resources | {text})
        else:
            raise ActionError(
                f"{text!r}: use cluster, node:NODE, RESOURCE or RESOURCE@NODE with names from "
                "the spec",
                "maintenance",
            )
    return maint


def what_if(spec: Spec, snap: Snapshot) -> dict[str, Any]:
    """The scheduler's plan for ``snap``: its actions (each with its reason), notes, and the
    text ``corral simulate`` prints (the state after it included)."""
    plan = schedule(spec, snap)
    return {
        "schema": SCHEMAS["simulate"],
        "actions": [asdict(a) for a in plan.actions],
        "notes": list(plan.notes),
        "text": render_plan(spec, snap, plan, apply_plan(snap, plan)),
    }
