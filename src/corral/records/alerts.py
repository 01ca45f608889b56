"""The alert records (``alerts/``), see :mod:`corral.core.alerts` and ``docs/safety-rules.md``
("Alerts"):

- ``alerts/cursor`` (:class:`AlertCursor`): ``{"revision"}``, the store revision up to which
  events were turned into duties; only the controller moves it, in the transaction that
  writes the duties (with its fencing token).
- ``alerts/duty/<sink>/<event>`` (:class:`DutyRecord`): one delivery owed, ``{"owner", "reg",
  "event", "tried", "next_at", "created", "error"}``: ``owner`` holds it while its
  registration ``reg`` (the mod revision of ``nodes/<owner>``) is the live one (rule 6);
  ``event`` is the event record's value, so a takeover needs no event that was trimmed since.
- ``alerts/log/<sink>/<event>`` (:class:`DeliveryRecord`): ``{"status", "tried", "latency",
  "at", "by", "error", "kind", "node", "resource"}``, a delivery done (``delivered``) or given
  up (``failed``); the last :data:`KEEP_LOG` are kept.
- ``alerts/nodes`` (:class:`NodeStates`): ``{"states": {node: state}}``, each node's state as
  the controller's ``node`` events last said it; written by the controller only, in the
  fenced transaction that holds those events.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

from corral.core.alerts import Facts
from corral.records.codec import Malformed, Record, opt_number, opt_str, req_int, req_str
from corral.records.events import Event
from corral.store import Compare, Delete, Keys, KeyValue, Op, Put

KEEP_LOG = 200


@dataclass(frozen=True)
class AlertCursor(Record):
    revision: int

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> Self:
        return cls(req_int(value, "revision"))

    def to_value(self) -> dict[str, Any]:
        return {"revision": self.revision}


@dataclass(frozen=True)
class NodeStates(Record):
    states: dict[str, str]

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> Self:
        states = value.get("states")
        if not isinstance(states, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in states.items()
        ):
            raise Malformed("states: expected an object of node -> state")
        return cls(dict(states))

    def to_value(self) -> dict[str, Any]:
        return {"states": dict(sorted(self.states.items()))}


def facts_of(event: Event) -> Facts:
    return Facts(event.kind, event.node, event.resource, event.reason, event.time, event.target)


@dataclass(frozen=True)
class DutyRecord(Record):
    owner: str
    reg: int
    event: Event
    tried: int = 0
    next_at: float = 0.0
    created: float = 0.0
    error: str = ""

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> Self:
        event = value.get("event")
        if not isinstance(event, dict):
            raise Malformed("event is not an object")
        return cls(
            req_str(value, "owner"),
            req_int(value, "reg"),
            Event.from_value(event),
            req_int(value, "tried"),
            opt_number(value, "next_at") or 0.0,
            opt_number(value, "created") or 0.0,
            opt_str(value, "error"),
        )

    def to_value(self) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "reg": self.reg,
            "event": self.event.to_value(),
            "tried": self.tried,
            "next_at": self.next_at,
            "created": self.created,
            "error": self.error,
        }


@dataclass(frozen=True)
class DeliveryRecord(Record):
    status: str  # delivered | failed
    tried: int
    latency: float  # seconds from the event's time to the delivery (or the last try)
    at: float
    by: str
    error: str = ""
    kind: str = ""
    node: str = ""
    resource: str = ""

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> Self:
        return cls(
            req_str(value, "status"),
            req_int(value, "tried"),
            opt_number(value, "latency") or 0.0,
            opt_number(value, "at") or 0.0,
            opt_str(value, "by"),
            opt_str(value, "error"),
            opt_str(value, "kind"),
            opt_str(value, "node"),
            opt_str(value, "resource"),
        )

    def to_value(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "tried": self.tried,
            "latency": self.latency,
            "at": self.at,
            "by": self.by,
            "error": self.error,
            "kind": self.kind,
            "node": self.node,
            "resource": self.resource,
        }


@dataclass(frozen=True)
class DutyRow:
    """A duty as read: its sink, event id, key, mod revision and record."""

    sink: str
    event_id: str
    key: bytes
    mod_revision: int
    duty: DutyRecord


@dataclass(frozen=True)
class AlertState:
    """What the alert loop reads (from the watch's copy of the cluster prefix)."""

    cursor: AlertCursor | None
    cursor_revision: int  # mod revision of alerts/cursor (0: absent)
    duties: tuple[DutyRow, ...]
    registrations: dict[str, int]  # node -> mod revision of nodes/<node>
    events: tuple[tuple[str, int, Event], ...]  # (event id, create revision, event), key order
    logs: tuple[bytes, ...]  # alerts/log/ keys, in key order


def read_alert_state(keys: Keys, kvs: Iterable[KeyValue]) -> AlertState:
    """The alert records, registrations and the events created after the cursor among
    ``kvs`` (the older ones are not parsed: a wake costs what is new; malformed records
    skipped and counted, :meth:`Record.parse_kv`)."""
    kvs = list(kvs)
    cursor_kv = next((kv for kv in kvs if kv.key == keys.alert_cursor), None)
    cursor = AlertCursor.parse_kv(cursor_kv) if cursor_kv is not None else None
    after = cursor.revision if cursor is not None else 0
    root = keys.root_prefix
    duty_prefix, log_prefix = root + b"alerts/duty/", root + b"alerts/log/"
    nodes, events_prefix = keys.nodes(), keys.event_prefix()
    cursor_rev = cursor_kv.mod_revision if cursor_kv is not None else 0
    duties, regs, events, logs = [], {}, [], []
    for kv in kvs:
        if kv.key.startswith(duty_prefix):
            sink, _, event_id = kv.key[len(duty_prefix) :].decode(errors="replace").partition("/")
            duty = DutyRecord.parse_kv(kv)
            if duty is not None and event_id:
                duties.append(DutyRow(sink, event_id, kv.key, kv.mod_revision, duty))
        elif kv.key.startswith(log_prefix):
            logs.append(kv.key)
        elif kv.key.startswith(nodes):
            regs[kv.key[len(nodes) :].decode(errors="replace")] = kv.mod_revision
        elif kv.key.startswith(events_prefix) and kv.create_revision > after:
            event = Event.parse_kv(kv)
            if event is not None:
                event_id = kv.key[len(events_prefix) :].decode(errors="replace")
                events.append((event_id, kv.create_revision, event))
    return AlertState(cursor, cursor_rev, tuple(duties), regs, tuple(events), tuple(logs))


def read_deliveries(keys: Keys, kvs: Iterable[KeyValue]) -> list[tuple[str, str, DeliveryRecord]]:
    """``(sink, event id, record)`` of every ``alerts/log/`` record, oldest event first."""
    prefix, out = keys.root_prefix + b"alerts/log/", []
    for kv in kvs:
        if kv.key.startswith(prefix):
            sink, _, event_id = kv.key[len(prefix) :].decode(errors="replace").partition("/")
            record = DeliveryRecord.parse_kv(kv)
            if record is not None:
                out.append((sink, event_id, record))
    return sorted(out, key=lambda row: (row[1], row[0]))


# --- the transactions (rule 6: every change of a duty compares what it was read as) -----------


def create_txn(
    keys: Keys,
    token_guard: Compare,
    state: AlertState,
    new: Sequence[tuple[str, str, DutyRecord]],
    up_to: int,
    trim: Sequence[bytes],
) -> tuple[list[Compare], list[Op]]:
    """The controller's one write of new duties: its fencing token held (``token_guard``),
    the cursor as read; the duties, the cursor moved to ``up_to`` and the oldest logs
    trimmed."""
    cursor = keys.alert_cursor
    compares = [token_guard, Compare.unchanged_since(cursor, state.cursor_revision)]
    ops: list[Op] = [Put(keys.alert_duty(s, e), d.dump()) for s, e, d in new]
    ops += [Put(cursor, AlertCursor(up_to).dump()), *(Delete(k) for k in trim)]
    return compares, ops


def owner_guard(keys: Keys, row: DutyRow, node: str, reg: int) -> list[Compare]:
    """The duty is as read and ``node`` still runs under registration ``reg``."""
    return [
        Compare.unchanged_since(row.key, row.mod_revision),
        Compare(keys.node(node), "mod_revision", "==", reg),
    ]


def settle_ops(keys: Keys, row: DutyRow, record: DeliveryRecord) -> list[Op]:
    """A delivery done or given up: the duty goes, its log record comes."""
    return [Delete(row.key), Put(keys.alert_log(row.sink, row.event_id), record.dump())]


def alert_rows(keys: Keys, kvs: Sequence[KeyValue], last: int) -> list[dict[str, Any]]:
    """``corral alerts log`` and ``/v1/alerts``: the ``last`` newest deliveries (done or given
    up) and every pending one, oldest event first."""
    rows = (
        [{"sink": s, "event": e, **r.to_value()} for s, e, r in read_deliveries(keys, kvs)][-last:]
        if last > 0
        else []
    )
    for row in read_alert_state(keys, kvs).duties:
        d = row.duty
        rows.append({
            "sink": row.sink, "event": row.event_id, "status": "pending", "tried": d.tried,
            "latency": None, "at": d.next_at, "by": d.owner, "error": d.error,
            "kind": d.event.kind, "node": d.event.target or d.event.node,
            "resource": d.event.resource,
        })  # fmt: skip
    return sorted(rows, key=lambda r: (str(r["event"]), str(r["sink"])))
