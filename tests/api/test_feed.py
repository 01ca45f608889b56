"""The change feed over the in-memory store (which behaves as etcd's watch does, compaction
included): long polls, SSE ids and resumes, compaction never a silent gap, no secret sent."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator
from typing import Any

import httpx
import pytest

from corral.agent.snapshot import AgentSnapshot
from corral.api import Reader, Source, make_app
from corral.api.feed import FeedError, position
from corral.api.sse import stream
from corral.auth.tokens import create
from corral.spec import load_spec_text
from corral.store import Keys, Put
from corral.store.memory import MemoryStore

SPEC = load_spec_text("""
cluster: feed
nodes: {n1: {address: 198.18.0.11}}
resources:
  web: {process: "sleep 1000"}
""")
KEYS = Keys("feed")


def snapshot() -> AgentSnapshot:
    now = time.monotonic()
    return AgentSnapshot("feed", "n1", now, time.time(), 3.0, spec=SPEC, lease=1)


def parse(chunk: bytes) -> dict[str, Any]:
    fields = dict(line.split(": ", 1) for line in chunk.decode().strip().splitlines())
    return {"id": fields.get("id"), "event": fields["event"], "data": json.loads(fields["data"])}


async def take(events: AsyncGenerator[bytes, None], n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(10):
        while len(out) < n:
            chunk = await anext(events)
            if not chunk.startswith(b":"):
                out.append(parse(chunk))
    return out


def test_event_ids_parse_and_refuse_nonsense() -> None:
    assert position("5") == (6, 0)  # a snapshot's revision: everything after it
    assert position("5.0") == (5, 1)  # the first change of 5 seen: skip one
    assert position(" 12.3 ") == (12, 4)
    for bad in ("", "x", "5.x", "-1", "5.-2", "1e3"):
        with pytest.raises(FeedError):
            position(bad)


async def test_a_snapshot_then_every_change_with_resumable_ids_and_no_secret() -> None:
    store = MemoryStore()
    reader = Reader(snapshot, lambda: store)
    events = stream(reader, None)
    (first,) = await take(events, 1)
    assert first["event"] == "snapshot" and first["data"]["cluster"] == "feed"
    await store.put(KEYS.token("abcdefabcdef"), b'{"secret": 1}')  # never sent
    result = await store.txn([], [Put(KEYS.admin("a"), b"1"), Put(KEYS.admin("b"), b'"x"')])
    got = await take(events, 2)
    assert [g["id"] for g in got] == [f"{result.revision}.0", f"{result.revision}.1"]
    assert [g["data"]["key"] for g in got] == ["admin/a", "admin/b"]
    assert got[1]["data"]["value"] == "x"
    await events.aclose()
    # resumed after the first change of that transaction: the second, and nothing twice
    resumed = stream(reader, position(got[0]["id"]))
    (again,) = await take(resumed, 1)
    assert (again["id"], again["data"]["key"]) == (got[1]["id"], "admin/b")
    await resumed.aclose()


async def test_a_compacted_resume_is_a_reset_with_a_fresh_snapshot_never_a_gap() -> None:
    store = MemoryStore()
    reader = Reader(snapshot, lambda: store)
    old = await store.put(KEYS.admin("a"), b"1")
    for i in range(5):
        await store.put(KEYS.admin("a"), str(i).encode())
    await store.compact((await store.range(KEYS.admin("a"))).revision)
    events = stream(reader, position(str(old)))
    (reset,) = await take(events, 1)
    assert reset["event"] == "reset" and reset["data"]["compacted"] is True
    assert reset["data"]["status"]["cluster"] == "feed"
    await store.put(KEYS.admin("b"), b"2")
    (after,) = await take(events, 1)
    assert after["event"] == "change" and after["data"]["key"] == "admin/b"
    await events.aclose()


async def test_long_polls_wake_on_a_change_time_out_and_say_compaction() -> None:
    store = MemoryStore()
    token, _ = await create(store, KEYS, "vic", "viewer", by="root", now=0.0)
    app = make_app(Source(snapshot), Reader(snapshot, lambda: store))
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://x", headers=auth
    ) as client:
        index = (await client.get("/v1/nodes")).json()["revision"]
        waiting = asyncio.create_task(client.get(f"/v1/nodes?index={index}&wait=30s"))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        await store.put(KEYS.admin("maintenance"), b"{}")
        answer = await asyncio.wait_for(waiting, 10)
        assert answer.json()["revision"] > index
        quiet = await client.get(f"/v1/nodes?index={index + 1}&wait=200ms")
        assert quiet.status_code == 200 and quiet.json()["revision"] == index + 1
        await store.compact(index + 1)
        old = await client.get(f"/v1/nodes?index={index - 1}&wait=30s")
        assert old.json()["compacted"] is True
        for bad, said in [("index=x", "whole number"), ("index=-1", "between 0 and"),
                          ("index=1&wait=soon", "wait: invalid duration")]:  # fmt: skip
            r = await client.get(f"/v1/nodes?{bad}")
            assert r.status_code == 400 and said in r.json()["reason"], bad
