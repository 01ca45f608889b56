"""``corral keys rotate`` on a store (the in-memory twin) with agents played by ackers: the
phases in order, a member that does not answer, an interrupted run resumed, two runs at once."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Sequence

import pytest

from corral.cli.keys import RotateError, Rotator, read_state, status_view
from corral.records import Event, KeyAckRecord, KeyringRecord, MemberRow, MembersRecord, fingerprint
from corral.store import Compare, Keys, MemoryStore, Op, StoreUnavailable, TxnResult

KEYS = Keys("kr")
OLD = b"o" * 32
NODES = ("n1", "n2", "n3")


class Ackers:
    """Every registered node acknowledges the current keyring (as an agent's member does once
    it applied it), except the frozen ones; ``history`` is what each acknowledged, in order."""

    def __init__(self, store: MemoryStore) -> None:
        self.store, self.frozen = store, set[str]()
        self.history: dict[str, list[tuple[int, tuple[str, ...]]]] = {n: [] for n in NODES}

    async def run(self) -> None:
        while True:
            kv = await self.store.get(KEYS.gossip_key)
            assert kv is not None
            ring = KeyringRecord.read(kv.value)
            for node in NODES:
                done = self.history[node]
                if node not in self.frozen and (not done or done[-1][0] != kv.mod_revision):
                    done.append((kv.mod_revision, ring.fingerprints))
                    ack = KeyAckRecord(kv.mod_revision, ring.fingerprints)
                    await self.store.put(KEYS.key_ack(node), ack.dump())
            await asyncio.sleep(0.005)


@pytest.fixture
async def cluster() -> AsyncIterator[tuple[MemoryStore, Ackers]]:
    async with running(MemoryStore()) as made:
        yield made


@contextlib.asynccontextmanager
async def running(store: MemoryStore) -> AsyncIterator[tuple[MemoryStore, Ackers]]:
    """``store`` with a keyring, three registered nodes, and their ackers running."""
    await store.put(KEYS.gossip_key, KeyringRecord((OLD,)).dump())
    for node in NODES:
        await store.put(KEYS.node(node), b'{"address":"x"}')
    ackers = Ackers(store)
    task = asyncio.create_task(ackers.run())
    try:
        yield store, ackers
    finally:
        task.cancel()


def rotator(store: MemoryStore, key: bytes, timeout: float = 5.0) -> tuple[Rotator, list[str]]:
    said: list[str] = []
    return Rotator(
        store, KEYS, timeout=timeout, poll=0.005, say=said.append, fresh=lambda: key
    ), said


async def ring(store: MemoryStore) -> tuple[bytes, ...]:
    kv = await store.get(KEYS.gossip_key)
    assert kv is not None
    return KeyringRecord.read(kv.value).keys


async def test_every_member_applies_each_phase_before_the_next(
    cluster: tuple[MemoryStore, Ackers],
) -> None:
    store, ackers = cluster
    new = b"n" * 32
    run, said = rotator(store, new)
    results = await run.run()
    assert [r.action for r in results] == ["add", "use", "remove"]
    assert await ring(store) == (new,)
    old, fresh = fingerprint(OLD), fingerprint(new)
    # what every node ran, in order: never a primary some other node could not read yet
    for node in NODES:
        assert [keys for _, keys in ackers.history[node]] == [
            (old,),
            (old, fresh),
            (fresh, old),
            (fresh,),
        ]
    assert (
        said[0] == f"phase 1/3: key {fresh} added, accepted only (revision {results[0].revision})"
    )
    assert said[-1] == f"rotation to key {fresh} finished"
    events = [Event.read(kv.value) for kv in (await store.range(KEYS.event_prefix())).kvs]
    assert [(e.node, e.kind) for e in events] == [("keys", "keys")] * 4
    assert [e.reason.split(" (")[0] for e in events] == [
        f"gossip key phase 1/3: key {fresh} added, accepted only",
        f"gossip key phase 2/3: key {fresh} made primary",
        f"gossip key phase 3/3: keys {old} retired, {fresh} alone",
        f"gossip key rotation to key {fresh} finished",
    ]
    view = status_view(await read_state(store, KEYS))
    assert view["phase"] == "idle" and view["keys"] == [fresh]
    assert all(n["current"] and n["primary"] == fresh for n in view["nodes"].values())
    assert base64.b64encode(new).decode() not in repr(view) + "".join(said)


async def test_a_silent_member_stops_the_rotation_where_everyone_talks_and_a_rerun_finishes(
    cluster: tuple[MemoryStore, Ackers],
) -> None:
    store, ackers = cluster
    new = b"n" * 32
    run, _ = rotator(store, new, timeout=0.3)
    ackers.frozen.add("n3")  # an agent that acknowledges nothing (older than key acks)
    await store.delete(KEYS.key_ack("n3"))
    with pytest.raises(RotateError) as exc:  # checked before the first write: none made
        await run.run()
    assert str(exc.value).startswith("n3 did not apply keyring revision")
    assert "phase 'idle': nothing was changed" in str(exc.value)
    assert await ring(store) == (OLD,)

    ackers.history["n3"].clear()
    ackers.frozen.clear()
    await asyncio.sleep(0.05)
    ackers.frozen.add("n3")  # n3 applied the keyring, then goes quiet
    run, _ = rotator(store, new, timeout=0.3)
    with pytest.raises(RotateError) as exc:
        await run.run()
    assert "n3 did not apply" in str(exc.value) and "phase 'added'" in str(exc.value)
    assert await ring(store) == (OLD, new)  # everyone still sends with OLD, which all read

    ackers.frozen.clear()  # n3 is back: a new run goes on with the key of the first one
    again, said = rotator(store, b"x" * 32)
    await again.run()
    assert said[0].startswith(f"resuming the rotation to key {fingerprint(new)}")
    assert await ring(store) == (new,)


async def test_a_gossiping_member_without_registration_holds_the_rotation(
    cluster: tuple[MemoryStore, Ackers],
) -> None:
    store, _ = cluster
    view = MembersRecord((MemberRow("n1", "alive"), MemberRow("n9", "suspect")))
    await store.put(KEYS.members("n1"), view.dump())
    run, _ = rotator(store, b"n" * 32, timeout=0.2)
    with pytest.raises(RotateError, match=r"^n9 did not apply"):
        await run.run()


async def test_two_rotations_at_once_one_wins_the_other_is_refused(
    cluster: tuple[MemoryStore, Ackers],
) -> None:
    store, _ = cluster
    first, _ = rotator(store, b"1" * 32)
    second, _ = rotator(store, b"2" * 32)
    outcomes = await asyncio.gather(first.run(), second.run(), return_exceptions=True)
    refused = [o for o in outcomes if isinstance(o, RotateError)]
    assert len(refused) == 1, outcomes
    assert "another `corral keys rotate` is running or ran" in str(refused[0])
    final = await ring(store)
    assert len(final) == 1 and final[0] in (b"1" * 32, b"2" * 32)
    assert (await read_state(store, KEYS)).phase()[0] == "idle"


async def test_no_keyring_in_the_store_is_refused_before_anything() -> None:
    run, _ = rotator(MemoryStore(), b"n" * 32)
    with pytest.raises(RotateError, match="no readable gossip keyring"):
        await run.run()


class LostReply(MemoryStore):
    """The second transaction is applied but its reply is lost (etcd's "outcome unknown")."""

    txns = 0

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        self.txns += 1
        result = await super().txn(compares, success, failure)
        if self.txns == 2:
            raise StoreUnavailable("the reply was lost")
        return result


async def test_a_write_whose_reply_was_lost_is_read_back_by_the_next_run() -> None:
    new = b"n" * 32
    async with running(LostReply()) as (store, _):
        run, said = rotator(store, new)
        with pytest.raises(StoreUnavailable):
            await run.run()
        assert said[0].startswith("phase 1/3") and await ring(store) == (new, OLD)
        again, said = rotator(store, b"x" * 32)
        await again.run()
        assert said[0].startswith(f"resuming the rotation to key {fingerprint(new)}")
        assert said[1].startswith("phase 3/3")  # phase 2 was written: not written again
        assert await ring(store) == (new,)
