"""The Galera bootstrap claim and writer record on the memory store and on real etcd
(:mod:`corral.records.galera`; DESIGN rule 6): concurrent claimers, exactly one wins; a deposed
controller never claims; the claim lives exactly as long as the claimant's lease."""

from __future__ import annotations

import asyncio

from corral.records.galera import (
    BootstrapClaim,
    ReportRecord,
    Txn,
    WriterRecord,
    claim_txn,
    clear_txn,
    read_galera,
    release_txn,
    writer_txn,
)
from corral.store import Compare, Keys, Put, Store, TxnResult
from tests.galera_core.transcript import report
from tests.store.conftest import Elapse

KEYS = Keys("c1")
RES = "galera"
NODES = ("ctl1", "ctl2", "ctl3", "ctl4", "ctl5")


async def run(store: Store, txn: Txn) -> TxnResult:
    return await store.txn(txn.compares, txn.success)


async def become_controller(store: Store, name: str) -> int:
    """Take the controller key (under a lease of its own); return the token."""
    lease = await store.grant(30)
    got = await store.txn(
        [Compare.missing(KEYS.controller)], [Put(KEYS.controller, name.encode(), lease.id)]
    )
    assert got.succeeded
    return got.revision


async def register(store: Store, node: str, ttl: int = 30) -> tuple[int, int]:
    """Register ``node`` under a fresh lease: (its registration revision, the lease)."""
    lease = await store.grant(ttl)
    reg = await store.put(KEYS.node(node), b"{}", lease=lease.id)
    return reg, lease.id


def claim(node: str, reg: int) -> BootstrapClaim:
    return BootstrapClaim(node, reg, "5ee3", 120, force=True, reason="test", by="ctl1")


async def test_concurrent_claimers_exactly_one_wins(store: Store) -> None:
    token = await become_controller(store, "ctl1")
    regs = {n: await register(store, n) for n in NODES}
    txns = [claim_txn(KEYS, RES, claim(n, r), token, lease) for n, (r, lease) in regs.items()]
    results = await asyncio.gather(*(run(store, t) for t in txns))
    winners = [n for n, r in zip(NODES, results, strict=True) if r.succeeded]
    assert len(winners) == 1
    got = read_galera(KEYS, RES, (await store.range(KEYS.galera(RES))).kvs)
    assert got.claim is not None and got.claim[0].node == winners[0]
    # and later attempts fail too, for every node, the winner included
    for n, (r, lease) in regs.items():
        assert not (await run(store, claim_txn(KEYS, RES, claim(n, r), token, lease))).succeeded


async def test_a_deposed_controller_never_claims(store: Store) -> None:
    old = await become_controller(store, "ctl1")
    await store.delete(KEYS.controller)  # ctl1's key is gone (its lease expired): deposed
    new = await become_controller(store, "ctl2")
    (r1, l1), (r2, l2) = await register(store, "ctl1"), await register(store, "ctl2")
    stale, fresh = await asyncio.gather(
        run(store, claim_txn(KEYS, RES, claim("ctl1", r1), old, l1)),
        run(store, claim_txn(KEYS, RES, claim("ctl2", r2), new, l2)),
    )
    assert not stale.succeeded and fresh.succeeded


async def test_a_claim_for_an_old_registration_is_refused(store: Store) -> None:
    token = await become_controller(store, "ctl1")
    old_reg, _ = await register(store, "ctl2")
    new_reg, lease = await register(store, "ctl2")  # it died and registered again
    assert not (
        await run(store, claim_txn(KEYS, RES, claim("ctl2", old_reg), token, lease))
    ).succeeded
    assert (await run(store, claim_txn(KEYS, RES, claim("ctl2", new_reg), token, lease))).succeeded


async def test_the_claim_goes_with_the_claimants_lease_then_another_may_claim(
    store: Store,
) -> None:
    """Rule 2: the claimant fenced (its lease revoked) -> the claim is gone; before that no
    second claim succeeds."""
    token = await become_controller(store, "ctl1")
    (r2, l2), (r3, l3) = await register(store, "ctl2"), await register(store, "ctl3")
    assert (await run(store, claim_txn(KEYS, RES, claim("ctl2", r2), token, l2))).succeeded
    assert not (await run(store, claim_txn(KEYS, RES, claim("ctl3", r3), token, l3))).succeeded
    await store.revoke(l2)
    assert await store.get(KEYS.galera_bootstrap(RES)) is None
    assert (await run(store, claim_txn(KEYS, RES, claim("ctl3", r3), token, l3))).succeeded


