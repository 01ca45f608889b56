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


SPEC_TEXT = (
    "cluster: t\nnodes:\n  n1: {address: 198.18.0.1}\n  n2: {address: 198.18.0.2, kind: remote}\n"
    "resources:\n  web: {process: /bin/web}\n"
)


async def test_the_controller_plans_from_the_copy_and_never_from_one_missing_its_write() -> None:
    """A step plans from the watch's copy; a copy that does not have the controller's last
    write yet is not planned from (the step reads the store instead): planning from it would
    write the same assignments, and announce them, twice."""
    from corral.agent.controller import Controller
    from corral.records import Event, encode
    from corral.spec import load_spec_text
    from corral.store import Keys

    spec, keys, store = load_spec_text(SPEC_TEXT), Keys("t"), MemoryStore()
    lease = (await store.grant(60)).id
    for node in spec.nodes:
        await store.put(keys.node(node), encode({}), lease=lease)
    view = StoreView()
    controller = Controller(store, keys, "n1", lambda: spec, view=view)
    assert await controller.campaign(lease)
    view.load(await store.range(keys.root.encode()))
    assert (await controller.step()).startswith("wrote 1 assignment")
    assert not view.sees(controller._written)  # the watch has not delivered the write yet
    assert await controller.step() == "no change"  # read from the store, not the stale copy
    view.load(await store.range(keys.root.encode()))
    assert await controller.step() == "no change"  # from the copy, now that it has it
    assigns = [
        e for kv in (await store.range(keys.event_prefix())).kvs
        if (e := Event.read(kv.value)).kind == "assign"
    ]  # fmt: skip
    assert len(assigns) == 1
