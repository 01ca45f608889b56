"""What one node's Galera state is, as read from its data directory (pure data).

Filled by :mod:`corral.core.galera.files` (the parsers) and read by the decisions in this
package. ``seqno`` -1 means unknown (a crash, or a running server)."""

from __future__ import annotations

from dataclasses import dataclass

NIL_UUID = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True)
class Position:
    """A point in a cluster's history: the cluster state UUID and the last committed seqno."""

    uuid: str
    seqno: int


@dataclass(frozen=True)
class GraState:
    """grastate.dat: the saved position and whether this node may bootstrap alone."""

    position: Position
    safe_to_bootstrap: bool


@dataclass(frozen=True)
class SavedView:
    """gvwstate.dat: the last primary component this node saw (pc.recovery's input)."""

    my_uuid: str
    view_id: str
    members: frozenset[str]


@dataclass(frozen=True)
class NodeState:
    """One node's report. ``grastate`` None: no grastate.dat (a fresh node). ``recovered``:
    the position from ``--wsrep-recover`` (asked when grastate's seqno is -1). ``running``:
    mariadbd runs on the node now (its files may then be stale)."""

    node: str
    grastate: GraState | None
    recovered: Position | None
    view: SavedView | None
    running: bool
