"""Scheduler input (a cluster snapshot) and output (a plan), as plain frozen data.

A *snapshot* is what the controller knows at one instant: node states, the resource instances
agents report, administrative state (maintenance, bans, moves, standby), quorum, tickets and
fencing results. A *plan* is the target placement of every instance, the actions that get there,
and a reason for every decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

NodeState = Literal["online", "unclean", "offline"]
"""``online``: live lease. ``unclean``: lost (gossip or lease) but its lease has not expired and
it was not fenced, so what ran there may still run. ``offline``: gone and safe: lease expired or
fenced (safety rule 2)."""

Role = Literal["started", "promoted"]
Health = Literal["healthy", "unhealthy", "unknown"]
ActionKind = Literal["fence", "stop", "demote", "move", "start", "restart", "promote"]


@dataclass(frozen=True)
class NodeStatus:
    state: NodeState = "online"
    standby: bool = False
    maintenance: bool = False
    fenced: bool = False  # an unclean node whose fence succeeded is offline
    fence_failed: bool = False  # its last fence failed: wait for its lease instead
    fencing: bool = False  # a fence of it is under way: wait for its outcome


@dataclass(frozen=True)
class Instance:
    """One observed (or planned) instance of a resource on a node.

    ``item`` names the member of a vip-set (its IP); ``score`` is the driver's promotion score
    (e.g. a Galera seqno); ``count`` is how many instances run there (max_per_node > 1).
    """

    resource: str
    node: str
    role: Role = "started"
    health: Health = "healthy"
    item: str | None = None
    score: int | None = None
    count: int = 1

    @property
    def key(self) -> str:
        item = f"[{self.item}]" if self.item else ""
        return f"{self.resource}{item}@{self.node}"


@dataclass(frozen=True)
class FailCount:
    count: int
    last: float  # time of the last failure, same clock as ``Snapshot.now``


@dataclass(frozen=True)
class Maintenance:
    """Maintenance at every level (safety rule 4). ``instances`` holds (resource, node)."""

    cluster: bool = False
    nodes: frozenset[str] = frozenset()
    resources: frozenset[str] = frozenset()
    instances: frozenset[tuple[str, str]] = frozenset()

    def covers(self, resource: str, node: str, node_status: NodeStatus | None = None) -> bool:
        return (
            self.cluster
            or node in self.nodes
            or resource in self.resources
            or (resource, node) in self.instances
            or (node_status is not None and node_status.maintenance)
        )


@dataclass(frozen=True)
class Snapshot:
    """What the controller knows now. Nodes of the spec missing from ``nodes`` are online."""

    now: float = 0.0
    quorum: bool = True
    nodes: dict[str, NodeStatus] = field(default_factory=dict)
    instances: tuple[Instance, ...] = ()
    failures: dict[tuple[str, str], FailCount] = field(default_factory=dict)
    maintenance: Maintenance = Maintenance()
    bans: frozenset[tuple[str, str]] = frozenset()
    moves: dict[str, str] = field(default_factory=dict)
    tickets: dict[str, str] = field(default_factory=dict)  # ticket -> site holding it
    wait_for_all: frozenset[str] = frozenset()  # promotable resources whose driver says so

    def node(self, name: str) -> NodeStatus:
        return self.nodes.get(name, NodeStatus())


@dataclass(frozen=True)
class Action:
    """One step of a plan. ``after`` lists the ids of actions that must finish first.

    ``move`` stops the instance on ``node`` and starts it on ``to``.
    """

    id: int
    kind: ActionKind
    resource: str
    node: str
    reason: str
    to: str | None = None
    item: str | None = None
    after: tuple[int, ...] = ()

    def __str__(self) -> str:
        what = self.resource + (f"[{self.item}]" if self.item else "")
        if self.kind == "fence":
            return f"fence {self.node}"
        if self.kind == "move":
            return f"move {what} {self.node} -> {self.to}"
        return f"{self.kind} {what} on {self.node}"


@dataclass(frozen=True)
class Score:
    """A node's score for a resource: ``None`` total = not allowed, with ``why``."""

    total: int | None
    parts: tuple[tuple[str, int], ...] = ()
    why: str = ""

    def __str__(self) -> str:
        if self.total is None:
            return f"-inf ({self.why})"
        detail = ", ".join(f"{label} {value:+d}" for label, value in self.parts if value)
        return f"{self.total}" + (f" ({detail})" if detail else "")


@dataclass
class Decision:
    """What the scheduler decided for one resource, and why."""

    resource: str
    target: list[Instance] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    why_leave: dict[str, str] = field(default_factory=dict)  # item ("" = whole) -> why it moves


@dataclass
class Plan:
    decisions: dict[str, Decision]
    actions: list[Action]
    notes: list[str] = field(default_factory=list)

    def target(self) -> list[Instance]:
        return [inst for d in self.decisions.values() for inst in d.target]
