"""The agent adds a failure with a compare-and-swap (``actuator.add_failure``): the controller
rewrites failure records too (it moves systemic failures out of the count), so an agent that
read the record before the controller's rewrite tries again over it, and neither write undoes
the other."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from corral.agent.actuator import COUNT_TRIES, add_failure
from corral.records import FailCountRecord
from corral.store import Compare, MemoryStore, Op, Put, TxnResult

KEY = b"/corral/t/failcounts/n1/web"


class Rewriting(MemoryStore):
    """Before each of the next ``races`` transactions, the controller rewrites the record:
    the oldest listed failure still counted is moved out of the count."""

    def __init__(self, races: int) -> None:
        super().__init__()
        self.races = races

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        if self.races:
            self.races -= 1
            kv = await self.get(KEY)
            assert kv is not None
            record = FailCountRecord.read(kv.value)
            oldest = next(r.at for r in record.recent if not r.systemic)
            await self.put(KEY, record.excuse({oldest}).dump())
        return await super().txn(compares, success, failure)


def test_a_failure_added_over_a_rewrite_keeps_both() -> None:
    async def scenario() -> FailCountRecord:
        store = Rewriting(races=0)
        await add_failure(store, KEY, 10.0, "check failed")
        store.races = 1  # the controller rewrites between the agent's read and its write
        assert await add_failure(store, KEY, 20.0, "check failed")
        kv = await store.get(KEY)
        assert kv is not None
        return FailCountRecord.read(kv.value)

    record = asyncio.run(scenario())
    # a blind put would have written count 2 over the rewrite, undoing it
    assert (record.count, record.systemic) == (1, 1)
    assert [(r.at, r.systemic) for r in record.recent] == [(10.0, True), (20.0, False)]


def test_an_agent_that_loses_every_try_says_so() -> None:
    async def scenario() -> tuple[bool, FailCountRecord]:
        store = Rewriting(races=0)
        for at in range(COUNT_TRIES + 1):
            await add_failure(store, KEY, float(at), "check failed")
        store.races = COUNT_TRIES
        added = await add_failure(store, KEY, 99.0, "check failed")
        kv = await store.get(KEY)
        assert kv is not None
        return added, FailCountRecord.read(kv.value)

    added, record = asyncio.run(scenario())
    assert not added
    assert 99.0 not in [r.at for r in record.recent]
    assert (record.count, record.systemic) == (1, COUNT_TRIES)


def test_the_first_failure_creates_the_record_only_if_it_is_absent() -> None:
    async def scenario() -> FailCountRecord:
        store = MemoryStore()
        await store.txn([], [Put(KEY, FailCountRecord(5, 1.0, "old").dump())])
        await add_failure(store, KEY, 2.0, "new")
        kv = await store.get(KEY)
        assert kv is not None
        return FailCountRecord.read(kv.value)

    assert asyncio.run(scenario()).count == 6
