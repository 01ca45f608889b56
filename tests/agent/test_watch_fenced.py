"""A fence record makes the agent's driver poll due at once (``WatchFeed.take_fenced``): a Galera
survivor evicts a fenced member at its poll (rule 2), so the poll must not wait its second."""

from __future__ import annotations

import asyncio
import time

from corral.agent.events import EventLog
from corral.agent.view import StoreView
from corral.agent.watch import WatchFeed
from corral.records import FencedRecord, StatusInstance, StatusRecord
from corral.store import Keys, MemoryStore

KEYS = Keys("wf")


async def test_a_put_fence_record_and_only_that_calls_on_fenced() -> None:
    store = MemoryStore()

    async def no_spec(_raw: bytes) -> None:
        return None

    events = EventLog(store, KEYS, "db1", time.time)
    feed = WatchFeed(store, KEYS, KEYS.prefix("requests"), events, no_spec, StoreView())
    woken: list[bool] = []
    feed.on_change = lambda: woken.append(True)  # the main loop wakes, then takes the fence
    task = asyncio.create_task(feed.run())
    try:
        await asyncio.sleep(0.05)
        status = StatusRecord((StatusInstance("promoted", "healthy"),)).dump()
        await store.put(KEYS.status("db1", "galera"), status)
        await store.put(KEYS.node("db3"), b"{}")
        await asyncio.sleep(0.05)
        assert woken and not feed.take_fenced()  # other keys wake the loop, no fence
        await store.put(KEYS.fenced("db3"), FencedRecord(7).dump())
        await asyncio.sleep(0.05)
        assert feed.take_fenced() and not feed.take_fenced()  # once
        await store.delete(KEYS.fenced("db3"))
        await asyncio.sleep(0.05)
        assert not feed.take_fenced()  # a deleted fence record is no fence
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
