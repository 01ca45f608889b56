"""What only the in-memory store has: the injected clock, expire_leases() for the simulator,
and the failure hooks."""

from __future__ import annotations

import asyncio

import pytest

from corral.core.clock import ManualClock
from corral.store import Compare, LeaseNotFound, MemoryStore, Put, StoreUnavailable


async def test_lease_expires_on_the_injected_clock_only() -> None:
    clock = ManualClock()
    store = MemoryStore(clock)
    lease = await store.grant(2)
    await store.put(b"/nodes/n1", b"up", lease=lease.id)
    await asyncio.sleep(0.05)  # real time does not matter
    clock.advance(1.5)
    await store.keepalive(lease.id)  # renewed: lives 2 s from now
    clock.advance(1.9)
    assert await store.get(b"/nodes/n1") is not None
    assert (await store.lease_info(lease.id)).remaining == 0  # 0.1 s left, truncated
    clock.advance(0.1)
    assert await store.get(b"/nodes/n1") is None  # checked whenever the store is used
    with pytest.raises(LeaseNotFound):
        await store.keepalive(lease.id)


async def test_expire_leases_emits_delete_events_for_the_simulator() -> None:
    clock = ManualClock()
    store = MemoryStore(clock)
    lease = await store.grant(1)
    other = await store.grant(5)
    rev = await store.put(b"/nodes/n1", b"up", lease=lease.id)
    events = store.watch(b"/nodes/", rev + 1)
    clock.advance(1.0)
    assert store.expire_leases() == [lease.id]  # without any store call
    assert store.expire_leases() == []
    event = await asyncio.wait_for(anext(events), 1)
    assert (event.kind, event.key, event.revision) == ("delete", b"/nodes/n1", rev + 1)
    assert store.revision == rev + 1
    assert await store.keepalive(other.id) == 5


async def test_grant_rounds_up_to_min_ttl() -> None:
    store = MemoryStore(ManualClock(), min_ttl=4)  # wan: ceil(1.5 x 2.5 s)
    assert (await store.grant(1)).ttl == 4
    assert (await store.grant(6)).ttl == 6


async def test_fail_next_before_and_after_applying() -> None:
    store = MemoryStore(ManualClock())
    store.fail_next()
    with pytest.raises(StoreUnavailable) as before:
        await store.put(b"/k", b"1")
    assert not before.value.maybe_applied and await store.get(b"/k") is None
    store.fail_next(applied=True)
    with pytest.raises(StoreUnavailable) as after:
        await store.txn([Compare.missing(b"/k")], [Put(b"/k", b"2")])
    assert after.value.maybe_applied
    kv = await store.get(b"/k")  # the caller re-reads: it was applied
    assert kv is not None and kv.value == b"2"
    store.fail_next(applied=True)  # a read cannot be "applied": it just fails
    with pytest.raises(StoreUnavailable):
        await store.get(b"/k")
    assert await store.get(b"/k") is not None


async def test_unavailable_ends_open_watches_and_refuses_calls() -> None:
    store = MemoryStore(ManualClock())
    rev = await store.put(b"/w", b"")
    events = store.watch(b"/w", rev)
    assert (await anext(events)).revision == rev
    pending = asyncio.ensure_future(anext(events))
    await asyncio.sleep(0)
    store.set_available(False)
    with pytest.raises(StoreUnavailable):
        await asyncio.wait_for(pending, 1)
    with pytest.raises(StoreUnavailable):
        await store.get(b"/w")
    store.set_available(True)
    assert await store.get(b"/w") is not None