async def test_the_claim_expires_with_the_lease(store: Store, elapse: Elapse) -> None:
    token = await become_controller(store, "ctl1")
    reg, lease = await register(store, "ctl2", ttl=1)
    assert (await run(store, claim_txn(KEYS, RES, claim("ctl2", reg), token, lease))).succeeded
    for _ in range(40):  # etcd: TTL plus up to 0.5 s; bounded at ~10 s
        await elapse(0.25)
        if await store.get(KEYS.galera_bootstrap(RES)) is None:
            break
    assert await store.get(KEYS.galera_bootstrap(RES)) is None


async def test_clear_deletes_only_the_claim_it_read(store: Store) -> None:
    token = await become_controller(store, "ctl1")
    reg, lease = await register(store, "ctl2")
    done = await run(store, claim_txn(KEYS, RES, claim("ctl2", reg), token, lease))
    assert not (await run(store, clear_txn(KEYS, RES, token, done.revision - 1))).succeeded
    assert not (await run(store, clear_txn(KEYS, RES, token + 1, done.revision))).succeeded
    assert (await run(store, clear_txn(KEYS, RES, token, done.revision))).succeeded
    assert await store.get(KEYS.galera_bootstrap(RES)) is None


async def test_two_writer_changes_from_one_read_exactly_one_wins(store: Store) -> None:
    token = await become_controller(store, "ctl1")
    first = await run(store, writer_txn(KEYS, RES, WriterRecord("ctl1", "first"), token, 0))
    assert first.succeeded
    both = await asyncio.gather(
        run(store, writer_txn(KEYS, RES, WriterRecord("ctl2", "a"), token, first.revision)),
        run(store, writer_txn(KEYS, RES, WriterRecord("ctl3", "b"), token, first.revision)),
    )
    assert sorted(r.succeeded for r in both) == [False, True]
    assert not (await run(store, writer_txn(KEYS, RES, WriterRecord("x"), token, 0))).succeeded


async def test_reports_round_trip_through_the_store(store: Store) -> None:
    reg, lease = await register(store, "ctl1")
    state = report(["ctl1", "grastate=5ee3:-1", "recovered=5ee3:42", "view=5"])
    await store.put(
        KEYS.galera_report(RES, "ctl1"), ReportRecord.from_state(state, 1.5).dump(), lease
    )
    await store.put(KEYS.galera_report(RES, "ctl2"), b"{not json", lease)
    got = read_galera(KEYS, RES, (await store.range(KEYS.galera(RES))).kvs)
    assert got.states() == {"ctl1": state}
    assert [s.key for s in got.skipped] == [KEYS.galera_report(RES, "ctl2")]
    await store.revoke(lease)  # the node died: no report, its state is unknown again
    assert read_galera(KEYS, RES, (await store.range(KEYS.galera(RES))).kvs).reports == {}
    assert reg > 0


async def test_a_failed_claimant_gives_its_claim_back_and_only_its_own(store: Store) -> None:
    token = await become_controller(store, "ctl1")
    (r2, l2), (r3, l3) = await register(store, "ctl2"), await register(store, "ctl3")
    mine = await run(store, claim_txn(KEYS, RES, claim("ctl2", r2), token, l2))
    assert (await run(store, release_txn(KEYS, RES, mine.revision))).succeeded
    theirs = await run(store, claim_txn(KEYS, RES, claim("ctl3", r3), token, l3))
    assert theirs.succeeded
    # ctl2's late release (of the claim it read before) leaves ctl3's claim alone
    assert not (await run(store, release_txn(KEYS, RES, mine.revision))).succeeded
    got = read_galera(KEYS, RES, (await store.range(KEYS.galera(RES))).kvs)
    assert got.claim is not None and got.claim[0].node == "ctl3"
