"""What agents and the controller write in the store, and the snapshot the scheduler reads.

All values are JSON objects (readable with ``etcdctl get``). Keys: :class:`corral.store.Keys`.

- ``nodes/<node>`` (under the node's lease): ``{"address", "pid", "since"}``; present = online.
- ``status/<node>/<resource>`` (under the node's lease): ``{"instances": [{"item", "role",
  "health", "detail", "score"}]}``: what runs there now.
- ``assign/<resource>`` (controller): ``{"instances": [{"node", "role", "item", "reg"}]}``;
  ``reg`` is the registration (mod revision of ``nodes/<node>``) the instance is assigned to.
- ``failcounts/<node>/<resource>``: ``{"count", "last"}`` (wall-clock seconds, not leased:
  failures outlive a restart of the agent).
- ``admin/maintenance``, ``admin/standby``, ``admin/bans``, ``admin/moves``, ``admin/tickets``.
- ``events/<time_ns>-<node>``: ``{"time", "node", "resource", "kind", "reason"}``.
- ``fenced/<node>``: ``{"revision", "time", "device"}``: the registration (mod revision of
  ``nodes/<node>``: each registration writes the key once, under its own lease) that a fence
  agent switched off; that registration counts as offline.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from corral.core.ref import InstanceRef
from corral.core.scheduler import FailCount, Instance, Maintenance, NodeStatus, Snapshot
from corral.spec import Spec
from corral.store import Keys, KeyValue


def dump(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def load(raw: bytes) -> Any:
    """Parse a record; a corrupt value reads as None (callers skip it, never crash)."""
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None


@dataclass(frozen=True)
class Event:
    time: float
    node: str
    resource: str
    kind: str
    reason: str

    def record(self) -> bytes:
        return dump(self.__dict__)


def _rel(keys: Keys, key: bytes) -> list[str]:
    return key.decode(errors="replace")[len(keys.root) :].split("/")


def node_states(spec: Spec, keys: Keys, kvs: list[KeyValue]) -> dict[str, str]:
    """Every spec node's state as the store records it: ``online`` (registered), ``fenced``
    (its registration is the one a ``fenced/<node>`` record names: it was fenced and has not
    registered again) or ``offline`` (no registration: its lease expired)."""
    registration: dict[str, int] = {}
    fenced: dict[str, int] = {}
    for kv in kvs:
        parts = _rel(keys, kv.key)
        if len(parts) != 2 or parts[1] not in spec.nodes:
            continue
        if parts[0] == "nodes":
            registration[parts[1]] = kv.mod_revision
        elif parts[0] == "fenced":
            value = load(kv.value)
            revision = value.get("revision") if isinstance(value, dict) else None
            if isinstance(revision, int):
                fenced[parts[1]] = revision
    return {
        n: "offline"
        if n not in registration
        else "fenced"
        if fenced.get(n) == registration[n]
        else "online"
        for n in spec.nodes
    }


def snapshot_from_kvs(
    spec: Spec,
    keys: Keys,
    kvs: list[KeyValue],
    now: float,
    lost: set[str] | None = None,
    fence_failed: set[str] | None = None,
    fencing: set[str] | None = None,
) -> Snapshot:
    """The scheduler's view of the cluster from one consistent range read of the cluster prefix.

    Nodes with a key under ``nodes/`` are online; spec nodes without one are offline (their lease
    expired: safety rule 2 makes that safe, since agents self-fence before expiry). A node
    with a live lease that gossip holds dead (``lost``) is ``unclean``: what it ran may still
    run, so nothing exclusive moves before its lease expires or it is fenced. A registration
    named by a ``fenced/<node>`` record is offline (fenced); the node's next registration is
    online again. ``fence_failed`` nodes are unclean ones whose fence failed, ``fencing`` ones
    are being fenced: neither is fenced (again) by this plan. Records naming unknown nodes or
    resources, or that do not parse, are ignored.
    """
    states = node_states(spec, keys, kvs)
    online = {n for n, state in states.items() if state == "online"}
    instances: list[Instance] = []
    failures: dict[tuple[str, str], FailCount] = {}
    admin: dict[str, Any] = {}
    for kv in kvs:
        parts = _rel(keys, kv.key)
        value = load(kv.value) if parts[0] in ("status", "failcounts", "admin") else None
        if value is None:
            continue
        if parts[0] == "status" and len(parts) == 3:
            instances += _instances(spec, parts[1], parts[2], value)
        elif parts[0] == "failcounts" and len(parts) == 3:
            failures.update(_failcount(spec, parts[1], parts[2], value))
        elif parts[0] == "admin" and len(parts) == 2:
            admin[parts[1]] = value
    live = [i for i in instances if i.node in online]
    standby = set(admin.get("standby", {}).get("nodes", []))
    return Snapshot(
        now=now,
        quorum=True,  # we read it through a linearizable range: the store has quorum
        nodes={
            n: NodeStatus(
                state=("unclean" if n in (lost or set()) else "online")
                if n in online
                else "offline",
                standby=n in standby,
                fenced=states[n] == "fenced",
                fence_failed=n in (fence_failed or set()),
                fencing=n in (fencing or set()),
            )
            for n in spec.nodes
        },
        instances=tuple(live),
        failures=failures,
        maintenance=parse_maintenance(admin.get("maintenance")),
        bans=frozenset(_pairs(admin.get("bans", {}).get("instances", []))),
        moves={k: v for k, v in admin.get("moves", {}).items() if isinstance(v, str)},
        tickets={k: v for k, v in admin.get("tickets", {}).items() if isinstance(v, str)},
    )


def _failcount(spec: Spec, node: str, res: str, value: Any) -> dict[tuple[str, str], FailCount]:
    """``failcounts/<node>/<res>`` as the scheduler reads it (nothing for unknown names or a
    record that is not a mapping)."""
    if node not in spec.nodes or res not in spec.resources or not isinstance(value, dict):
        return {}
    return {(res, node): FailCount(int(value.get("count", 0)), float(value.get("last", 0.0)))}


def _instances(spec: Spec, node: str, res: str, value: Any) -> list[Instance]:
    if node not in spec.nodes or res not in spec.resources or not isinstance(value, dict):
        return []
    out = []
    for item in value.get("instances", []):
        if not isinstance(item, dict):
            continue
        health = item.get("health", "unknown")
        out.append(
            Instance(
                res,
                node,
                role="promoted" if item.get("role") == "promoted" else "started",
                health=health if health in ("healthy", "unhealthy") else "unknown",
                item=item.get("item"),
                score=item.get("score") if isinstance(item.get("score"), int) else None,
            )
        )
    return out


def _pairs(values: Any) -> list[tuple[str, str]]:
    out = []
    for text in values if isinstance(values, list) else []:
        ref = InstanceRef.parse(text)
        if ref is not None and ref.node is not None and ref.item is None:
            out.append((ref.resource, ref.node))
    return out


def parse_maintenance(value: Any) -> Maintenance:
    """``admin/maintenance`` as the scheduler and the agents read it (one reading for both):
    a record that is not a mapping, and entries that are not strings, freeze nothing."""
    if not isinstance(value, dict):
        return Maintenance()
    return Maintenance(
        cluster=value.get("cluster") is True,
        nodes=frozenset(_strings(value.get("nodes"))),
        resources=frozenset(_strings(value.get("resources"))),
        instances=frozenset(_pairs(value.get("instances", []))),
    )


def _strings(values: Any) -> list[str]:
    return [v for v in values if isinstance(v, str)] if isinstance(values, list) else []
