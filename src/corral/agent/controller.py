"""The controller duty of an agent: one at a time, elected through the store (DESIGN.md).

Contract:
- ``campaign(lease)`` takes the controller key if it is free, bound to the agent's lease, so a
  dead controller's key disappears with its lease and another agent takes over within one TTL.
- ``step()`` reads the cluster prefix in one range, builds the snapshot, runs the scheduler,
  stages the assignments (:mod:`corral.core.assign`) and writes the changed ones in ONE
  transaction that compares the controller key's create revision with the one this controller
  won: a deposed controller's write fails (fencing token), and it learns it was deposed.
- Every step returns a decision string (what it did), for logs and tests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from corral.agent.records import Event, dump, load, snapshot_from_kvs
from corral.core.assign import staged_assignments
from corral.core.scheduler import schedule
from corral.core.scheduler.scores import Context, node_score
from corral.spec import Spec
from corral.store import Compare, Delete, Keys, Put, Store

log = logging.getLogger(__name__)
MAX_EVENTS = 1000


class Controller:
    def __init__(
        self,
        store: Store,
        keys: Keys,
        node: str,
        spec: Callable[[], Spec],
        wall: Callable[[], float] = time.time,
        lost: Callable[[], set[str]] = set,
    ) -> None:
        self._store = store
        self._keys = keys
        self._node = node
        self._spec = spec
        self._wall = wall
        self._lost = lost  # nodes gossip holds dead (they become unclean while leased)
        self.token: int | None = None  # create revision of our controller key
        self._last_notes: set[str] = set()

    @property
    def active(self) -> bool:
        return self.token is not None

    async def campaign(self, lease: int) -> bool:
        key = self._keys.controller
        result = await self._store.txn(
            [Compare.missing(key)], [Put(key, self._node.encode(), lease)]
        )
        if result.succeeded:
            self.token = result.revision
            await self._event("controller", f"{self._node} became the controller")
            return True
        current = await self._store.get(key)
        if current is not None and current.value == self._node.encode() and current.lease == lease:
            self.token = current.create_revision  # ours already (e.g. after a lost reply)
            return True
        self.token = None
        return False

    def resign(self) -> None:
        self.token = None

    async def step(self) -> str:
        if self.token is None:
            return "not the controller"
        spec = self._spec()
        result = await self._store.range(self._keys.root.encode())
        snap = snapshot_from_kvs(spec, self._keys, result.kvs, self._wall(), self._lost())
        plan = schedule(spec, snap)
        assigned, notes = staged_assignments(spec, snap, plan)
        current = {
            kv.key: kv.value for kv in result.kvs if kv.key.startswith(self._keys.prefix("assign"))
        }
        ops: list[Put | Delete] = []
        changed = []
        for name, instances in assigned.items():
            value = dump(
                {"instances": [{"node": i.node, "role": i.role, "item": i.item} for i in instances]}
            )
            key = self._keys.assign(name)
            if current.pop(key, None) != value:
                ops.append(Put(key, value))
                changed.append(name)
        ops += [Delete(key) for key in current]  # resources no longer in the spec
        for note in sorted(set(notes) - self._last_notes):
            ops.append(self._event_op("waiting", note))
        self._last_notes = set(notes)
        ctx = Context(spec, snap)
        placed = {n: {i.node for i in insts} for n, insts in assigned.items()}
        for name in changed:
            decision = plan.decisions[name]
            running_on = {i.node for i in ctx.observed.get(name, [])}
            # why it leaves the nodes it ran on: the score that excludes them, if any
            left = [
                f"{node}: {score.why}"
                for node in sorted(running_on - placed[name])
                if (
                    score := node_score(ctx, name, node, with_nodes=placed, apart_nodes=placed)
                ).total
                is None
            ]
            reasons = "; ".join(left + decision.reasons + decision.blocked)
            where = ", ".join(f"{i.node}" for i in assigned[name]) or "nowhere"
            ops.append(self._event_op("assign", f"{name} -> {where}: {reasons}", name))
        if not ops:
            return "no change"
        fenced = await self._store.txn(
            [Compare(self._keys.controller, "create_revision", "==", self.token)], ops
        )
        if not fenced.succeeded:
            self.token = None
            return "deposed: the controller key is no longer ours"
        await self._trim_events(result.kvs)
        return f"wrote {len(changed)} assignment(s)" + (
            f": {', '.join(changed)}" if changed else ""
        )

    def _event_op(self, kind: str, reason: str, resource: str = "") -> Put:
        now = self._wall()
        key = self._keys.event_key(time.time_ns(), self._node)
        return Put(key, Event(now, self._node, resource, kind, reason).record())

    async def _event(self, kind: str, reason: str, resource: str = "") -> None:
        op = self._event_op(kind, reason, resource)
        await self._store.put(op.key, op.value)

    async def _trim_events(self, kvs: list) -> None:  # type: ignore[type-arg]
        prefix = self._keys.event_prefix()
        events = [kv.key for kv in kvs if kv.key.startswith(prefix)]
        if len(events) > MAX_EVENTS + 100:  # trim in batches, oldest first
            for key in sorted(events)[: len(events) - MAX_EVENTS]:
                await self._store.delete(key)


def parse_assignment(raw: bytes) -> list[tuple[str, str, str | None]]:
    """``assign/<resource>`` value -> [(node, role, item)]; corrupt values read as empty."""
    value = load(raw)
    if not isinstance(value, dict):
        return []
    out = []
    for inst in value.get("instances", []):
        if isinstance(inst, dict) and isinstance(inst.get("node"), str):
            out.append((inst["node"], str(inst.get("role", "started")), inst.get("item")))
    return out
