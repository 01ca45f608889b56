"""Local reconcile: what one node must do to match its assignments (pure).

Input: the instances assigned to this node (``desired``: resource -> role), what runs here
(``running``), whether this node may start exclusive instances now (``may_hold_exclusive``: its
lease is fresh, safety rule 1) and keep those it runs (``may_keep_exclusive``, default the
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

from corral.core.agent.effects import Why

LocalKind = Literal["start", "stop", "restart", "promote", "demote"]


@dataclass(frozen=True)
class LocalInstance:
    role: Literal["started", "promoted"] = "started"
    health: Literal["starting", "healthy", "unhealthy"] = "starting"
    failed: bool = False  # the service manager says it died


@dataclass(frozen=True)
class LocalAction:
    """``why.drain``: a stop that may first take the instance out of the load balancers (the
    controller moved it): not a self-fence, which must not wait."""

    kind: LocalKind
    resource: str
    why: Why

    @property
    def reason(self) -> str:
        return self.why.text


def reconcile(
    desired: Mapping[str, str],
    running: Mapping[str, LocalInstance],
    *,
    may_hold_exclusive: bool,
    may_keep_exclusive: bool | None = None,
    exclusive: Set[str],
    guarded: Set[str] | None = None,
    frozen: Set[str] = frozenset(),
    rank: Mapping[str, int] | None = None,
) -> list[LocalAction]:
    """``guarded``: the exclusive instances whose keeping rule 1 holds to the lease (default:
    all; a joined Galera member is not, rule 1g); starts and promotes need
    ``may_hold_exclusive`` for every exclusive one."""
    keep = may_hold_exclusive if may_keep_exclusive is None else may_keep_exclusive
    held = exclusive if guarded is None else guarded
    order = rank or {}
    down = [
        action
        for res, inst in running.items()
        if res not in frozen
        and (action := _down(res, inst, desired.get(res), res in held and not keep))
    ]
    up = [
        action
        for res, role in desired.items()
        if res not in frozen and not (res in exclusive and not may_hold_exclusive)
        # rule 1: nothing exclusive is started, restarted or promoted without a fresh lease
        for action in _up(res, role, running.get(res))
    ]
    down.sort(key=lambda a: (-order.get(a.resource, 0), a.kind != "demote", a.resource))
    up.sort(key=lambda a: (order.get(a.resource, 0), a.kind == "promote", a.resource))
    return down + up


def _down(res: str, inst: LocalInstance, role: str | None, fenced: bool) -> LocalAction | None:
    """The stop or demote a running instance needs (``role``: what it is assigned, None if
    nothing; ``fenced``: it is exclusive and may not be kept)."""
    if role is None:
        return LocalAction("stop", res, Why.NOT_ASSIGNED)
    if fenced:
        return LocalAction("stop", res, Why.SELF_FENCE)
    if role != "promoted" and inst.role == "promoted":
        return LocalAction("demote", res, Why.PROMOTED_ELSEWHERE)
    return None


def _up(res: str, role: str, have: LocalInstance | None) -> list[LocalAction]:
    """The start, restart and promote an assigned instance needs."""
    out: list[LocalAction] = []
    if have is None:
        out.append(LocalAction("start", res, Why.ASSIGNED))
    elif have.failed:
        out.append(LocalAction("restart", res, Why.FAILED))
    elif have.health == "unhealthy":
        out.append(LocalAction("restart", res, Why.UNHEALTHY))
    if role == "promoted" and (have is None or have.role != "promoted"):
        out.append(LocalAction("promote", res, Why.PROMOTE_ASSIGNED))
    return out
