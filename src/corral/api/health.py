"""The health endpoints' answers, as pure functions of a snapshot, a time and a deadline.

A load balancer asks ``/v1/health/<resource>?role=...`` of every node and sends traffic to the
nodes that answer 200 (Patroni's ``/primary``). The answer comes from the agent's last snapshot
(:mod:`corral.agent.snapshot`), never from the control loop itself, so a busy loop or a dead
store does not take a healthy service out of the pool, within bounds:

- the snapshot must be younger than its ``stale_after`` (the loop republishes at least every
  second; silent longer than that plus the self-fence window, it is hung): else 503 with
  ``stale: true``;
- **rule 1**: an exclusive instance (active-passive, a VIP, a promoted role) is 200 only
  before the node's lease deadline, read from the lease guard's record when the guard lists the
  instance (``guard_deadline``: what the guard acts on), else the snapshot's own. After it the
  guard may already have stopped the instance, and the controller may start it elsewhere
  (rule 2): a 200 then could send clients to two holders.

Every answer is ``(status code, JSON body)``; a 503 body says why in ``reason``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

from corral.agent.snapshot import AgentSnapshot, InstanceView

Answer = tuple[int, dict[str, Any]]
Role = Literal["promoted", "active"] | None
ROLES = ("promoted", "active")


def _stale(snap: AgentSnapshot | None, now: float) -> Answer | None:
    if snap is None:
        return 503, {"reason": "the agent has not finished its first turn", "stale": True}
    if snap.stale(now):
        return 503, {
            "reason": f"the agent's last state is {snap.age(now):.1f} s old "
            f"(bound {snap.stale_after:.1f} s): its control loop is stalled",
            "stale": True,
            "age": round(snap.age(now), 3),
        }
    return None


def liveness(snap: AgentSnapshot | None, now: float) -> Answer:
    """``/v1/health``: 200 while the control loop turns (its snapshot is fresh)."""
    stale = _stale(snap, now)
    if stale is not None:
        return stale
    assert snap is not None
    return 200, {"node": snap.node, "stale": False, "age": round(snap.age(now), 3)}


def readiness(snap: AgentSnapshot | None, now: float) -> Answer:
    """``/v1/ready``: live, registered under a lease whose deadline has not passed, and the
    last round reached the store."""
    stale = _stale(snap, now)
    if stale is not None:
        return stale
    assert snap is not None
    base = {"node": snap.node, "stale": False, "age": round(snap.age(now), 3)}
    if snap.lease is None:
        return 503, {**base, "reason": "not registered: no node lease"}
    if not now < snap.lease_deadline:
        return 503, {**base, "reason": "the node lease is past its deadline (rule 1)"}
    if not snap.store_ok:
        return 503, {**base, "reason": f"the store is unreachable: {snap.store_error}"}
    return 200, {**base, "controller": snap.controller}


def _matches(inst: InstanceView, role: Role) -> bool:
    return role != "promoted" or inst.role == "promoted"


def resource_health(
    snap: AgentSnapshot | None,
    resource: str,
    role: Role,
    now: float,
    guard_deadline: Callable[[InstanceView], float | None],
) -> Answer:
    """``/v1/health/<resource>``. ``role``: None (any instance), ``active`` (running here in
    any role: for an active-passive resource the one active instance), ``promoted`` (the
    promoted role). ``guard_deadline(instance)``: the guard's deadline record for that
    instance when the guard lists it, else None (the snapshot's deadline counts)."""
    stale = _stale(snap, now)
    if stale is not None:
        return stale
    assert snap is not None
    base: dict[str, Any] = {"resource": resource, "node": snap.node, "stale": False}
    if resource not in snap.resources:
        return 404, {**base, "reason": f"no resource {resource!r} in the running spec"}
    found = [i for i in snap.of(resource) if _matches(i, role)]
    if not found:
        want = f" in role {role}" if role == "promoted" else ""
        return 503, {**base, "reason": f"no instance of {resource} runs here{want}"}
    reasons = []
    for inst in found:
        reason = _why_not(inst, snap, now, guard_deadline)
        if reason is None:
            return 200, {**base, **_described(inst, snap, now, guard_deadline)}
        reasons.append(reason)
    return 503, {**base, "reason": "; ".join(reasons)}


def _deadline(
    inst: InstanceView, snap: AgentSnapshot, guard: Callable[[InstanceView], float | None]
) -> float:
    found = guard(inst) if snap.guarded else None
    return snap.lease_deadline if found is None else found


def _why_not(
    inst: InstanceView,
    snap: AgentSnapshot,
    now: float,
    guard: Callable[[InstanceView], float | None],
) -> str | None:
    name = inst.resource + (f"[{inst.item}]" if inst.item else "")
    if inst.failed or inst.reported != "healthy":
        detail = f" ({inst.detail})" if inst.detail else ""
        return f"{name} is {inst.reported}{detail}"
    if inst.exclusive:
        deadline = _deadline(inst, snap, guard)
        if not now < deadline:  # NaN (no record) refuses too
            return f"{name} is exclusive and the node lease is past its deadline (rule 1)"
    return None


def _described(
    inst: InstanceView,
    snap: AgentSnapshot,
    now: float,
    guard: Callable[[InstanceView], float | None],
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "role": inst.role,
        "health": inst.reported,
        "age": round(snap.age(now), 3),
        "maintenance": inst.resource in snap.maintenance,
    }
    if inst.item:
        out["item"] = inst.item
    if inst.exclusive:
        left = _deadline(inst, snap, guard) - now
        out["lease_left"] = round(left, 3) if math.isfinite(left) else None
    return out
