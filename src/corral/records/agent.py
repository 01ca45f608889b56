"""What agents write about their own work, and what operators ask of one agent.

- ``failcounts/<node>/<resource>`` (:class:`FailCountRecord`): ``{"count", "last", "reason",
  "recent", "systemic", "counted_before"}`` (times in wall-clock seconds; not leased: failures
  outlive a restart of the agent). ``count`` is the failures counted toward the failure
  policy; ``recent`` lists the last :data:`RECENT` failures (``{"at", "systemic"}``) so that
  the controller can judge systemic failures (:mod:`corral.core.systemic`) and move them out
  of ``count`` into ``systemic``. The agent adds failures, the controller only moves them;
  each writes with a compare-and-swap, so neither undoes the other.
- ``requests/<node>/<resource>`` (:class:`RequestRecord`): ``{"action": "restart", "id"}``.
- ``lb/<node>`` (:class:`LbRecord`, under the node's lease): ``{"servers": {backend: {server:
  state}}}``: the server states that node's HAProxy applied.
- ``members/<node>`` (:class:`MembersRecord`, under the node's lease): ``{"view": [{"name",
  "state", "incarnation", "last_seen"}]}``: that node's gossip view.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Self

from corral.records.codec import (
    Malformed,
    Record,
    nullable_str,
    objects,
    opt_bool,
    opt_int,
    opt_number,
    opt_str,
    req_number,
    req_str,
    string_map,
)

RECENT = 16  # failures listed per record: more than fail within any sane window (backoff)


@dataclass(frozen=True)
class RecentFailure:
    """One listed failure: when (wall seconds), and whether it was judged systemic."""

    at: float
    systemic: bool = False


@dataclass(frozen=True)
class FailCountRecord(Record):
    """Failures of one resource on one node. ``count``: those counted toward the failure
    policy; ``last``: the last failure's time (any kind) and ``reason`` its reason;
    ``recent``: the last :data:`RECENT` failures, oldest first; ``systemic``: how many were
    judged systemic (not in ``count``); ``counted_before``: the newest counted failure no
    longer listed (so that :attr:`last_counted` survives a systemic failure that was the last
    counted one). A record written before ``recent`` existed lists nothing: all it counted
    stays counted, as before."""

    count: int = 0
    last: float = 0.0  # wall-clock seconds
    reason: str = ""
    recent: tuple[RecentFailure, ...] = ()
    systemic: int = 0
    counted_before: float = 0.0

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> Self:
        count = opt_int(value, "count") or 0
        systemic = opt_int(value, "systemic") or 0
        for name, got in (("count", count), ("systemic", systemic)):
            if got < 0:
                raise Malformed(f"{name} is negative: {got}")
        last = opt_number(value, "last") or 0.0
        rows = objects(value, "recent")
        try:
            recent = tuple(
                RecentFailure(req_number(row, "at"), opt_bool(row, "systemic")) for row in rows
            )
        except Malformed as exc:
            raise Malformed(f"recent: {exc.reason}") from None
        before = opt_number(value, "counted_before")
        return cls(
            count,
            last,
            opt_str(value, "reason"),
            recent,
            systemic,
            last if before is None else before,  # before recent: all it counted is counted
        )

    def to_value(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "last": self.last,
            "reason": self.reason,
            "recent": [{"at": r.at, "systemic": r.systemic} for r in self.recent],
            "systemic": self.systemic,
            "counted_before": self.counted_before,
        }

    @property
    def last_counted(self) -> float:
        """The time of the last counted failure (what a ban's ``failure_timeout`` runs from)."""
        counted = [r.at for r in self.recent if not r.systemic]
        return max([self.counted_before, *counted])

    def increment(self, now_wall: float, reason: str) -> FailCountRecord:
        """One more failure, at ``now_wall``, for ``reason``: counted (the controller may
        judge it systemic later) and listed; the oldest listed one goes past :data:`RECENT`."""
        listed = (*self.recent, RecentFailure(now_wall))
        dropped, kept = listed[:-RECENT], listed[-RECENT:]
        before = max([self.counted_before, *(r.at for r in dropped if not r.systemic)])
        return replace(
            self,
            count=self.count + 1,
            last=now_wall,
            reason=reason,
            recent=kept,
            counted_before=before,
        )

    def excuse(self, times: Collection[float]) -> FailCountRecord:
        """The listed failures at ``times`` judged systemic: moved out of ``count`` into
        ``systemic`` (those judged so already, or not listed, are left as they are)."""
        moved = [r for r in self.recent if r.at in times and not r.systemic]
        if not moved:
            return self
        recent = tuple(RecentFailure(r.at, r.systemic or r.at in times) for r in self.recent)
        return replace(
            self,
            count=max(0, self.count - len(moved)),
            recent=recent,
            systemic=self.systemic + len(moved),
        )

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
