"""The operator's views of a cluster as plain data, built from the records read from the
store: what ``corral status``/``events``/``members`` print (and their ``--json``), and what
the HTTP API answers (:mod:`corral.api`). One builder per view, shared by both.

Every JSON view carries ``schema`` (:data:`SCHEMAS`: ``corral.<view>/<version>``; the version
goes up when a field changes meaning or goes away, not when one is added). Maintenance
(:func:`maintenance_view`, :func:`covering`) is marked on every row it covers: the cluster's
``maintenance`` section (each level, who set it and when), ``node_maintenance`` (per node), and
``maintenance`` on each resource and on each running instance (the most specific level that
covers it: instance, node, resource, cluster)."""

from __future__ import annotations

import time
from typing import Any

from corral.records.admin import MaintenanceRecord
from corral.records.agent import MemberRow, MembersRecord
from corral.records.events import Event
from corral.records.store import read_records, states
from corral.spec import Spec
from corral.store import Keys, KeyValue

SCHEMAS = {
    "status": "corral.status/2",  # 2: maintenance marks
    "event": "corral.event/1",
    "members": "corral.members/1",
    "explain": "corral.explain/1",
    "simulate": "corral.simulate/1",
    "validate": "corral.validate/1",
}


def _mark(record: MaintenanceRecord, level: str, target: str) -> dict[str, Any]:
    by, at = record.author(target) or (None, None)
    return {"level": level, "by": by, "at": at}


def covering(
    record: MaintenanceRecord, node: str | None = None, resource: str | None = None
) -> dict[str, Any] | None:
    """The most specific maintenance that covers ``node``, ``resource`` or the pair (None: no
    maintenance covers it): ``{"level", "by", "at"}``."""
    if node and resource and f"{resource}@{node}" in record.instances:
        return _mark(record, "instance", f"instance:{resource}@{node}")
    if node and node in record.nodes:
        return _mark(record, "node", f"node:{node}")
    if resource and resource in record.resources:
        return _mark(record, "resource", f"resource:{resource}")
    return _mark(record, "cluster", "cluster") if record.cluster else None


def maintenance_view(record: MaintenanceRecord) -> dict[str, Any]:
    """Every maintenance entry, by level, with who set it and when."""
    return {
        "cluster": _mark(record, "cluster", "cluster") if record.cluster else None,
        "nodes": {n: _mark(record, "node", f"node:{n}") for n in record.nodes},
        "resources": {r: _mark(record, "resource", f"resource:{r}") for r in record.resources},
        "instances": {i: _mark(record, "instance", f"instance:{i}") for i in record.instances},
    }


def maintenance_lines(section: dict[str, Any]) -> list[str]:
    """One line per maintenance entry of :func:`maintenance_view`'s ``section``, for the
    text views: ``maintenance node n1 (alice, 2026-12-03 17:05:01)``."""

    def who(mark: dict[str, Any]) -> str:
        if mark.get("by") is None:
            return "(set by an unknown hand)"
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(mark["at"]))
        return f"({mark['by']}, {when})"

    lines = [f"maintenance cluster {who(section['cluster'])}"] if section["cluster"] else []
    for level in ("nodes", "resources", "instances"):
        lines += [f"maintenance {level[:-1]} {t} {who(m)}" for t, m in section[level].items()]
    return lines


def cluster_view(spec: Spec, keys: Keys, kvs: list[KeyValue]) -> dict[str, Any]:
    """Everything ``corral status`` shows, as plain data (also its ``--json``). Records that
    do not read are left out and named under ``skipped_records``."""
    records = read_records(keys, kvs)
    maint = records.admin.maintenance
    controller = next((kv for kv in kvs if kv.key == keys.controller), None)
    resources: dict[str, Any] = {}
    for name, res in spec.resources.items():
        assigned = records.assign.get(name)
        running = []
        for n in spec.nodes:
            status = records.status.get((n, name))
            running += [
                {"node": n, "item": i.item, "role": i.role, "health": i.health, "detail": i.detail,
                 "maintenance": covering(maint, n, name)}
                for i in (status.instances if status else ())
            ]  # fmt: skip
        fails = {n: fc.count for (n, r), fc in records.failcounts.items() if r == name}
        resources[name] = {
            "kind": res.kind,
            "mode": res.mode,
            "assigned": [i.node for i in assigned.instances] if assigned else [],
            "running": running,
            "failcounts": {n: fails[n] for n in spec.nodes if n in fails},
            "systemic": list(episode.nodes) if (episode := records.systemic.get(name)) else None,
            "maintenance": covering(maint, resource=name),
        }
    backends: dict[str, dict[str, dict[str, str]]] = {}  # backend -> server -> lb -> state
    for lb, record in sorted(records.lb.items()):
        for backend, servers in record.servers.items():
            for server, state in servers.items():
                backends.setdefault(backend, {}).setdefault(server, {})[lb] = state
    return {
        "schema": SCHEMAS["status"],
        "cluster": spec.cluster,
        "controller": controller.value.decode() if controller else None,
        "nodes": states(spec, records),  # a fenced registration is not online
        "node_maintenance": {n: covering(maint, node=n) for n in spec.nodes},
        "maintenance": maintenance_view(maint),
        "resources": resources,
        "backends": backends,
        "last_events": [e.to_value() for e in records.events[-10:]],
        "skipped_records": [str(s) for s in records.skipped],
    }


def events_of(keys: Keys, kvs: list[KeyValue], last: int) -> list[Event]:
    """The ``last`` newest events that read (oldest first)."""
    prefix = keys.event_prefix()
    found = [kv for kv in kvs if kv.key.startswith(prefix)][-last:] if last > 0 else []
    return [e for kv in found if (e := Event.parse(kv.value)) is not None]


def members_of(keys: Keys, kvs: list[KeyValue]) -> dict[str, tuple[MemberRow, ...]]:
    """Reporting agent -> its gossip view (members, state, incarnation, last seen)."""
    prefix = keys.prefix("members")
    return {
        kv.key.decode(errors="replace").rsplit("/", 1)[-1]: record.view
        for kv in kvs
        if kv.key.startswith(prefix) and (record := MembersRecord.parse(kv.value)) is not None
    }
