"""Local reconcile: what one node must do to match its assignments (pure).

Input: the instances assigned to this node (``desired``: resource -> role), what runs here
(``running``), whether this node may start exclusive instances now (``may_hold_exclusive``: its
lease is fresh, DESIGN.md rule 1) and keep those it runs (``may_keep_exclusive``, default the
same: a proof that the store has no leader may keep them, :mod:`corral.core.quorum`), which
resources are exclusive, which are in maintenance here (rule 4), and the
resources' rank (start order). Output: actions in the order to run them: stops and demotes
first (reverse rank), then starts, restarts and promotes (rank order). An action is never
emitted for a resource in maintenance on this node.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass
from typing import Literal

LocalKind = Literal["start", "stop", "restart", "promote", "demote"]


@dataclass(frozen=True)
class LocalInstance:
    role: Literal["started", "promoted"] = "started"
    health: Literal["starting", "healthy", "unhealthy"] = "starting"
    failed: bool = False  # the service manager says it died


@dataclass(frozen=True)
class LocalAction:
    kind: LocalKind
    resource: str
    reason: str


def reconcile(
    desired: Mapping[str, str],
    running: Mapping[str, LocalInstance],
    *,
    may_hold_exclusive: bool,
    may_keep_exclusive: bool | None = None,
    exclusive: Set[str],
    frozen: Set[str] = frozenset(),
    rank: Mapping[str, int] | None = None,
) -> list[LocalAction]:
    keep = may_hold_exclusive if may_keep_exclusive is None else may_keep_exclusive
    order = rank or {}
    down: list[LocalAction] = []
    up: list[LocalAction] = []
    for res, inst in running.items():
        if res in frozen:
            continue
        if res not in desired:
            down.append(LocalAction("stop", res, "not assigned to this node"))
        elif res in exclusive and not keep:
            down.append(LocalAction("stop", res, "self-fence: the node lease is not fresh"))
        elif desired[res] != "promoted" and inst.role == "promoted":
            down.append(LocalAction("demote", res, "the promoted role is assigned elsewhere"))
    for res, role in desired.items():
        if res in frozen:
            continue
        have = running.get(res)
        if have is None:
            if res in exclusive and not may_hold_exclusive:
                continue  # rule 1: never start an exclusive instance without a fresh lease
            up.append(LocalAction("start", res, "assigned to this node"))
            if role == "promoted":
                up.append(LocalAction("promote", res, "assigned the promoted role"))
            continue
        if res in exclusive and not may_hold_exclusive:
            continue
        if have.failed:
            up.append(LocalAction("restart", res, "the service manager reports it failed"))
        elif have.health == "unhealthy":
            up.append(LocalAction("restart", res, "its health checks fail"))
        if role == "promoted" and have.role != "promoted":
            up.append(LocalAction("promote", res, "assigned the promoted role"))
    down.sort(key=lambda a: (-order.get(a.resource, 0), a.kind != "demote", a.resource))
    up.sort(key=lambda a: (order.get(a.resource, 0), a.kind == "promote", a.resource))
    return down + up
