"""The controller says what it skipped: one ``record`` event per malformed record (key and
revision), not one per step; a record written malformed again is said again."""

from __future__ import annotations

from corral.agent.controller import Controller
from corral.records import Event, encode
from corral.spec import load_spec_text
from corral.store import Keys, MemoryStore

SPEC = load_spec_text(
    "cluster: t\nnodes:\n  n1: {address: 198.18.0.1}\n  n2: {address: 198.18.0.2, kind: remote}\n"
    "resources:\n  web: {process: /bin/web}\n"
)
KEYS = Keys("t")


async def record_events(store: MemoryStore) -> list[str]:
    kvs = (await store.range(KEYS.event_prefix())).kvs
    return [e.reason for kv in kvs if (e := Event.read(kv.value)).kind == "record"]


async def test_each_malformed_record_is_said_once_per_revision() -> None:
    store = MemoryStore()
    lease = (await store.grant(60)).id
    for node in SPEC.nodes:
        await store.put(KEYS.node(node), encode({}), lease=lease)
    controller = Controller(store, KEYS, "n1", lambda: SPEC)
    assert await controller.campaign(lease)
    await controller.step()
    assert await record_events(store) == []
    bans = await store.put(KEYS.admin("bans"), b"not json")
    fails = await store.put(KEYS.failcount("n2", "web"), b'{"count": "many"}')
    await controller.step()
    assert await record_events(store) == [
        f"skipped a malformed record: /corral/t/admin/bans (revision {bans}): not JSON",
        f"skipped a malformed record: /corral/t/failcounts/n2/web (revision {fails}): "
        "count is not an integer or null: 'many'",
    ]
    assert await controller.step() == "no change"  # said once, not at every step
    assert len(await record_events(store)) == 2
    await store.put(KEYS.admin("bans"), b"[]")  # a new revision, malformed again
    await controller.step()
    assert len(await record_events(store)) == 3
    await store.put(KEYS.admin("bans"), encode({"instances": []}))  # mended
    await controller.step()
    assert len(await record_events(store)) == 3
