"""The operator's views of a cluster as plain data, built from the records read from the
store: what ``corral status``/``events``/``members`` print (and their ``--json``), and what
the HTTP API answers (:mod:`corral.api`). One builder per view, shared by both."""

from __future__ import annotations

from typing import Any

from corral.records.agent import MemberRow, MembersRecord
from corral.records.events import Event
from corral.records.store import read_records, states
from corral.spec import Spec
from corral.store import Keys, KeyValue


def cluster_view(spec: Spec, keys: Keys, kvs: list[KeyValue]) -> dict[str, Any]:
    """Everything ``corral status`` shows, as plain data (also its ``--json``). Records that
    do not read are left out and named under ``skipped_records``."""
    records = read_records(keys, kvs)
    controller = next((kv for kv in kvs if kv.key == keys.controller), None)
    resources: dict[str, Any] = {}
    for name, res in spec.resources.items():
        assigned = records.assign.get(name)
        running = []
        for n in spec.nodes:
            status = records.status.get((n, name))
            running += [
                {"node": n, "item": i.item, "role": i.role, "health": i.health, "detail": i.detail}
                for i in (status.instances if status else ())
            ]
        fails = {n: fc.count for (n, r), fc in records.failcounts.items() if r == name}
        resources[name] = {
            "kind": res.kind,
            "mode": res.mode,
            "assigned": [i.node for i in assigned.instances] if assigned else [],
            "running": running,
            "failcounts": {n: fails[n] for n in spec.nodes if n in fails},
            "systemic": list(episode.nodes) if (episode := records.systemic.get(name)) else None,
        }
    backends: dict[str, dict[str, dict[str, str]]] = {}  # backend -> server -> lb -> state
    for lb, record in sorted(records.lb.items()):
        for backend, servers in record.servers.items():
            for server, state in servers.items():
                backends.setdefault(backend, {}).setdefault(server, {})[lb] = state
    return {
        "cluster": spec.cluster,
        "controller": controller.value.decode() if controller else None,
        "nodes": states(spec, records),  # a fenced registration is not online
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
