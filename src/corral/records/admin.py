"""The operators' records under ``admin/`` (written by ``corral maintenance|standby|ban|move``
with a compare-and-swap; read by the scheduler and the agents).

- ``admin/maintenance`` (:class:`MaintenanceRecord`): ``{"cluster": bool, "nodes": [...],
  "resources": [...], "instances": ["RES@NODE", ...]}``. Safety rule 4 rests on it, so it is
  read leniently, as always: a field that is not a list, entries that are not strings (or not
  ``RES@NODE``) and a ``cluster`` that is not ``true`` freeze nothing, and the rest of the
  record still holds (one bad entry must not lift every maintenance). Only a value that is
  not a JSON object is malformed (and freezes nothing). ``"set"`` says who set each entry and
  when (``{"node:n1": {"by": "alice", "at": 1700000000.0}, ...}``, targets ``cluster``,
  ``node:N``, ``resource:R``, ``instance:R@N``): shown to operators only, never read for
  safety; an entry without it (written by an older version, or by hand) shows no author.
- ``admin/standby`` (:class:`StandbyRecord`): ``{"nodes": [...]}``.
- ``admin/bans`` (:class:`BansRecord`): ``{"instances": ["RES@NODE", ...]}``.
- ``admin/moves`` (:class:`MovesRecord`): resource -> node, the map as the whole record
  (``{"web": "n2", "v": 1}``), so that agents of version 0 read it during an upgrade. Read as
  version 0 read it: entries whose value is not a string are left out (the version number
  among them). A resource called ``v`` is a string entry there: a record that moves it is
  written without a version (as version 0 wrote it; it reads the same). A newer version may
  not add string-valued fields to these maps (they would read as entries): it needs a new key.
- ``admin/tickets`` (:class:`TicketsRecord`): ticket -> site holding it, laid out as moves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from corral.core.ref import InstanceRef
from corral.core.scheduler import Maintenance
from corral.records.codec import Record, encode, strings


def pairs(texts: object) -> frozenset[tuple[str, str]]:
    """(resource, node) of every ``RES@NODE`` string in ``texts``; anything else is left out."""
    out = set()
    for text in texts if isinstance(texts, list | tuple) else []:
        ref = InstanceRef.parse(text)
        if ref is not None and ref.node is not None and ref.item is None:
            out.add((ref.resource, ref.node))
    return frozenset(out)


def _lenient(value: Mapping[str, Any], name: str) -> tuple[str, ...]:
    """The strings of a list field; anything else reads as no entry."""
    got = value.get(name)
    return tuple(v for v in got if isinstance(v, str)) if isinstance(got, list) else ()


def _authors(value: object) -> tuple[tuple[str, str, float], ...]:
    """The readable entries of a ``set`` map; anything else is left out."""
    if not isinstance(value, Mapping):
        return ()
    out = []
    for target, entry in value.items():
        if not isinstance(entry, Mapping) or not isinstance(entry.get("by"), str):
            continue
        at = entry.get("at")
        if isinstance(target, str) and isinstance(at, int | float) and not isinstance(at, bool):
            out.append((target, entry["by"], float(at)))
    return tuple(sorted(out))


@dataclass(frozen=True)
class MaintenanceRecord(Record):
    NAME: ClassVar[str] = "maintenance"
    cluster: bool = False
    nodes: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    instances: tuple[str, ...] = ()  # RES@NODE
    set_by: tuple[tuple[str, str, float], ...] = ()  # (target, by, at), sorted; shown only

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> Self:
        return cls(
            value.get("cluster") is True,
            _lenient(value, "nodes"),
            _lenient(value, "resources"),
            _lenient(value, "instances"),
            _authors(value.get("set")),
        )

    def to_value(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "nodes": list(self.nodes),
            "resources": list(self.resources),
            "instances": list(self.instances),
            "set": {t: {"by": by, "at": at} for t, by, at in self.set_by},
        }

    def author(self, target: str) -> tuple[str, float] | None:
        """(who, when) set ``target`` (``cluster``, ``node:N``, ...), if recorded."""
        return next(((by, at) for t, by, at in self.set_by if t == target), None)

    def maintenance(self) -> Maintenance:
        """What the record freezes, as the scheduler and the agents read it (one reading)."""
        return Maintenance(
            cluster=self.cluster,
            nodes=frozenset(self.nodes),
            resources=frozenset(self.resources),
            instances=pairs(self.instances),
        )


@dataclass(frozen=True)
class StandbyRecord(Record):
    NAME: ClassVar[str] = "standby"
    nodes: tuple[str, ...] = ()

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> Self:
        return cls(strings(value, "nodes"))

    def to_value(self) -> dict[str, Any]:
        return {"nodes": list(self.nodes)}


@dataclass(frozen=True)
class BansRecord(Record):
    NAME: ClassVar[str] = "bans"
    instances: tuple[str, ...] = ()  # RES@NODE

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> Self:
        return cls(strings(value, "instances"))

    def to_value(self) -> dict[str, Any]:
        return {"instances": list(self.instances)}

    def pairs(self) -> frozenset[tuple[str, str]]:
        """(resource, node) of every ban that names an instance."""
        return pairs(self.instances)


@dataclass(frozen=True)
class _NameMap(Record):
    """A name -> name map as the whole record (see the module docstring)."""

    NAME: ClassVar[str] = ""
    VERSIONED_BY_FIELD: ClassVar[bool] = False  # a "v" that is a string is an entry
    entries: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> Self:
        return cls({k: v for k, v in value.items() if isinstance(v, str)})

    def to_value(self) -> dict[str, Any]:
        return dict(self.entries)

    def dump(self) -> bytes:
        if "v" in self.entries:  # an entry named v: no room for the version (reads the same)
            return encode(self.to_value())
        return super().dump()


@dataclass(frozen=True)
class MovesRecord(_NameMap):
    NAME: ClassVar[str] = "moves"


@dataclass(frozen=True)
class TicketsRecord(_NameMap):
    NAME: ClassVar[str] = "tickets"


@dataclass(frozen=True)
class AdminRecords:
    """Every ``admin/`` record as read (a missing or malformed one reads as empty)."""

    maintenance: MaintenanceRecord = MaintenanceRecord()
    standby: StandbyRecord = StandbyRecord()
    bans: BansRecord = BansRecord()
    moves: MovesRecord = MovesRecord()
    tickets: TicketsRecord = TicketsRecord()
