"""The controller duty of an agent: one at a time, elected through the store (DESIGN.md).

Contract:
- ``campaign(lease)`` takes the controller key if it is free, bound to the agent's lease, so a
  dead controller's key disappears with its lease and another agent takes over within one TTL.
- ``step()`` reads the cluster prefix in one range, builds the snapshot, runs the scheduler,
  stages the assignments (:mod:`corral.core.assign`) and writes the changed ones in ONE
  transaction that compares the controller key's create revision with the one this controller
  won: a deposed controller's write fails (fencing token), and it learns it was deposed.
- Fencing (DESIGN.md rule 2's fast path): when the plan fences an unclean node, ``step()`` runs
  the node's fence devices in order until one succeeds, records ``fenced/<node>`` naming the
  fenced registration (in a transaction comparing the controller key and that registration),
  and plans again at once: that registration is offline from then on. A node whose fence
  failed is not fenced again for ``FENCE_RETRY`` seconds; meanwhile its exclusive instances
  wait for its lease to expire.
- Every step returns a decision string (what it did), for logs and tests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from corral.agent.records import Event, dump, load, snapshot_from_kvs
from corral.core.assign import staged_assignments
from corral.core.scheduler import schedule
from corral.core.scheduler.scores import Context, node_score
from corral.drivers.base import DriverError, NodeContext
from corral.drivers.fence import fence_node
from corral.spec import Spec
from corral.store import Compare, Delete, Keys, KeyValue, Put, Store

log = logging.getLogger(__name__)
MAX_EVENTS = 1000
FENCE_RETRY = 10.0  # seconds before a failed fence is tried again


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
        self._fence_failed: dict[str, float] = {}  # node -> wall time of its failed fence

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
        now = self._wall()
        failed = {n for n, t in self._fence_failed.items() if now - t < FENCE_RETRY}
        snap = snapshot_from_kvs(spec, self._keys, result.kvs, now, self._lost(), failed)
        plan = schedule(spec, snap)
        fences = [a.node for a in plan.actions if a.kind == "fence"]
        if fences:
            done = await asyncio.gather(*(self._fence(spec, n, result.kvs) for n in fences))
            if any(done):
                return "fenced " + ", ".join(n for n, ok in zip(fences, done, strict=True) if ok)
            return "fencing failed: " + ", ".join(fences)
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

    async def _fence(self, spec: Spec, node: str, kvs: list[KeyValue]) -> bool:
        """Fence ``node`` with its devices in order; record the fenced registration."""
        key = self._keys.node(node)
        token = self.token
        revision = next((kv.create_revision for kv in kvs if kv.key == key), None)
        if revision is None or token is None:
            return False  # its lease expired meanwhile (offline without a fence), or deposed
        target = spec.nodes[node]
        ctx = NodeContext(node, str(target.address), dict(target.attrs))
        devices = spec.fencing if target.fence is None else target.fence
        errors = []
        for name in devices:
            device = spec.fencing[name]
            try:
                await fence_node(device, ctx)
            except DriverError as exc:
                errors.append(f"{name}: {exc}")
                continue
            record = dump({"revision": revision, "time": self._wall(), "device": name})
            reason = f"{node} fenced by {name} ({device.action}): it was lost with a live lease"
            fenced = await self._store.txn(
                [
                    Compare(self._keys.controller, "create_revision", "==", token),
                    Compare(key, "create_revision", "==", revision),
                ],
                [Put(self._keys.fenced(node), record), self._event_op("fence", reason, "")],
            )
            self._fence_failed.pop(node, None)
            return fenced.succeeded
        self._fence_failed[node] = self._wall()
        await self._event(
            "fence", f"fencing {node} failed, waiting for its lease: {'; '.join(errors)}"
        )
        return False

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
