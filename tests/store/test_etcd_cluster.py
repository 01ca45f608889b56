"""A real 3-member etcd cluster: member loss, watch continuity, unavailability, supervision."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from corral.store import EmbeddedError, EmbeddedEtcd, MemberConfig, StoreUnavailable
from corral.store.etcd import EtcdStore
from corral.store.lab import EtcdLab, free_ports

pytestmark = pytest.mark.etcd


async def test_store_keeps_serving_when_its_member_is_killed(etcd3: EtcdLab) -> None:
    store = etcd3.store()
    try:
        await store.put(b"/k", b"before")
        talking_to = etcd3.endpoints.index(store.endpoint)
        etcd3.members[talking_to].kill()
        start = time.monotonic()
        await store.put(b"/k", b"after")  # retried on another member
        assert (await store.get(b"/k")).value == b"after"  # type: ignore[union-attr]
        result = await store.txn([], [])
        assert result.succeeded
        assert store.endpoint != etcd3.endpoints[talking_to]
        assert time.monotonic() - start < 10
    finally:
        await store.close()


async def test_watch_survives_member_restart_without_loss_or_duplicates(etcd3: EtcdLab) -> None:
    watcher = etcd3.store(0, 1, 2)  # talks to m0 first
    writer = etcd3.store(1, 2)
    received: list[bytes] = []
    written: list[bytes] = []
    start_rev = await writer.put(b"/seq/start", b"")

    async def watch() -> None:
        async for event in watcher.watch(b"/seq/", start_rev + 1):
            received.append(event.key)
            if event.key == b"/seq/end":
                return

    task = asyncio.create_task(watch())
    try:
        for i in range(60):
            key = f"/seq/{i:03d}".encode()
            await writer.put(key, b"x")
            written.append(key)
            if i == 20:
                etcd3.members[0].kill()
            if i == 40:
                await etcd3.members[0].start(wait=False)
            await asyncio.sleep(0.02)
        await writer.put(b"/seq/end", b"")
        written.append(b"/seq/end")
        await asyncio.wait_for(task, 15)
        assert received == written
    finally:
        task.cancel()
        await watcher.close()
        await writer.close()


async def test_all_endpoints_down_raises_unavailable_naming_them(etcd1: EtcdLab) -> None:
    store = EtcdStore([*etcd1.endpoints, "127.0.0.1:1"], timeout=1.0)
    try:
        await store.put(b"/x", b"1")
        for member in etcd1.members:
            await member.stop()
        start = time.monotonic()
        with pytest.raises(StoreUnavailable) as caught:
            await store.get(b"/x")
        message = str(caught.value)
        assert "no endpoint answered in time" in message and "127.0.0.1:1" in message
        assert time.monotonic() - start < 6
        with pytest.raises(StoreUnavailable, match="outcome unknown"):
            await store.txn([], [])
    finally:
        await store.close()


async def test_one_member_lost_the_cluster_keeps_quorum(etcd3: EtcdLab) -> None:
    etcd3.members[2].kill()
    store = etcd3.store(0, 1)
    try:
        lease = await store.grant(2)
        await store.put(b"/n", b"1", lease=lease.id)
        assert await store.keepalive(lease.id) >= 2
    finally:
        await store.close()


async def test_supervisor_restarts_a_crashed_member_and_stop_is_clean(tmp_path: Path) -> None:
    client, peer = free_ports(2)
    member = EmbeddedEtcd(
        MemberConfig(
            name="solo",
            data_dir=tmp_path / "solo",
            client_url=f"http://127.0.0.1:{client}",
            peer_url=f"http://127.0.0.1:{peer}",
        )
    )
    await member.start()
    member.supervise()
    try:
        first_pid = member.pid
        member.kill()
        deadline = time.monotonic() + 15
        while not (member.restarts == 1 and member.running and await member.healthy()):
            assert time.monotonic() < deadline, "member was not restarted"
            await asyncio.sleep(0.1)
        assert member.pid != first_pid
    finally:
        await member.stop()
    assert not member.running
    assert member.pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(member.pid, 0)


async def test_a_member_that_cannot_start_reports_why(tmp_path: Path) -> None:
    client, _ = free_ports(2)
    member = EmbeddedEtcd(
        MemberConfig(
            name="bad",
            data_dir=tmp_path / "bad",
            client_url=f"http://127.0.0.1:{client}",
            peer_url="http://127.0.0.1:notaport",
        )
    )
    with pytest.raises(EmbeddedError, match="bad"):
        await member.start(timeout=10)
    await member.stop()
