"""Administrative state: maintenance at every level, standby, bans, moves, failure cleanup,
spec push.

Each edits one record under ``admin/`` (:mod:`corral.records.admin`) with a compare-and-swap
loop (read, change, write if unchanged since the read), so two operators at once never lose an
edit. A record that does not read is edited as an empty one (as the scheduler reads it). The
scheduler and the agents read these records (safety rule 4 for maintenance). An action's
work gets the store and the name of whoever runs it (the CLI's identity, the API's caller):
maintenance records who set each entry and when (shown in every view, never read for safety).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Literal, TypeVar

from corral.auth import Role
from corral.core.ref import InstanceRef
from corral.records import BansRecord, MaintenanceRecord, MovesRecord, StandbyRecord
from corral.spec import Spec, SpecError, load_spec_text
from corral.store import Compare, Keys, Put, Store

R = TypeVar("R", MaintenanceRecord, StandbyRecord, BansRecord, MovesRecord)
OnOff = Literal["on", "off"]


class ActionError(ValueError):
    """An argument that is wrong; ``field`` names it (``--node``, ``node``, ...)."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class ActionFailed(Exception):
    """The action ran and did not do what it was asked (said to the operator)."""


@dataclass(frozen=True)
class Action:
    """``said``: what the audit event and the operator are told; ``work(store, by)``: the
    store work, ``by`` the name of whoever runs it (its result is the action's); ``need``:
    the least role that may run it."""

    said: str
    work: Callable[[Store, str], Awaitable[object]]
    resource: str = ""
    need: Role = "operator"


def _edit(
    spec: Spec, kind: type[R], change: Callable[[R], R], stamp: Callable[[R, str], R] | None = None
) -> Callable[[Store, str], Awaitable[R]]:
    """The compare-and-swap edit of ``kind``'s record by ``change`` (then ``stamp``, given
    the actor's name)."""
    key = Keys(spec.cluster).admin(kind.NAME)

    async def edit(store: Store, by: str) -> R:
        for _ in range(20):
            kv = await store.get(key)
            old = kind.parse(kv.value) if kv is not None else None
            new = change(old or kind())
            new = stamp(new, by) if stamp is not None else new
            guard = Compare.unchanged_since(key, kv.mod_revision) if kv else Compare.missing(key)
            if (await store.txn([guard], [Put(key, new.dump())])).succeeded:
                return new
        raise ActionFailed(f"admin/{kind.NAME} kept changing under us; try again")

    return edit


def _toggle(items: tuple[str, ...], item: str, on: bool) -> tuple[str, ...]:
    rest = [i for i in items if i != item]
    return tuple(sorted([*rest, item]) if on else rest)


def pair(spec: Spec, text: str, field: str = "instance") -> tuple[str, str]:
    """``RESOURCE@NODE`` with names from ``spec`` (no item), else :class:`ActionError` that
    says how to write it."""
    ref = InstanceRef.parse(text)
    if ref is None or ref.item is not None or ref.node is None:
        raise ActionError(f"{text!r}: write RESOURCE@NODE with names from the spec", field)
    if ref.resource not in spec.resources or ref.node not in spec.nodes:
        raise ActionError(f"{text!r}: write RESOURCE@NODE with names from the spec", field)
    return ref.resource, ref.node


def node_of(spec: Spec, node: str | None, field: str = "node") -> str:
    if node is None or node not in spec.nodes:
        raise ActionError(f"unknown node {node!r} (known: {', '.join(spec.nodes)})", field)
    return node


def resource_of(spec: Spec, resource: str | None, field: str = "resource") -> str:
    if resource is None or resource not in spec.resources:
        known = ", ".join(spec.resources)
        raise ActionError(f"unknown resource {resource!r} (known: {known})", field)
    return resource


