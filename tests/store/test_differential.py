"""Differential test: seeded random sequences of every store call, applied to the in-memory
store and to a real etcd member side by side. Results (revisions included), errors and the
watch stream of everything that happened must be identical. A failure names the seed and the
step; ``STORE_DIFF_SEEDS`` (env) changes how many sequences run."""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path
from typing import Any

import pytest

from corral.core.clock import ManualClock
from corral.store import (
    Compare,
    Delete,
    KeyValue,
    LeaseNotFound,
    MemoryStore,
    Op,
    Put,
    Store,
    StoreError,
    WatchEvent,
)
from corral.store.lab import etcd_lab

pytestmark = pytest.mark.etcd

SEEDS = int(os.environ.get("STORE_DIFF_SEEDS", "25"))
STEPS = 30


class Model:
    """Runs one step on one store; lease ids are mapped to their grant order so that both
    backends' results compare equal."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.leases: list[int] = []

    def kv(self, kv: KeyValue | None) -> Any:
        if kv is None:
            return None
        lease = self.leases.index(kv.lease) if kv.lease else -1
        return (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, lease)

    def lease(self, index: int) -> int:
        return self.leases[index] if index < len(self.leases) else 0x7777

    def op(self, op: tuple[Any, ...]) -> Op:
        if op[0] == "put":
            return Put(op[1], op[2], self.lease(op[3]) if op[3] >= 0 else 0)
        return Delete(op[1], op[2])

    async def run(self, step: tuple[Any, ...]) -> Any:
        try:
            return await self._run(step)
        except LeaseNotFound:
            return "LeaseNotFound"
        except StoreError:
            return "StoreError"

    async def _run(self, step: tuple[Any, ...]) -> Any:
        name, args = step[0], step[1:]
        s = self.store
        if name == "get":
            return self.kv(await s.get(args[0]))
        if name == "range":
            found = await s.range(args[0])
            return [self.kv(kv) for kv in found.kvs], found.revision
        if name in ("put", "delete"):
            op = self.op(step)
            if isinstance(op, Put):
                return await s.put(op.key, op.value, op.lease)
            return await s.delete(op.key, prefix=op.prefix)
        if name == "txn":
            compares = [Compare(*c) for c in args[0]]
            result = await s.txn(
                compares, [self.op(o) for o in args[1]], [self.op(o) for o in args[2]]
            )
            return result.succeeded, result.revision
        if name == "grant":
            self.leases.append((await s.grant(args[0])).id)
            return len(self.leases) - 1
        if name == "keepalive":
            return await s.keepalive(self.lease(args[0]))
        if name == "revoke":
            await s.revoke(self.lease(args[0]))
            return None
        raise AssertionError(name)

    def event(self, e: WatchEvent) -> Any:
        return (e.kind, e.key, e.value, e.revision, self.kv(e.prev))


def steps(rng: random.Random, root: bytes) -> list[tuple[Any, ...]]:
    keys = [root + k for k in (b"a", b"b", b"c/1", b"c/2")]
    prefixes = [root, root + b"c/", root + b"b"]

    def write() -> tuple[Any, ...]:
        if rng.random() < 0.7:
            lease = rng.choice([-1, -1, 0, 1, 5])  # 5: usually not granted (LeaseNotFound)
            return ("put", rng.choice(keys), rng.choice([b"", b"x", b"y"]), lease)
        if rng.random() < 0.5:
            return ("delete", rng.choice(prefixes), True)
        return ("delete", rng.choice(keys), False)

    def compare() -> tuple[Any, ...]:
        target = rng.choice(["value", "version", "create_revision", "mod_revision"])
        value: Any = rng.choice([b"", b"x", b"y"]) if target == "value" else rng.randint(0, 6)
        return (rng.choice(keys), target, rng.choice(["==", "!=", "<", ">"]), value)

    out: list[tuple[Any, ...]] = []
    for _ in range(STEPS):
        kind = rng.choice(["get", "range", "write", "write", "write", "txn", "txn", "lease"])
        if kind == "get":
            out.append(("get", rng.choice(keys)))
        elif kind == "range":
            out.append(("range", rng.choice(prefixes)))
        elif kind == "write":
            out.append(write())
        elif kind == "txn":
            out.append(
                (
                    "txn",
                    [compare() for _ in range(rng.randint(0, 2))],
                    [write() for _ in range(rng.randint(0, 3))],
                    [write() for _ in range(rng.randint(0, 2))],
                )
            )
        else:
            out.append(rng.choice([("grant", 60), ("keepalive", rng.randint(0, 2))]))
            if rng.random() < 0.3:
                out.append(("revoke", rng.randint(0, 2)))
    return out


async def collect(store: Store, prefix: bytes, start: int, until: int) -> list[WatchEvent]:
    got: list[WatchEvent] = []
    if until < start:
        return got
    async for event in store.watch(prefix, start, prev_kv=True):
        got.append(event)
        if event.revision >= until:
            break
    return got


async def test_memory_store_matches_etcd_on_random_sequences(tmp_path: Path) -> None:
    async with etcd_lab(tmp_path, 1) as lab:
        real = lab.store()
        twin = MemoryStore(ManualClock())
        try:
            for seed in range(SEEDS):
                root = b"/diff/%d/" % seed
                a, b = Model(twin), Model(real)
                start = twin.revision + 1
                for i, step in enumerate(steps(random.Random(seed), root)):
                    want, got = await a.run(step), await b.run(step)
                    assert got == want, f"seed {seed} step {i} {step}: etcd {got} != memory {want}"
                until = twin.revision
                mine = await asyncio.wait_for(collect(twin, root, start, until), 5)
                theirs = await asyncio.wait_for(collect(real, root, start, until), 5)
                assert [b.event(e) for e in theirs] == [a.event(e) for e in mine], f"seed {seed}"
                for lease in a.leases:  # clean up: leases live 60 s
                    await twin.revoke(lease)
                for lease in b.leases:
                    await real.revoke(lease)
        finally:
            await real.close()
            await twin.close()
