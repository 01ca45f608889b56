"""The whole cluster prefix read at once: every record parsed, the malformed ones skipped
with a reason, and the scheduler's snapshot built from them.

:func:`read_records` never raises on a value: a record that does not read is left out and
listed in :attr:`StoreRecords.skipped` (key, mod revision, reason), so a caller can say so
(the controller emits a ``record`` event per skipped key and revision). Keys of sections or
shapes this version does not know (a newer agent's) are ignored, not skipped. Registrations
count by their presence (their value is for people), so they are never skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from corral.core.scheduler import FailCount, Instance, NodeStatus, Snapshot
from corral.records.admin import (
    AdminRecords,
    BansRecord,
    MaintenanceRecord,
    MovesRecord,
    StandbyRecord,
    TicketsRecord,
)
from corral.records.agent import FailCountRecord, LbRecord, MembersRecord, RequestRecord
from corral.records.cluster import AssignRecord, FencedRecord, StatusRecord, SystemicRecord
from corral.records.codec import Malformed, Record
from corral.records.drops import RecordDrops
from corral.records.events import Event
from corral.spec import Spec
from corral.store import Keys, KeyValue


@dataclass(frozen=True)
class Skipped:
    """A record left out: its key, the mod revision of that value, and why."""

    key: bytes
    mod_revision: int
    reason: str

    def __str__(self) -> str:
        return f"{self.key.decode(errors='replace')} (revision {self.mod_revision}): {self.reason}"


@dataclass
class StoreRecords:
    """Every record of one range read of the cluster prefix, by name. ``registrations``:
    node -> mod revision of ``nodes/<node>``; ``events``: in key (time) order."""

    registrations: dict[str, int] = field(default_factory=dict)
    fenced: dict[str, FencedRecord] = field(default_factory=dict)
    status: dict[tuple[str, str], StatusRecord] = field(default_factory=dict)  # (node, res)
    assign: dict[str, AssignRecord] = field(default_factory=dict)
    systemic: dict[str, SystemicRecord] = field(default_factory=dict)  # announced episodes
    failcounts: dict[tuple[str, str], FailCountRecord] = field(default_factory=dict)  # (node, res)
    admin: AdminRecords = field(default_factory=AdminRecords)
    lb: dict[str, LbRecord] = field(default_factory=dict)
    members: dict[str, MembersRecord] = field(default_factory=dict)
    requests: dict[tuple[str, str], RequestRecord] = field(default_factory=dict)  # (node, res)
    events: list[Event] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


# section -> (key parts below the root, record type)
_BY_NAME: dict[str, type[Record]] = {
    "fenced": FencedRecord,
    "assign": AssignRecord,
    "systemic": SystemicRecord,
    "lb": LbRecord,
    "members": MembersRecord,
    "events": Event,
    "status": StatusRecord,
    "failcounts": FailCountRecord,
    "requests": RequestRecord,
}
_PAIRS = {"status", "failcounts", "requests"}  # <section>/<node>/<resource>
_ADMIN: dict[str, type[Record]] = {
    "maintenance": MaintenanceRecord,
    "standby": StandbyRecord,
    "bans": BansRecord,
    "moves": MovesRecord,
    "tickets": TicketsRecord,
}


def _kind(parts: list[str]) -> type[Record] | None:
    """The record type of a key (its parts below the root); None for keys not read here."""
    if len(parts) == 2 and parts[0] == "admin":
        return _ADMIN.get(parts[1])
    if len(parts) == (3 if parts[0] in _PAIRS else 2):
        return _BY_NAME.get(parts[0])
    return None


def read_records(keys: Keys, kvs: list[KeyValue], drops: RecordDrops | None = None) -> StoreRecords:
    """Every record in ``kvs`` (a range read of the cluster prefix), parsed; each skipped one
    also counted (and logged once) in ``drops`` when given (the agent's reads; the CLI shows
    ``skipped`` instead)."""
    out = StoreRecords()
    admin: dict[str, Any] = {}
    for kv in kvs:
        parts = kv.key.decode(errors="replace")[len(keys.root) :].split("/")
        if len(parts) == 2 and parts[0] == "nodes":
            out.registrations[parts[1]] = kv.mod_revision
        kind = _kind(parts)
        if kind is None:
            continue
        try:
            record = kind.read(kv.value)
        except Malformed as exc:
            out.skipped.append(Skipped(kv.key, kv.mod_revision, exc.reason))
            if drops is not None:
                drops.skip(kv.key, kv.mod_revision, exc.reason)
            continue
        _file(out, admin, parts, record)
    out.admin = replace(out.admin, **admin)
    return out


def _file(out: StoreRecords, admin: dict[str, Any], parts: list[str], record: Record) -> None:
    """Put one parsed record where it belongs in ``out`` (``admin``: by record name)."""
    section, name = parts[0], parts[1]
    if isinstance(record, Event):
        out.events.append(record)
    elif section == "admin":
        admin[name] = record
    elif isinstance(record, FencedRecord):
        out.fenced[name] = record
    elif isinstance(record, AssignRecord):
        out.assign[name] = record
    elif isinstance(record, SystemicRecord):
        out.systemic[name] = record
    elif isinstance(record, LbRecord):
        out.lb[name] = record
    elif isinstance(record, MembersRecord):
        out.members[name] = record
    elif isinstance(record, StatusRecord):
        out.status[(name, parts[2])] = record
    elif isinstance(record, FailCountRecord):
        out.failcounts[(name, parts[2])] = record
    elif isinstance(record, RequestRecord):
        out.requests[(name, parts[2])] = record


def states(spec: Spec, records: StoreRecords) -> dict[str, str]:
    """Every spec node's state as the store records it: ``online`` (registered), ``fenced``
    (its registration is the one a ``fenced/<node>`` record names: it was fenced and has not
    registered again) or ``offline`` (no registration: its lease expired)."""
    out = {}
    for node in spec.nodes:
        reg = records.registrations.get(node)
        fenced = records.fenced.get(node)
        if reg is None:
            out[node] = "offline"
        elif fenced is not None and fenced.revision == reg:
            out[node] = "fenced"
        else:
            out[node] = "online"
    return out


def node_states(spec: Spec, keys: Keys, kvs: list[KeyValue]) -> dict[str, str]:
    """:func:`states` of a range read of the cluster prefix."""
    return states(spec, read_records(keys, kvs))


def snapshot_from_kvs(
    spec: Spec,
    keys: Keys,
    kvs: list[KeyValue],
    now: float,
    lost: set[str] | None = None,
    fence_failed: set[str] | None = None,
    fencing: set[str] | None = None,
) -> Snapshot:
    """:func:`snapshot` of a range read of the cluster prefix."""
    return snapshot(spec, read_records(keys, kvs), now, lost, fence_failed, fencing)


def snapshot(
    spec: Spec,
    records: StoreRecords,
    now: float,
    lost: set[str] | None = None,
    fence_failed: set[str] | None = None,
    fencing: set[str] | None = None,
) -> Snapshot:
    """The scheduler's view of the cluster from one consistent read of the cluster prefix.

    Nodes with a key under ``nodes/`` are online; spec nodes without one are offline (their lease
    expired: safety rule 2 makes that safe, since agents self-fence before expiry). A node
    with a live lease that gossip holds dead (``lost``) is ``unclean``: what it ran may still
    run, so nothing exclusive moves before its lease expires or it is fenced. A registration
    named by a ``fenced/<node>`` record is offline (fenced); the node's next registration is
    online again. ``fence_failed`` nodes are unclean ones whose fence failed, ``fencing`` ones
    are being fenced: neither is fenced (again) by this plan. Records naming unknown nodes or
    resources, and skipped ones, are ignored.
    """
    state = states(spec, records)
    online = {n for n, s in state.items() if s == "online"}
    admin = records.admin
    return Snapshot(
        now=now,
        quorum=True,  # read through a linearizable range: the store has quorum
        nodes={
            n: NodeStatus(
                state=("unclean" if n in (lost or set()) else "online")
                if n in online
                else "offline",
                standby=n in admin.standby.nodes,
                fenced=state[n] == "fenced",
                fence_failed=n in (fence_failed or set()),
                fencing=n in (fencing or set()),
            )
            for n in spec.nodes
        },
        instances=tuple(_instances(spec, records, online)),
        failures={
            (res, node): FailCount(fc.count, fc.last_counted)
            for (node, res), fc in records.failcounts.items()
            if node in spec.nodes and res in spec.resources
        },
        maintenance=admin.maintenance.maintenance(),
        bans=admin.bans.pairs(),
        moves=dict(admin.moves.entries),
        tickets=dict(admin.tickets.entries),
    )


def _instances(spec: Spec, records: StoreRecords, online: set[str]) -> list[Instance]:
    """What runs on online nodes, as the scheduler reads the status records."""
    return [
        Instance(
            res,
            node,
            role="promoted" if inst.promoted else "started",
            health=inst.known_health,
            item=inst.item,
            score=inst.score,
        )
        for (node, res), status in records.status.items()
        if node in online and res in spec.resources
        for inst in status.instances
    ]
