"""One contract, two backends: every test here runs on the in-memory store and on a real etcd
member (the ``store`` fixture), so the twin cannot drift from etcd unnoticed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from corral.store import (
    CompactedError,
    Compare,
    Delete,
    LeaseNotFound,
    Op,
    Put,
    Store,
    StoreError,
    WatchEvent,
)

from .conftest import Elapse


async def take(
    events: AsyncIterator[WatchEvent], count: int, timeout: float = 5.0
) -> list[WatchEvent]:
    async def collect() -> list[WatchEvent]:
        out: list[WatchEvent] = []
        async for event in events:
            out.append(event)
            if len(out) == count:
                break
        return out

    return await asyncio.wait_for(collect(), timeout)


async def nothing_more(events: AsyncIterator[WatchEvent], wait: float = 0.2) -> bool:
    try:
        await asyncio.wait_for(anext(events), wait)
    except TimeoutError:
        return True
    return False


def brief(events: list[WatchEvent]) -> list[tuple[str, bytes, bytes]]:
    return [(e.kind, e.key, e.value) for e in events]


# --- key-value --------------------------------------------------------------------------------


async def test_revisions_start_like_etcd_and_versions_count_puts(store: Store) -> None:
    assert await store.get(b"/a") is None
    assert await store.put(b"/a", b"1") == 2  # a fresh store is at revision 1
    r2 = await store.put(b"/a", b"2")
    kv = await store.get(b"/a")
    assert kv is not None
    assert (kv.value, kv.version, kv.create_revision, kv.mod_revision, kv.lease) == (
        b"2",
        2,
        2,
        r2,
        0,
    )
    await store.delete(b"/a")
    r4 = await store.put(b"/a", b"again")
    kv = await store.get(b"/a")
    assert kv is not None and (kv.version, kv.create_revision) == (1, r4)


async def test_range_is_by_prefix_sorted_with_its_revision(store: Store) -> None:
    for key in (b"/p/b", b"/p/a", b"/q/a", b"/p"):
        await store.put(key, key)
    result = await store.range(b"/p/")
    assert [kv.key for kv in result.kvs] == [b"/p/a", b"/p/b"]
    last = await store.put(b"/z", b"")
    assert (await store.range(b"/p/")).revision == last
    assert [kv.key for kv in (await store.range(b"")).kvs] == [
        b"/p",
        b"/p/a",
        b"/p/b",
        b"/q/a",
        b"/z",
    ]
    spans = [kv.key for kv in (await store.range(b"/p/a", end=b"/q/a")).kvs]
    assert spans == [b"/p/a", b"/p/b"]  # a span: its start in, its end out


async def test_delete_counts_prefix_and_missing_keys(store: Store) -> None:
    await store.put(b"/d/1", b"")
    await store.put(b"/d/2", b"")
    before = await store.put(b"/e", b"")
    assert await store.delete(b"/missing") == 0  # not an error, and not a write
    assert (await store.range(b"/")).revision == before
    assert await store.delete(b"/e") == 1
    assert await store.delete(b"/d/", prefix=True) == 2
    assert (await store.range(b"/")).kvs == []


# --- transactions -----------------------------------------------------------------------------


async def test_txn_compare_and_swap_runs_one_branch(store: Store) -> None:
    ok = await store.txn([Compare.missing(b"/leader")], [Put(b"/leader", b"n1")])
    assert ok.succeeded and ok.branch == "success"
    lost = await store.txn(
        [Compare.missing(b"/leader")], [Put(b"/leader", b"n2")], [Put(b"/lost", b"n2")]
    )
    assert not lost.succeeded and lost.branch == "failure"
    assert lost.revision == ok.revision + 1  # the failure branch wrote
    leader, loser = await store.get(b"/leader"), await store.get(b"/lost")
    assert leader is not None and leader.value == b"n1"
    assert loser is not None and loser.value == b"n2"
    # a deposed writer (fencing token by value) cannot write
    fenced = await store.txn([Compare.value_is(b"/leader", b"n2")], [Put(b"/assign", b"x")])
    assert not fenced.succeeded and await store.get(b"/assign") is None
    assert fenced.revision == lost.revision  # an empty branch is not a write


async def test_txn_is_atomic_at_one_revision(store: Store) -> None:
    kv0 = await store.put(b"/x", b"0")
    await store.put(b"/old", b"")
    result = await store.txn(
        [Compare.unchanged_since(b"/x", kv0), Compare.exists(b"/old")],
        [Put(b"/x", b"1"), Put(b"/y", b"1"), Delete(b"/old"), Delete(b"/nothing")],
    )
    assert result.succeeded
    x, y = await store.get(b"/x"), await store.get(b"/y")
    assert x is not None and y is not None
    assert x.mod_revision == y.mod_revision == result.revision == kv0 + 2
    assert await store.get(b"/old") is None
    stale = await store.txn([Compare.unchanged_since(b"/x", kv0)], [Put(b"/x", b"2")])
    assert not stale.succeeded


async def test_compare_targets_and_operators(store: Store) -> None:
    first = await store.put(b"/v", b"a")
    await store.put(b"/v", b"b")

    async def holds(c: Compare) -> bool:
        return (await store.txn([c], [])).succeeded

    assert await holds(Compare(b"/v", "version", ">", 1))
    assert not await holds(Compare(b"/v", "version", "<", 2))
    assert await holds(Compare(b"/v", "value", "!=", b"a"))
    assert await holds(Compare(b"/v", "value", ">", b"a"))
    assert await holds(Compare(b"/v", "create_revision", "==", first))
    assert await holds(Compare(b"/v", "mod_revision", ">", first))
    # a missing key: version and revisions 0, and no value compare holds (etcd's rule)
    for op in ("==", "!=", "<", ">"):
        assert not await holds(Compare(b"/none", "value", op, b""))
    assert await holds(Compare(b"/none", "version", "==", 0))
    assert await holds(Compare.missing(b"/none"))
    assert not await holds(Compare.exists(b"/none"))
    assert not await holds(Compare.missing(b"/v"))


def test_compare_checks_its_value_type() -> None:
    with pytest.raises(TypeError):
        Compare(b"/k", "value", "==", 1)
    with pytest.raises(TypeError):
        Compare(b"/k", "version", "==", b"1")


async def test_txn_writing_a_key_twice_is_refused_and_applies_nothing(store: Store) -> None:
    before = await store.put(b"/k", b"0")
    twice: list[list[Op]] = [
        [Put(b"/k", b"1"), Put(b"/k", b"2")],
        [Delete(b"/", prefix=True), Put(b"/k", b"3")],
    ]
    for ops in twice:
        with pytest.raises(StoreError):
            await store.txn([], ops)
    assert (await store.range(b"/")).revision == before


async def test_txn_and_put_on_a_gone_lease_raise_lease_not_found(store: Store) -> None:
    lease = await store.grant(5)
    await store.revoke(lease.id)
    before = await store.put(b"/k", b"0")
    with pytest.raises(LeaseNotFound):
        await store.put(b"/k", b"v", lease=lease.id)
    with pytest.raises(LeaseNotFound):
        await store.put(b"/fresh", b"v", lease=0x7777)
    with pytest.raises(LeaseNotFound):
        await store.txn([], [Put(b"/a", b""), Put(b"/b", b"", lease=lease.id)])
    # the branch not taken may name a gone lease
    assert (await store.txn([], [], [Put(b"/c", b"", lease=lease.id)])).succeeded
    assert (await store.range(b"/")).revision == before


# --- leases -----------------------------------------------------------------------------------


async def test_lease_grant_keepalive_info(store: Store) -> None:
    lease = await store.grant(3)
    assert lease.ttl >= 3
    assert await store.keepalive(lease.id) == lease.ttl
    await store.put(b"/n/b", b"", lease=lease.id)
    await store.put(b"/n/a", b"", lease=lease.id)
    info = await store.lease_info(lease.id)
    assert (info.id, info.ttl, info.keys) == (lease.id, lease.ttl, (b"/n/a", b"/n/b"))
    assert 0 < info.remaining <= lease.ttl
    kv = await store.get(b"/n/a")
    assert kv is not None and kv.lease == lease.id


async def test_revoke_deletes_its_keys_at_one_revision_with_delete_events(store: Store) -> None:
    lease = await store.grant(5)
    await store.put(b"/n/node2", b"up", lease=lease.id)
    await store.put(b"/n/node1", b"up", lease=lease.id)
    rev = await store.put(b"/n/node3", b"up")
    events = store.watch(b"/n/", rev + 1)
    await store.revoke(lease.id)
    assert await store.get(b"/n/node1") is None and await store.get(b"/n/node2") is None
    assert await store.get(b"/n/node3") is not None
    got = await take(events, 2)
    assert brief(got) == [("delete", b"/n/node1", b""), ("delete", b"/n/node2", b"")]
    assert got[0].revision == got[1].revision == rev + 1
    with pytest.raises(LeaseNotFound):
        await store.keepalive(lease.id)
    with pytest.raises(LeaseNotFound):
        await store.lease_info(lease.id)
    await store.revoke(lease.id)  # revoking a gone lease is not an error


async def test_a_put_without_the_lease_detaches_the_key(store: Store) -> None:
    lease = await store.grant(5)
    await store.put(b"/k", b"leased", lease=lease.id)
    await store.put(b"/k", b"mine now")
    await store.revoke(lease.id)
    kv = await store.get(b"/k")
    assert kv is not None and kv.value == b"mine now" and kv.lease == 0


async def test_lease_lives_while_kept_alive_and_expires_after(store: Store, elapse: Elapse) -> None:
    lease = await store.grant(1)
    rev = await store.put(b"/nodes/n1", b"up", lease=lease.id)
    events = store.watch(b"/nodes/", rev + 1)
    for _ in range(3):  # 1.8 s in all, TTL 1 s: alive only thanks to the keepalives
        await elapse(0.6)
        assert await store.keepalive(lease.id) == lease.ttl
    assert await store.get(b"/nodes/n1") is not None
    await elapse(lease.ttl + 1.2)  # etcd checks expiry every 0.5 s: allow for it
    assert await store.get(b"/nodes/n1") is None
    got = await take(events, 1)
    assert brief(got) == [("delete", b"/nodes/n1", b"")]
    with pytest.raises(LeaseNotFound):
        await store.keepalive(lease.id)


# --- watches ----------------------------------------------------------------------------------


async def test_watch_from_an_old_revision_replays_history_once_then_goes_live(
    store: Store,
) -> None:
    first = await store.put(b"/w/a", b"1")
    await store.put(b"/w/b", b"2")
    await store.put(b"/other", b"x")
    await store.delete(b"/w/a")
    events = store.watch(b"/w/", first)
    replay = await take(events, 3)
    assert brief(replay) == [
        ("put", b"/w/a", b"1"),
        ("put", b"/w/b", b"2"),
        ("delete", b"/w/a", b""),
    ]
    await store.put(b"/w/c", b"3")
    live = await take(events, 1)
    assert brief(live) == [("put", b"/w/c", b"3")]
    revisions = [e.revision for e in [*replay, *live]]
    assert revisions == sorted(set(revisions))
    assert await nothing_more(events)


async def test_watch_delivers_a_txn_in_op_order_at_one_revision(store: Store) -> None:
    start = await store.put(b"/t/z", b"0")
    events = store.watch(b"/t/", start + 1)
    result = await store.txn([], [Put(b"/t/m", b"1"), Delete(b"/t/z"), Put(b"/t/a", b"2")])
    got = await take(events, 3)
    assert brief(got) == [("put", b"/t/m", b"1"), ("delete", b"/t/z", b""), ("put", b"/t/a", b"2")]
    assert {e.revision for e in got} == {result.revision}


async def test_watch_with_prev_kv(store: Store) -> None:
    r1 = await store.put(b"/p/k", b"old")
    events = store.watch(b"/p/", r1 + 1, prev_kv=True)
    await store.put(b"/p/k", b"new")
    await store.delete(b"/p/k")
    await store.put(b"/p/fresh", b"1")
    put, delete, fresh = await take(events, 3)
    assert put.prev is not None and (put.prev.value, put.prev.mod_revision) == (b"old", r1)
    assert delete.prev is not None and delete.prev.value == b"new"
    assert fresh.prev is None
    plain = await take(store.watch(b"/p/", r1 + 1), 1)
    assert plain[0].prev is None  # not asked for


async def test_a_watch_event_carries_the_key_as_stored(store: Store) -> None:
    """A put's event has the key as a read would return it (create revision, version, lease):
    enough to keep a copy of a prefix from the watch alone."""
    lease = await store.grant(30)
    r1 = await store.put(b"/s/k", b"1", lease=lease.id)
    events = store.watch(b"/s/", r1)
    await store.put(b"/s/k", b"2", lease=lease.id)
    await store.delete(b"/s/k")
    first, second, gone = await take(events, 3)
    assert first.kv is not None and second.kv is not None
    assert (first.kv.value, first.kv.create_revision, first.kv.version) == (b"1", r1, 1)
    assert (second.kv.create_revision, second.kv.version, second.kv.lease) == (r1, 2, lease.id)
    assert second.kv.mod_revision == second.revision
    assert gone.kind == "delete" and gone.kv is None


async def test_watch_from_zero_starts_at_the_next_write(store: Store) -> None:
    await store.put(b"/z/old", b"")
    events = store.watch(b"/z/", 0)
    first = asyncio.ensure_future(anext(events))
    await asyncio.sleep(0.2)  # the watch is established before the write
    rev = await store.put(b"/z/new", b"")
    event = await asyncio.wait_for(first, 5)
    assert (event.key, event.revision) == (b"/z/new", rev)


async def test_leaving_a_watch_ends_it(store: Store) -> None:
    rev = await store.put(b"/l/a", b"")
    events = store.watch(b"/l/", rev)
    assert len(await take(events, 1)) == 1
    await events.aclose()  # type: ignore[attr-defined]
    await store.put(b"/l/b", b"")  # nobody listens: no error, no leak
    assert (await store.get(b"/l/b")) is not None


async def test_compaction(store: Store) -> None:
    first = await store.put(b"/c", b"1")
    second = await store.put(b"/c", b"2")
    last = await store.put(b"/c", b"3")
    await store.compact(second)
    with pytest.raises(CompactedError) as caught:
        await take(store.watch(b"/c", first), 1)
    assert caught.value.compact_revision == second
    kept = await take(store.watch(b"/c", second), 2)  # the compaction revision is still kept
    assert [e.value for e in kept] == [b"2", b"3"]
    await store.compact(first)  # at or below an earlier compaction: nothing to do
    await store.compact(second)
    with pytest.raises(StoreError):
        await store.compact(last + 10)
    kv = await store.get(b"/c")
    assert kv is not None and kv.value == b"3"  # compaction never drops current data


async def test_closed_store_refuses_calls(store: Store) -> None:
    await store.put(b"/k", b"")
    await store.close()
    with pytest.raises(StoreError):
        await store.get(b"/k")


async def test_empty_keys_are_refused(store: Store) -> None:
    for call in (store.get(b""), store.put(b"", b"v")):
        with pytest.raises(StoreError):
            await call
