"""What this node may run and what it is asked to run (reads of the spec and the store).

- :func:`local_instances`: every instance the spec lets run on this node (the candidates for
  adoption at start): instance key -> (resource, item).
- :func:`read_desired`: the instances assigned to this node (``assign/<resource>``, instance
  key -> role; assignments of resources the running spec does not name are ignored; an
  exclusive one only for this node's current registration, see there) and the
  resources in maintenance here (``admin/maintenance``: the whole cluster, this node, a
  resource, or ``resource@node`` instances). A malformed maintenance record freezes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass

from corral.agent.instances import instance_key
from corral.core.scheduler.model import Snapshot
from corral.core.scheduler.scores import Context
from corral.records import AssignRecord, MaintenanceRecord
from corral.spec import Spec
from corral.store import Keys, Store


def local_instances(spec: Spec, node: str) -> dict[str, tuple[str, str | None]]:
    """Every instance that may run on ``node``: instance key -> (resource, item)."""
    ctx = Context(spec, Snapshot())
    out: dict[str, tuple[str, str | None]] = {}
    for name, res in spec.resources.items():
        if node not in ctx.static_set(name):
            continue
        items = [str(a.ip) for a in res.vip_set.addresses] if res.vip_set else [None]
        for item in items:
            out[instance_key(name, item)] = (name, item)
    return out


@dataclass(frozen=True)
class Registration:
    """Who asks: ``node``, its current registration (mod revision of ``nodes/<node>``; None
    before the first), and the earlier registrations it replaced with no lapse."""

    node: str
    current: int | None
    continuous: frozenset[int] = frozenset()


async def read_desired(
    store: Store,
    keys: Keys,
    spec: Spec,
    me: Registration,
    running: Mapping[str, str],
    joined: Set[str] = frozenset(),
) -> tuple[dict[str, str], set[str], set[str]]:
    """(instance key -> assigned role, resources in maintenance on ``me.node``, stale keys).

    An exclusive instance counts as assigned only when its assignment names ``me.current``
    (the controller writes each instance's ``reg``): one written for an earlier registration
    of this node (a node fenced and rebooted fast, a lease that lapsed) may be moving to
    another node right now (rule 2). Such a *stale* assignment keeps an instance that runs
    here (``running``: key -> role) only when this registration replaced that one with no
    lapse (an agent restarted within its lease: the controller never saw the node offline),
    in the role it has (not promoted); otherwise the key is reported in ``stale`` and left
    out (not started, and stopped if it runs). The controller rewrites the assignment for the
    current registration at its next step. A ``joined`` Galera member (rule 1g: nothing
    moves it, every node runs its own) is read as a non-exclusive instance is."""
    result = await store.range(keys.prefix("assign"))
    desired: dict[str, str] = {}
    stale: set[str] = set()
    for kv in result.kvs:
        name = kv.key.decode(errors="replace").rsplit("/", 1)[-1]
        if name not in spec.resources:
            continue
        for inst in (AssignRecord.parse_kv(kv) or AssignRecord()).instances:
            if inst.node != me.node:
                continue
            key = instance_key(name, inst.item)
            if inst.reg == me.current or not spec.resources[name].exclusive or key in joined:
                desired[key] = inst.role
            elif key in running and inst.reg in me.continuous:
                desired[key] = running[key]
            else:
                stale.add(key)
    return desired, await _frozen(store, keys, spec, me.node), stale


async def _frozen(store: Store, keys: Keys, spec: Spec, node: str) -> set[str]:
    """Resources in maintenance on ``node`` (a malformed record freezes nothing)."""
    maint = await store.get(keys.admin("maintenance"))
    record = MaintenanceRecord.parse_kv(maint) if maint is not None else None
    covered = (record or MaintenanceRecord()).maintenance()
    return {name for name in spec.resources if covered.covers(name, node)}


async def still_assigned(
    store: Store, keys: Keys, name: str, item: str | None, me: Registration
) -> bool:
    """Whether ``assign/<name>`` names this instance for ``me``'s current registration now
    (a linearizable read): the last word before an exclusive start, since the round that
    decided it read the assignments earlier and its actions may have taken seconds."""
    kv = await store.get(keys.assign(name))
    if kv is None or me.current is None:
        return False
    return any(
        i.node == me.node and i.item == item and i.reg == me.current
        for i in (AssignRecord.parse_kv(kv) or AssignRecord()).instances
    )
