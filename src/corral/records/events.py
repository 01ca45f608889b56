"""``events/<time_ns>-<node>`` (:class:`Event`): ``{"time", "node", "resource", "kind",
"reason"[, "target"]}``, the bounded event log (``corral events``). ``time`` is wall-clock seconds;
``target``: the node an event is about when it is not the writer's (a fence), else absent."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from corral.records.codec import Record, opt_number, opt_str


@dataclass(frozen=True)
class Event(Record):
    time: float
    node: str
    resource: str
    kind: str
    reason: str
    target: str = field(default="", kw_only=True)  # kw: subclasses add positional fields

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> Self:
        return cls(
            opt_number(value, "time") or 0.0,
            opt_str(value, "node"),
            opt_str(value, "resource"),
            opt_str(value, "kind"),
            opt_str(value, "reason"),
            target=opt_str(value, "target"),
        )

    def to_value(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "node": self.node,
            "resource": self.resource,
            "kind": self.kind,
            "reason": self.reason,
        } | ({"target": self.target} if self.target else {})
