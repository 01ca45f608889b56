"""What agents write about their own work, and what operators ask of one agent.

- ``failcounts/<node>/<resource>`` (:class:`FailCountRecord`): ``{"count", "last", "reason"}``
  (``last`` in wall-clock seconds; not leased: failures outlive a restart of the agent).
- ``requests/<node>/<resource>`` (:class:`RequestRecord`): ``{"action": "restart", "id"}``.
- ``lb/<node>`` (:class:`LbRecord`, under the node's lease): ``{"servers": {backend: {server:
  state}}}``: the server states that node's HAProxy applied.
- ``members/<node>`` (:class:`MembersRecord`, under the node's lease): ``{"view": [{"name",
  "state", "incarnation", "last_seen"}]}``: that node's gossip view.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from corral.records.codec import (
    Malformed,
    Record,
    nullable_str,
    objects,
    opt_int,
    opt_number,
    opt_str,
    req_str,
    string_map,
)


@dataclass(frozen=True)
class FailCountRecord(Record):
    """Failures of one resource on one node: how many, the last one's time and reason."""

    count: int = 0
    last: float = 0.0  # wall-clock seconds
    reason: str = ""

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> Self:
        count = opt_int(value, "count") or 0
        if count < 0:
            raise Malformed(f"count is negative: {count}")
        return cls(count, opt_number(value, "last") or 0.0, opt_str(value, "reason"))

    def to_value(self) -> dict[str, Any]:
        return {"count": self.count, "last": self.last, "reason": self.reason}

    def increment(self, now_wall: float, reason: str) -> FailCountRecord:
        """One more failure, at ``now_wall``, for ``reason``."""
        return FailCountRecord(self.count + 1, now_wall, reason)

    @classmethod
    def after(cls, raw: bytes | None, now_wall: float, reason: str) -> FailCountRecord:
        """The record to write for one more failure over ``raw`` (the stored value; None:
        none yet). A malformed stored value counts as none: the count starts again at 1 (a
        failure is never lost for want of a readable count)."""
        stored = cls.parse(raw) if raw is not None else None
        return (stored or cls()).increment(now_wall, reason)


@dataclass(frozen=True)
class RequestRecord(Record):
    """An operator's request to one agent. ``action`` is kept as written: the agent refuses
    what it does not know (only ``restart`` today); ``id`` tells two requests apart."""

    action: str
    id: str = ""

    RESTART = "restart"

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> Self:
        return cls(req_str(value, "action"), opt_str(value, "id"))

    def to_value(self) -> dict[str, Any]:
        return {"action": self.action, "id": self.id}

    @property
    def restart(self) -> bool:
        return self.action == self.RESTART


@dataclass(frozen=True)
class LbRecord(Record):
    """The server states one HAProxy applied: backend -> server -> state."""

    servers: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> Self:
        servers = value.get("servers", {})
        if not isinstance(servers, dict):
            raise Malformed(f"servers is not an object: {servers!r}"[:200])
        return cls({b: string_map(s, f"servers.{b}") for b, s in servers.items()})

    def to_value(self) -> dict[str, Any]:
        return {"servers": {b: dict(s) for b, s in self.servers.items()}}


@dataclass(frozen=True)
class MemberRow:
    """One member of a gossip view."""

    name: str
    state: str
    incarnation: int | None = None
    last_seen: float | None = None  # seconds ago, as the reporting agent saw it

    def to_value(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "incarnation": self.incarnation,
            "last_seen": self.last_seen,
        }


@dataclass(frozen=True)
class MembersRecord(Record):
    view: tuple[MemberRow, ...] = ()

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> Self:
        rows = []
        for row in objects(value, "view"):
            state = nullable_str(row, "state") or "unknown"
            since = opt_number(row, "last_seen")
            rows.append(MemberRow(req_str(row, "name"), state, opt_int(row, "incarnation"), since))
        return cls(tuple(rows))

    def to_value(self) -> dict[str, Any]:
        return {"view": [r.to_value() for r in self.view]}
