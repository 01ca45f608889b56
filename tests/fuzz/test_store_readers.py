"""The agent's readers of the store skip a malformed record with a counted drop and one clear
log line, and the agent loop goes on (the store is writable by others: an older or newer
corral, an operator's ``etcdctl``, a bug)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import pytest
from hypothesis import given

from corral.agent.actuator import add_failure, read_requests
from corral.agent.assigned import Registration, read_desired
from corral.agent.lb import LbDuty
from corral.agent.node import Agent
from corral.core.clock import ManualClock
from corral.records import DROPS, AssignRecord, FailCountRecord, RecordDrops
from corral.records.cluster import AssignedInstance
from corral.store import Keys, MemoryStore
from tests.agent.test_rule7 import Refusing, no_check
from tests.fuzz.budget import fuzz, mutated

SPEC = """
cluster: r7
store: {etcd: {endpoints: ["http://127.0.0.1:1"]}}
nodes:
  n1: {address: 127.0.0.1}
  n2: {address: 127.0.0.2}
resources:
  svc: {process: /bin/true, mode: active-passive, prefer: {n1: 100}}
"""
KEYS = Keys("r7")
GOOD_ASSIGN = AssignRecord((AssignedInstance("n1", "started", None, 5),)).dump()


def drops() -> dict[str, object]:
    return DROPS.as_dict()


async def test_each_reader_skips_counts_and_says_a_malformed_value(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from corral.spec import load_spec_text

    spec, store = load_spec_text(SPEC), MemoryStore()
    for key in (
        KEYS.assign("svc"),
        KEYS.admin("maintenance"),
        b"/corral/r7/fenced/n2",
        b"/corral/r7/status/n2/svc",
        KEYS.lb("n2"),
        b"/corral/r7/requests/n1/svc",
    ):
        await store.put(key, b'{"instances": 5, "v": "x"')
    before = drops()
    with caplog.at_level(logging.WARNING, logger="corral.records"):
        desired, frozen, stale = await read_desired(store, KEYS, spec, Registration("n1", 5), {})
        view = await LbDuty(store, KEYS, "n1", ManualClock()).view(spec)
        requests = await read_requests(store, b"/corral/r7/requests/n1/")
        await read_desired(store, KEYS, spec, Registration("n1", 5), {})  # read again
    assert (desired, frozen, stale) == ({}, set(), set())  # nothing assigned, nothing frozen
    assert view.online == set() and view.health == {}
    assert [r.valid for r in requests] == [False]
    after = drops()
    assert after["records"] == before["records"] + 5  # type: ignore[operator]
    assert after["skipped"] == before["skipped"] + 7  # type: ignore[operator]
    said = [r.getMessage() for r in caplog.records if "malformed record" in r.getMessage()]
    assert len(said) == 5  # once per value, not per read
    assert any(
        m.startswith("skipped a malformed record /corral/r7/admin/maintenance (revision 3): ")
        and "not JSON" in m
        for m in said
    ), said


async def test_a_failure_over_a_malformed_count_starts_again_and_is_counted() -> None:
    store, key = MemoryStore(), KEYS.failcount("n1", "svc")
    await store.put(key, b"[1, 2]")
    before = drops()["records"]
    assert await add_failure(store, key, 100.0, "exit 1")
    kv = await store.get(key)
    assert kv is not None and FailCountRecord.read(kv.value).count == 1
    assert drops()["records"] == before + 1  # type: ignore[operator]


def test_one_value_is_said_once_and_the_memory_is_bounded() -> None:
    counts = RecordDrops()
    for revision in range(5000):
        counts.skip(b"/corral/c/assign/x", revision, "not JSON")
    counts.skip(b"/corral/c/assign/x", 4999, "not JSON")
    counts.skip(b"odd", 1, "not JSON")
    assert counts.as_dict() == {
        "skipped": 5002,
        "records": 5001,
        "by_section": {"assign": 5000, "?": 1},
    }


@fuzz(60)
@given(mutated([GOOD_ASSIGN]), mutated([b'{"instances":["db@n1"],"v":1}']))
def test_mutated_assignments_and_maintenance_never_break_the_read(
    assign: bytes, maintenance: bytes
) -> None:
    from corral.spec import load_spec_text

    async def read() -> None:
        store = MemoryStore()
        await store.put(KEYS.assign("svc"), assign)
        await store.put(KEYS.admin("maintenance"), maintenance)
        desired, _, _ = await read_desired(
            store, KEYS, load_spec_text(SPEC), Registration("n1", 5), {}
        )
        assert set(desired) <= {"svc"}

    asyncio.run(read())


async def test_the_agent_loop_runs_on_over_malformed_records(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Garbage in admin records, an assignment of the other node and a request: the agent
    (controller too, on a one-node store) starts its service all the same, and says so."""
    from corral.spec import load_spec_text

    store, driver = MemoryStore(), Refusing()
    await store.put(KEYS.admin("maintenance"), b"\xff\xfe garbage")
    await store.put(KEYS.admin("bans"), b'{"instances": {"svc": 1}}')
    await store.put(b"/corral/r7/requests/n1/svc", b"null")
    before = drops()["records"]
    agent = Agent(
        load_spec_text(SPEC),
        "n1",
        store,
        state_dir=tmp_path,
        driver_factory=lambda *_: driver,
        checker=no_check,
    )
    with caplog.at_level(logging.WARNING, logger="corral.records"):
        task = asyncio.create_task(agent.run())
        try:
            for _ in range(200):
                if driver.running:
                    break
                await asyncio.sleep(0.05)
            assert driver.running, "the agent never started svc"
            assert not task.done()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert drops()["records"] >= before + 2  # type: ignore[operator]
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "/corral/r7/admin/maintenance" in said and "/corral/r7/admin/bans" in said


@fuzz(100)
@given(mutated([b"a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U=\nMTIzNDU2Nzg5MDEyMzQ1Ng==\n"]))
def test_a_mutated_gossip_key_is_a_keyring_or_a_value_error(value: bytes) -> None:
    """The agent says ``cannot start gossip (retrying): ...`` for a ValueError (registrar)."""
    from corral.agent.membership import cluster_keyring

    async def read() -> None:
        store = MemoryStore()
        await store.put(KEYS.gossip_key, value)
        try:
            ring, _revision = await cluster_keyring(store, KEYS)
        except ValueError:
            return
        assert ring.keys

    asyncio.run(read())
