"""A real 3-member etcd cluster (lan timing): member loss, watch continuity, no quorum."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Literal

import pytest

from corral.store import Compare, Put, StoreUnavailable, WatchEvent
from corral.store.etcd import EtcdStore
from corral.store.lab import EtcdLab
from tests.agent.fakes import until

pytestmark = pytest.mark.etcd
Role = Literal["leader", "follower"]


async def pick(lab: EtcdLab, role: Role) -> int:
    leader = await lab.leader()
    return leader if role == "leader" else (leader + 1) % len(lab.members)


def first(lab: EtcdLab, victim: int) -> list[int]:
    """Member indexes with ``victim`` first: the client starts out talking to it."""
    return [victim] + [i for i in range(len(lab.members)) if i != victim]


async def cas(store: EtcdStore, key: bytes, expect_rev: int, value: bytes) -> int:
    """A compare-and-swap the way callers must do it: on an unknown outcome, re-read and
    decide (our value there means it was applied)."""
    while True:
        try:
            result = await store.txn([Compare.unchanged_since(key, expect_rev)], [Put(key, value)])
        except StoreUnavailable as exc:
            assert exc.maybe_applied, "a txn that was never sent is retried inside the store"
            kv = await store.get(key)
            if kv is not None and kv.value == value:
                return kv.mod_revision
            continue
        assert result.succeeded
        return result.revision


@pytest.mark.parametrize("role", ["follower", "leader"])
async def test_store_keeps_serving_when_its_member_is_killed(etcd3: EtcdLab, role: Role) -> None:
    victim = await pick(etcd3, role)
    store = etcd3.store(*first(etcd3, victim))
    try:
        rev = await store.put(b"/k", b"before")
        assert store.endpoint == etcd3.endpoints[victim]
        etcd3.members[victim].kill()
        start = time.monotonic()
        if role == "follower":
            # Once the process is gone, connections to it are refused: proof that the txn was
            # never sent, so it is retried on the next member at once. (Sent while the process
            # dies, it would get "connection reset": outcome unknown, see cas().)
            await etcd3.members[victim].wait()
            await asyncio.sleep(0.1)
            result = await store.txn([Compare.unchanged_since(b"/k", rev)], [Put(b"/k", b"cas")])
            assert result.succeeded
            rev = result.revision
        rev = await cas(store, b"/k", rev, b"cas-2")
        await store.put(b"/other", b"after")
        kv = await store.get(b"/k")
        assert kv is not None and (kv.value, kv.mod_revision) == (b"cas-2", rev)
        assert len((await store.range(b"/")).kvs) == 2
        assert store.endpoint != etcd3.endpoints[victim]
        assert time.monotonic() - start < 10
    finally:
        await store.close()


async def _write_continuously(store: EtcdStore, acked: list[bytes], stop: asyncio.Event) -> None:
    """Puts and two-key txns (several events at one revision) until ``stop``."""
    i = 0
    while not stop.is_set():
        key = b"/seq/%05d" % i
        with contextlib.suppress(StoreUnavailable):  # the truth is the store's history
            if i % 3 == 2:
                await store.txn([], [Put(key + b"/a", b"%d" % i), Put(key + b"/b", b"%d" % i)])
                acked += [key + b"/a", key + b"/b"]
            else:
                await store.put(key, b"%d" % i)
                acked.append(key)
        i += 1
        await asyncio.sleep(0.005)


@pytest.mark.parametrize(
    ("role", "how"), [("follower", "kill"), ("leader", "kill"), ("follower", "sigterm")]
)
async def test_watch_survives_member_restart_without_loss_or_duplicates(
    etcd3: EtcdLab, role: Role, how: str
) -> None:
    victim = await pick(etcd3, role)
    watcher = etcd3.store(*first(etcd3, victim))
    writer = etcd3.store(*[i for i in range(3) if i != victim])
    received: list[WatchEvent] = []
    acked: list[bytes] = []
    stop = asyncio.Event()
    start_rev = await writer.put(b"/seq/start", b"")

    async def watch() -> None:
        async for event in watcher.watch(b"/seq/", start_rev + 1, prev_kv=True):
            received.append(event)
            if event.key == b"/seq/end":
                return

    watching = asyncio.create_task(watch())
    writing = asyncio.create_task(_write_continuously(writer, acked, stop))
    try:
        # conditions, not fixed sleeps (a loaded CI machine): the watch streams ...
        await until(lambda: len(received) >= 30, 10.0, "the watch streaming")
        assert watcher.endpoint == etcd3.endpoints[victim]
        at_kill = len(received)
        if how == "kill":
            etcd3.members[victim].kill()
        else:  # a graceful stop: etcd closes its streams itself
            await etcd3.members[victim].stop()
        # ... and, its member down, streams on from another (writes resumed after an election)
        await until(lambda: len(received) >= at_kill + 30, 10.0, "the watch on another member")
        during_outage = len(received) - at_kill
        await etcd3.members[victim].start(wait=False)
        await etcd3.members[victim].wait_healthy(20)
        await asyncio.sleep(0.3)
        stop.set()
        await writing
        end = await writer.put(b"/seq/end", b"")
        await asyncio.wait_for(watching, 15)
    finally:
        stop.set()
        writing.cancel()
        watching.cancel()
    try:
        # the truth: the history as a fresh watch on a member that never went down replays it
        truth: list[WatchEvent] = []
        async for event in writer.watch(b"/seq/", start_rev + 1, prev_kv=True):
            truth.append(event)
            if event.revision == end:
                break
        assert received == truth  # same events, same order, none lost, none twice
        assert during_outage > 0, "the watch moved to another member while its own was down"
        assert set(acked) <= {e.key for e in received}
        assert len(acked) > 50
    finally:
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
        assert time.monotonic() - start < 3
        message = str(caught.value)
        assert "no endpoint answered within 1s" in message
        assert etcd1.endpoints[0] in message and "127.0.0.1:1" in message
        with pytest.raises(StoreUnavailable) as txn_failed:
            await store.txn([], [Put(b"/x", b"2")])
        assert not txn_failed.value.maybe_applied  # refused connections: surely not applied
        with pytest.raises(StoreUnavailable):
            await anext(store.watch(b"/", 1))
    finally:
        await store.close()


async def test_a_member_without_quorum_refuses_at_once(etcd3: EtcdLab) -> None:
    """The require-leader flag: a member cut off from its quorum answers "no leader" instead
    of letting requests wait out etcd's own request timeout."""
    survivor = etcd3.store(0, timeout=1.0, attempt_timeout=0.5)
    try:
        await survivor.put(b"/k", b"1")
        etcd3.members[1].kill()
        etcd3.members[2].kill()
        deadline = time.monotonic() + 10
        while True:  # until the survivor notices it has no leader (about an election timeout)
            with contextlib.suppress(StoreUnavailable):
                await survivor.get(b"/k")
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
                continue
            break
        start = time.monotonic()
        with pytest.raises(StoreUnavailable, match="no leader") as caught:
            await survivor.txn([], [Put(b"/k", b"2")])
        # answered "no leader" at once: surely not applied (on a loaded machine a first try
        # may time out instead, and then the outcome is honestly unknown)
        assert not caught.value.maybe_applied or time.monotonic() - start >= 0.5
        with pytest.raises(StoreUnavailable, match="no leader"):
            await survivor.keepalive(1234)
        assert time.monotonic() - start < 3
    finally:
        await survivor.close()


async def test_one_member_lost_the_cluster_keeps_quorum(etcd3: EtcdLab) -> None:
    etcd3.members[2].kill()
    store = etcd3.store(2, 0, 1)
    try:
        lease = await store.grant(2)
        await store.put(b"/n", b"1", lease=lease.id)
        assert await store.keepalive(lease.id) >= 2
        assert (await store.lease_info(lease.id)).keys == (b"/n",)
    finally:
        await store.close()
