"""The records of who is online and what runs where: registrations, fences, status, assign.

- ``nodes/<node>`` (:class:`RegistrationRecord`, under the node's lease): ``{"address", "pid",
  "since"}``. A node is registered by the key's presence; its mod revision names the
  registration. The value is for people: readers never decide on it.
- ``fenced/<node>`` (:class:`FencedRecord`): ``{"revision", "time", "device"}``: the registration
  (mod revision of ``nodes/<node>``) a fence agent switched off; that registration is offline.
- ``status/<node>/<resource>`` (:class:`StatusRecord`, under the node's lease): ``{"instances":
  [{"item", "role", "health", "detail", "score"}]}``: what runs there now.
- ``assign/<resource>`` (:class:`AssignRecord`, written by the controller only): ``{"instances":
  [{"node", "role", "item", "reg"}]}``; ``reg`` is the registration the instance is for.
- ``systemic/<resource>`` (:class:`SystemicRecord`, written by the controller only): ``{"since",
  "nodes", "size"}``: a systemic episode of the resource (:mod:`corral.core.systemic`) that was
  announced; it goes, with one more event, when the episode ends.

Status and assign records say what runs and what is asked to run, so their entries are read
as version 0 read them, one by one: a status entry with a field of the wrong type still counts
as a running instance (the field at its default: health ``unknown``), an assign entry without a
node name is dropped; the rest of the record holds. Hiding all that runs on a node for one bad
field could move an exclusive instance that still runs. Only a record that is not a JSON
object, or whose ``instances`` is not a list, is malformed as a whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from corral.core.scheduler.model import Health
from corral.core.systemic import Episode
from corral.records.codec import (
    Malformed,
    Record,
    nullable_str,
    opt_int,
    opt_number,
    opt_str,
    req_int,
    req_number,
    strings,
)


def _entries(value: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The objects of ``instances`` (absent: none); entries that are not objects are left out."""
    got = value.get("instances")
    if got is not None and not isinstance(got, list):
        raise Malformed(f"instances is not a list: {got!r}"[:200])
    return [i for i in got or [] if isinstance(i, dict)]


def _text(value: Mapping[str, Any], name: str, default: str) -> str:
    got = value.get(name)
    return got if isinstance(got, str) else default


def _maybe_text(value: Mapping[str, Any], name: str) -> str | None:
    got = value.get(name)
    return got if isinstance(got, str) else None


def _maybe_int(value: Mapping[str, Any], name: str) -> int | None:
    got = value.get(name)
    return got if isinstance(got, int) and not isinstance(got, bool) else None


@dataclass(frozen=True)
class RegistrationRecord(Record):
    """``nodes/<node>``: every field optional (tests and old agents wrote ``{}``)."""

    address: str | None = None
    pid: int | None = None
    since: float | None = None  # wall-clock seconds

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> Self:
        return cls(
            nullable_str(value, "address"), opt_int(value, "pid"), opt_number(value, "since")
        )

    def to_value(self) -> dict[str, Any]:
        return {"address": self.address, "pid": self.pid, "since": self.since}


@dataclass(frozen=True)
class FencedRecord(Record):
    """``fenced/<node>``: ``revision`` (required) is the fenced registration."""

    revision: int
    time: float | None = None  # wall-clock seconds, for people
    device: str = ""

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> Self:
        return cls(req_int(value, "revision"), opt_number(value, "time"), opt_str(value, "device"))

    def to_value(self) -> dict[str, Any]:
        return {"revision": self.revision, "time": self.time, "device": self.device}


@dataclass(frozen=True)
class SystemicRecord(Record):
    """``systemic/<resource>``: the announced systemic episode (``since``: its first failure,
    wall seconds; ``nodes`` it failed on, of ``size``)."""

    since: float
    nodes: tuple[str, ...] = ()
    size: int = 0

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> Self:
        return cls(req_number(value, "since"), strings(value, "nodes"), opt_int(value, "size") or 0)

    def to_value(self) -> dict[str, Any]:
        return {"since": self.since, "nodes": list(self.nodes), "size": self.size}

    @property
    def episode(self) -> Episode:
        return Episode(self.since, self.nodes, self.size)

    @classmethod
    def of(cls, episode: Episode) -> SystemicRecord:
        return cls(episode.since, episode.nodes, episode.size)


@dataclass(frozen=True)
class StatusInstance:
    """One instance a node reports. ``role`` and ``health`` are kept as written (the CLI shows
    them); :meth:`promoted` and :meth:`known_health` are how the scheduler reads them."""

    role: str = "started"
    health: str = "unknown"
    detail: str = ""
    item: str | None = None
    score: int | None = None  # a promotion score (promotable resources), when reported

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> StatusInstance:
        return cls(
            _text(value, "role", "started"),
            _text(value, "health", "unknown"),
            _text(value, "detail", ""),
            _maybe_text(value, "item"),
            _maybe_int(value, "score"),
        )

    def to_value(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "role": self.role,
            "health": self.health,
            "detail": self.detail,
            "item": self.item,
        }
        if self.score is not None:  # written only when reported, as before
            out["score"] = self.score
        return out

    @property
    def promoted(self) -> bool:
        return self.role == "promoted"

    @property
    def known_health(self) -> Health:
        """``healthy``, ``unhealthy`` or ``unknown`` (any other word)."""
        if self.health == "healthy":
            return "healthy"
        return "unhealthy" if self.health == "unhealthy" else "unknown"


@dataclass(frozen=True)
class StatusRecord(Record):
    """``status/<node>/<resource>``: the instances of the resource running on the node."""

    instances: tuple[StatusInstance, ...] = ()

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> Self:
        return cls(tuple(StatusInstance.from_value(i) for i in _entries(value)))

    def to_value(self) -> dict[str, Any]:
        return {"instances": [i.to_value() for i in self.instances]}


@dataclass(frozen=True)
class AssignedInstance:
    """One instance of an ``assign/<resource>`` record. ``reg``: the registration of ``node``
    (the mod revision of its ``nodes/<node>`` key) the controller assigned it to; None in a
    record that does not say (written by an older controller, or for an unregistered node)."""

    node: str
    role: str = "started"
    item: str | None = None
    reg: int | None = None

    def to_value(self) -> dict[str, Any]:
        return {"node": self.node, "role": self.role, "item": self.item, "reg": self.reg}


@dataclass(frozen=True)
class AssignRecord(Record):
    """``assign/<resource>``: where the controller places the resource's instances."""

    instances: tuple[AssignedInstance, ...] = ()

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> Self:
        return cls(
            tuple(
                AssignedInstance(
                    i["node"],
                    str(i.get("role", "started")),
                    _maybe_text(i, "item"),
                    _maybe_int(i, "reg"),
                )
                for i in _entries(value)
                if isinstance(i.get("node"), str)
            )
        )

    def to_value(self) -> dict[str, Any]:
        return {"instances": [i.to_value() for i in self.instances]}

    @property
    def nodes(self) -> list[str]:
        """The nodes assigned, in the record's order, each once."""
        return list(dict.fromkeys(i.node for i in self.instances))
