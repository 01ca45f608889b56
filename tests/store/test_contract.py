"""One contract, two backends: the in-memory twin must behave like real etcd."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from corral.store import (
    CompactedError,
    Compare,
    Delete,
    LeaseNotFound,
    Put,
    Store,
    WatchEvent,
)


async def take(
    events: AsyncIterator[WatchEvent], count: int, timeout: float = 5.0
) -> list[WatchEvent]:
    async def collect() -> list[WatchEvent]:
        out = []
        async for event in events:
            out.append(event)
            if len(out) == count:
                break
        return out

    return await asyncio.wait_for(collect(), timeout)


async def test_put_get_versions_and_revisions(store: Store) -> None:
    assert await store.get(b"/a") is None
    r1 = await store.put(b"/a", b"1")
    r2 = await store.put(b"/a", b"2")
    assert r2 == r1 + 1
    kv = await store.get(b"/a")
    assert kv is not None
    assert (kv.value, kv.version, kv.create_revision, kv.mod_revision) == (b"2", 2, r1, r2)


async def test_range_is_by_prefix_sorted_with_revision(store: Store) -> None:
    for key in (b"/p/b", b"/p/a", b"/q/a", b"/p"):
        await store.put(key, key)
    result = await store.range(b"/p/")
    assert [kv.key for kv in result.kvs] == [b"/p/a", b"/p/b"]
    last = await store.put(b"/z", b"")
    assert (await store.range(b"/p/")).revision == last


async def test_delete_counts_and_prefix(store: Store) -> None:
    await store.put(b"/d/1", b"")
    await store.put(b"/d/2", b"")
    await store.put(b"/e", b"")
    assert await store.delete(b"/missing") == 0
    assert await store.delete(b"/e") == 1
    assert await store.delete(b"/d/", prefix=True) == 2
    assert (await store.range(b"/")).kvs == []


async def test_txn_compare_and_swap(store: Store) -> None:
    ok = await store.txn([Compare.missing(b"/leader")], [Put(b"/leader", b"n1")])
    assert ok.succeeded
    # a second candidate loses, and its failure branch runs instead
    lost = await store.txn(
        [Compare.missing(b"/leader")], [Put(b"/leader", b"n2")], [Put(b"/lost", b"n2")]
    )
    assert not lost.succeeded
    assert (await store.get(b"/leader")).value == b"n1"  # type: ignore[union-attr]
    assert (await store.get(b"/lost")).value == b"n2"  # type: ignore[union-attr]
    # a deposed writer (fencing token by value) cannot write
    fenced = await store.txn([Compare.value_is(b"/leader", b"n2")], [Put(b"/assign", b"x")])
    assert not fenced.succeeded and await store.get(b"/assign") is None


async def test_txn_is_atomic_at_one_revision(store: Store) -> None:
    kv0 = await store.put(b"/x", b"0")
    result = await store.txn(
        [Compare.unchanged_since(b"/x", kv0)],
        [Put(b"/x", b"1"), Put(b"/y", b"1"), Delete(b"/nothing")],
    )
    assert result.succeeded
    x, y = await store.get(b"/x"), await store.get(b"/y")
    assert x is not None and y is not None
    assert x.mod_revision == y.mod_revision == result.revision == kv0 + 1
    stale = await store.txn([Compare.unchanged_since(b"/x", kv0)], [Put(b"/x", b"2")])
    assert not stale.succeeded


async def test_compare_on_version_and_ordering(store: Store) -> None:
    await store.put(b"/v", b"a")
    await store.put(b"/v", b"b")
    assert (await store.txn([Compare(b"/v", "version", ">", 1)], [])).succeeded
    assert not (await store.txn([Compare(b"/v", "version", "<", 2)], [])).succeeded
    assert (await store.txn([Compare(b"/v", "value", "!=", b"a")], [])).succeeded


async def test_lease_keys_go_with_revoke_and_watch_sees_it(store: Store) -> None:
    lease = await store.grant(5)
    await store.put(b"/n/node1", b"up", lease=lease.id)
    rev = await store.put(b"/n/node2", b"up")
    events = store.watch(b"/n/", rev + 1)
    await store.revoke(lease.id)
    assert await store.get(b"/n/node1") is None
    assert await store.get(b"/n/node2") is not None
    got = await take(events, 1)
    assert (got[0].kind, got[0].key) == ("delete", b"/n/node1")
    with pytest.raises(LeaseNotFound):
        await store.keepalive(lease.id)
    await store.revoke(lease.id)  # revoking a gone lease is not an error


async def test_put_with_unknown_lease_is_refused(store: Store) -> None:
    with pytest.raises(LeaseNotFound):
        await store.put(b"/k", b"v", lease=0x7777)
    assert await store.get(b"/k") is None


async def test_keepalive_returns_ttl(store: Store) -> None:
    lease = await store.grant(3)
    assert lease.ttl >= 3
    assert await store.keepalive(lease.id) >= 3


async def test_watch_replays_history_once_then_live(store: Store) -> None:
    first = await store.put(b"/w/a", b"1")
    await store.put(b"/w/b", b"2")
    await store.put(b"/other", b"x")
    await store.delete(b"/w/a")
    events = store.watch(b"/w/", first)
    replay = await take(events, 3)
    assert [(e.kind, e.key, e.value) for e in replay] == [
        ("put", b"/w/a", b"1"),
        ("put", b"/w/b", b"2"),
        ("delete", b"/w/a", b""),
    ]
    await store.put(b"/w/c", b"3")
    live = await take(events, 1)
    assert (live[0].key, live[0].value) == (b"/w/c", b"3")
    assert [e.revision for e in [*replay, *live]] == sorted({e.revision for e in [*replay, *live]})


async def test_watch_of_compacted_history_raises(store: Store) -> None:
    first = await store.put(b"/c", b"1")
    await store.put(b"/c", b"2")
    last = await store.put(b"/c", b"3")
    await store.compact(last)  # type: ignore[attr-defined]
    with pytest.raises(CompactedError) as caught:
        await take(store.watch(b"/c", first), 1)
    assert caught.value.compact_revision >= last - 1
