"""Lease expiry: on the injected clock (memory) and on the real clock (etcd, lan timing)."""

from __future__ import annotations

import asyncio
import time

import pytest

from corral.core.clock import ManualClock
from corral.store import LeaseNotFound, MemoryStore
from corral.store.lab import EtcdLab


async def test_memory_lease_expires_on_the_injected_clock() -> None:
    clock = ManualClock()
    store = MemoryStore(clock)
    lease = await store.grant(2)
    await store.put(b"/nodes/n1", b"up", lease=lease.id)
    clock.advance(1.5)
    await store.keepalive(lease.id)  # renewed: lives 2 s from now
    clock.advance(1.9)
    assert await store.get(b"/nodes/n1") is not None
    clock.advance(0.2)
    assert await store.get(b"/nodes/n1") is None
    with pytest.raises(LeaseNotFound):
        await store.keepalive(lease.id)


async def test_memory_expiry_emits_delete_events() -> None:
    clock = ManualClock()
    store = MemoryStore(clock)
    lease = await store.grant(1)
    rev = await store.put(b"/nodes/n1", b"up", lease=lease.id)
    events = store.watch(b"/nodes/", rev + 1)
    clock.advance(1.0)
    assert store.expire_leases() == [lease.id]
    event = await asyncio.wait_for(anext(events), 1)
    assert (event.kind, event.key) == ("delete", b"/nodes/n1")


@pytest.mark.etcd
async def test_etcd_lease_expires_within_ttl_plus_one_second(etcd1: EtcdLab) -> None:
    store = etcd1.store()
    try:
        lease = await store.grant(1)
        await store.put(b"/nodes/n1", b"up", lease=lease.id)
        for _ in range(3):  # alive while kept alive
            await asyncio.sleep(0.4)
            await store.keepalive(lease.id)
        last_keepalive = time.monotonic()
        while await store.get(b"/nodes/n1") is not None:
            assert time.monotonic() - last_keepalive < 5, "lease never expired"
            await asyncio.sleep(0.05)
        gone_after = time.monotonic() - last_keepalive
        assert gone_after <= lease.ttl + 1.0, f"key outlived its lease by {gone_after:.2f}s"
        assert gone_after >= lease.ttl * 0.9  # and not before its TTL
        with pytest.raises(LeaseNotFound):
            await store.keepalive(lease.id)
    finally:
        await store.close()