def maintenance(
    spec: Spec,
    state: OnOff,
    *,
    cluster: bool = False,
    node: str | None = None,
    resource: str | None = None,
    instance: str | None = None,
    wall: Callable[[], float] = time.time,
) -> Action:
    """Maintenance on or off for exactly one of: the cluster, a node, a resource, one resource
    on one node (rule 4); who set it and when (``wall``) kept beside the entry."""
    if sum(bool(x) for x in (cluster, node, resource, instance)) != 1:
        raise ActionError("name exactly one of cluster, node, resource, instance")
    on = state == "on"
    node = node_of(spec, node) if node is not None else None
    resource = resource_of(spec, resource) if resource is not None else None
    target = "@".join(pair(spec, instance)) if instance is not None else None

    def change(value: MaintenanceRecord) -> MaintenanceRecord:
        if cluster:
            value = replace(value, cluster=on)
        if node is not None:
            value = replace(value, nodes=_toggle(value.nodes, node, on))
        if resource is not None:
            value = replace(value, resources=_toggle(value.resources, resource, on))
        if target is not None:
            value = replace(value, instances=_toggle(value.instances, target, on))
        return value

    what = "cluster" if cluster else node or resource or target
    tag = "cluster" if cluster else f"node:{node}" if node else (
        f"resource:{resource}" if resource else f"instance:{target}")  # fmt: skip

    def stamp(value: MaintenanceRecord, by: str) -> MaintenanceRecord:
        rest = [e for e in value.set_by if e[0] != tag]
        return replace(value, set_by=tuple(sorted([*rest, (tag, by, wall())] if on else rest)))

    said = f"maintenance {state}: {what}"
    return Action(said, _edit(spec, MaintenanceRecord, change, stamp))


def standby(spec: Spec, state: OnOff, node: str) -> Action:
    """Drain ``node`` (its resources move away) or take it back."""
    node = node_of(spec, node)
    on = state == "on"
    change = lambda v: StandbyRecord(_toggle(v.nodes, node, on))  # noqa: E731
    return Action(f"standby {state}: {node}", _edit(spec, StandbyRecord, change))


def ban(spec: Spec, instance: str, clear: bool = False) -> Action:
    """Keep a resource off a node until the ban is cleared."""
    target = "@".join(pair(spec, instance))
    change = lambda v: BansRecord(_toggle(v.instances, target, not clear))  # noqa: E731
    return Action(f"ban {'cleared' if clear else 'set'}: {target}", _edit(spec, BansRecord, change))


def move(spec: Spec, resource: str, node: str | None = None, clear: bool = False) -> Action:
    """Ask for ``resource`` to run on ``node`` (it stays there until cleared)."""
    resource = resource_of(spec, resource)
    if not clear:
        node = node_of(spec, node)

    def change(value: MovesRecord) -> MovesRecord:
        entries = {r: n for r, n in value.entries.items() if r != resource}
        if not clear and node is not None:
            entries[resource] = node
        return MovesRecord(entries)

    said = f"move {f'{resource} cleared' if clear else f'{resource} -> {node}'}"
    return Action(said, _edit(spec, MovesRecord, change))


def cleanup(spec: Spec, instance: str) -> Action:
    """Forget the failures of a resource on a node (lifts a ban by the failure policy)."""
    res, node = pair(spec, instance)

    async def forget(store: Store, by: str) -> None:
        await store.delete(Keys(spec.cluster).failcount(node, res))

    return Action(f"cleanup: {res}@{node}", forget, resource=res)


def spec_push(spec: Spec, text: str, source: str) -> Action:
    """Make ``text`` the running spec of ``spec``'s cluster (validated first; the same
    cluster only). Needs the admin role."""
    try:
        new = load_spec_text(text, source)
    except SpecError as exc:
        raise ActionError("; ".join(str(i) for i in exc.issues), "spec") from None
    if new.cluster != spec.cluster:
        raise ActionError(f"the spec is of cluster {new.cluster!r}, not {spec.cluster!r}", "spec")

    async def push(store: Store, by: str) -> None:
        await store.put(Keys(spec.cluster).spec, text.encode())

    return Action(f"spec push: {source}", push, need="admin")
