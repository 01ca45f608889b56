"""What this node may run and what it is asked to run (reads of the spec and the store).

- :func:`local_instances`: every instance the spec lets run on this node (the candidates for
  adoption at start): instance key -> (resource, item).
- :func:`read_desired`: the instances assigned to this node (``assign/<resource>``, instance
  key -> role; assignments of resources the running spec does not name are ignored) and the
  resources in maintenance here (``admin/maintenance``: the whole cluster, this node, a
  resource, or ``resource@node`` instances). A malformed maintenance record freezes nothing.
"""

from __future__ import annotations

from corral.agent.controller import parse_assignment
from corral.agent.instances import instance_key
from corral.agent.records import load
from corral.core.scheduler.model import Snapshot
from corral.core.scheduler.scores import Context
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


async def read_desired(
    store: Store, keys: Keys, spec: Spec, node: str
) -> tuple[dict[str, str], set[str]]:
    """(instance key -> assigned role, resources in maintenance on ``node``)."""
    result = await store.range(keys.prefix("assign"))
    desired: dict[str, str] = {}
    for kv in result.kvs:
        name = kv.key.decode(errors="replace").rsplit("/", 1)[-1]
        if name not in spec.resources:
            continue
        for where, role, item in parse_assignment(kv.value):
            if where == node:
                desired[instance_key(name, item)] = role
    maint = await store.get(keys.admin("maintenance"))
    frozen: set[str] = set()
    value = load(maint.value) if maint is not None else None
    if isinstance(value, dict):
        if value.get("cluster") or node in value.get("nodes", []):
            frozen = set(spec.resources)
        frozen |= set(value.get("resources", []))
        frozen |= {p.split("@")[0] for p in value.get("instances", []) if p.endswith("@" + node)}
    return desired, frozen
