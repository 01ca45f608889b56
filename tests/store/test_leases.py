"""Lease expiry on real etcd, measured: with the lan timing (--heartbeat-interval 50
--election-timeout 500) a lease whose keepalives stop is gone within TTL + 1 s of the last
keepalive, and not before its TTL. Also etcd's minimum TTL formula."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from corral.store import LeaseNotFound, min_lease_ttl
from corral.store.lab import EtcdLab, etcd_lab

pytestmark = pytest.mark.etcd


@pytest.mark.parametrize("ttl", [1, 2])
async def test_lease_expires_within_ttl_plus_one_second(etcd3: EtcdLab, ttl: int) -> None:
    store = etcd3.store()
    watcher = etcd3.store()
    try:
        lease = await store.grant(ttl)
        assert lease.ttl == ttl  # lan: etcd's minimum is 1 s
        rev = await store.put(b"/nodes/n1", b"up", lease=lease.id)
        events = watcher.watch(b"/nodes/", rev + 1)
        for _ in range(3):  # kept alive past its TTL
            await asyncio.sleep(ttl * 0.5)
            sent = time.monotonic()  # measured from the send: the strictest reading
            await store.keepalive(lease.id)
        while await store.get(b"/nodes/n1") is not None:
            assert time.monotonic() - sent < ttl + 5, "lease never expired"
            await asyncio.sleep(0.02)
        gone_after = time.monotonic() - sent
        assert ttl * 0.95 <= gone_after <= ttl + 1.0, f"gone {gone_after:.2f}s after keepalive"
        event = await asyncio.wait_for(anext(events), 2)
        assert (event.kind, event.key) == ("delete", b"/nodes/n1")
        with pytest.raises(LeaseNotFound):
            await store.keepalive(lease.id)
    finally:
        await store.close()
        await watcher.close()


async def test_min_lease_ttl_is_etcds(tmp_path: Path) -> None:
    """election 1000 ms: etcd raises a 1 s grant to ceil(1.5 x 1.0) = 2 s."""
    lab = EtcdLab(tmp_path, 1, heartbeat_ms=100, election_ms=1000)
    await lab.start()
    store = lab.store()
    try:
        assert min_lease_ttl(1000) == 2
        assert (await store.grant(1)).ttl == 2
        assert (await store.grant(3)).ttl == 3
    finally:
        await store.close()
        await lab.stop()


async def test_lan_grants_one_second(tmp_path: Path) -> None:
    async with etcd_lab(tmp_path, 1, profile="lan") as lab:
        store = lab.store()
        try:
            assert min_lease_ttl(500) == 1
            assert (await store.grant(1)).ttl == 1
        finally:
            await store.close()
