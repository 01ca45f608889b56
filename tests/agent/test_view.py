"""The watch's copy of the store (:mod:`corral.agent.view`) equals a read of the store."""

from __future__ import annotations

import asyncio
import random

from corral.agent.view import StoreView
from corral.store import Delete, MemoryStore, Put


async def test_the_copy_kept_from_the_watch_equals_a_fresh_read() -> None:
    store = MemoryStore()
    rng = random.Random(7)
    lease = await store.grant(30)
    await store.put(b"/c/start", b"0")
    view = StoreView()
    first = await store.range(b"/c/")
    view.load(first)
    events = store.watch(b"/c/", first.revision + 1)
    for i in range(200):
        key = f"/c/{rng.randrange(20)}".encode()
        choice = rng.random()
        if choice < 0.5:
            await store.put(key, str(i).encode(), lease=lease.id if i % 3 == 0 else 0)
        elif choice < 0.8:
            await store.delete(key)
        else:
            other = f"/c/{rng.randrange(20)}".encode()
            if other != key:
                await store.txn([], [Put(key, b"t"), Delete(other)])
    await store.revoke(lease.id)  # many deletes at one revision
    latest = await store.range(b"/c/")
    while view.revision < latest.revision:
        view.apply(await asyncio.wait_for(anext(events), 5))
    assert view.kvs() == latest.kvs
    assert view.sees(latest.revision) and not view.sees(latest.revision + 1)


def test_a_lost_watch_is_not_trusted_until_read_again() -> None:
    view = StoreView()
    assert not view.sees(0)
    view.lost()
    assert not view.sees(0)
