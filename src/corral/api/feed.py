"""The change feed, keyed by the store's revision (etcd's): long polls and Server-Sent Events.

- **Long poll** (Consul's blocking queries), on every read path: ``?index=N&wait=30s`` waits
  until the store holds a public change newer than revision ``N`` (or ``wait`` passes, at most
  ``MAX_WAIT``), then answers as without ``index``; the body's ``revision`` is the next
  ``index``. A change wakes the wait through a watch, not a poll: the answer follows it within
  a watch's delivery.
- **SSE** (``/v1/feed``): first an ``event: snapshot`` (the status view, ``id`` its
  revision), then one ``event: change`` per changed key (``id`` = ``<revision>.<n>``, the n-th
  change of that revision, so a resume never loses or repeats a change of a transaction).
  ``Last-Event-ID`` (or ``?index=``) resumes after that change, with no snapshot.
- **Compaction**: a resume or a long poll older than the store keeps is never a silent gap.
  The feed sends ``event: reset`` with ``{"compacted": true, ...}`` and a fresh snapshot,
  then goes on from it; a long poll answers at once with ``"compacted": true``.

Secrets (API tokens, the gossip key) are never in the feed: changes are filtered by the
viewer's spans (:func:`corral.auth.roles.public_spans`). Each SSE stream holds one watch
and sends a comment line every ``HEARTBEAT`` seconds, so a dead client is noticed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request

from corral.api.params import BadRequest, int_param
from corral.auth.roles import public_spans
from corral.spec.durations import parse_duration
from corral.store import Keys, Store, WatchEvent

MAX_WAIT = 300.0
DEFAULT_WAIT = 30.0
HEARTBEAT = 15.0


class FeedError(BadRequest):
    """A malformed ``index``, ``wait`` or ``Last-Event-ID`` (400)."""


def position(text: str) -> tuple[int, int]:
    """``(revision, changes of it already seen)`` of an event id ``R`` or ``R.n`` (R.n: the
    n-th change of R was the last seen, so n + 1 are skipped)."""
    rev, _, nth = text.strip().partition(".")
    try:
        revision, seen = int(rev), int(nth) + 1 if nth else 0
    except ValueError:
        raise FeedError(f"not a revision: {text[:40]!r}") from None
    if revision < 0 or seen < 0:
        raise FeedError(f"not a revision: {text[:40]!r}")
    return (revision + 1, 0) if not nth else (revision, seen)


def long_poll(request: Request) -> tuple[int, float] | None:
    """``(index, wait seconds)`` of a long poll, None when ``index`` is not given."""
    if request.query_params.get("index") is None:
        return None
    value = int_param(request, "index", 0, 0, 2**63 - 1)  # a store revision
    text = request.query_params.get("wait")
    try:
        wait = DEFAULT_WAIT if text is None else parse_duration(text)
    except ValueError as exc:
        raise FeedError(f"wait: {exc}") from None
    return value, min(wait, MAX_WAIT)


def public(keys: Keys, key: bytes) -> bool:
    return any(span.covers(key) for span in public_spans(keys))


async def changed_after(store: Store, keys: Keys, index: int, wait: float) -> bool:
    """Wait until a public key changes after revision ``index`` (True), or ``wait`` seconds
    pass (False). A compacted ``index``: :class:`CompactedError` at once."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(wait):
            events = store.watch(keys.root_prefix, index + 1)
            async with contextlib.aclosing(events):  # type: ignore[type-var]
                async for event in events:
                    if public(keys, event.key):
                        return True
    return False


def change(keys: Keys, event: WatchEvent) -> dict[str, Any]:
    """One change as the feed sends it: the key below the cluster root, put or delete, the
    record's JSON (text when it is not JSON)."""
    body: dict[str, Any] = {
        "revision": event.revision,
        "kind": str(event.kind),
        "key": event.key[len(keys.root_prefix) :].decode(errors="replace"),
    }
    if event.value:
        try:
            body["value"] = json.loads(event.value)
        except ValueError:
            body["value"] = event.value.decode(errors="replace")
    return body


def sse(event: str, data: Any, ident: str | None = None) -> bytes:
    head = f"id: {ident}\n" if ident is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def changes(
    store: Store, keys: Keys, start: int, skip: int
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """``(event id, change)`` of every public change from revision ``start`` on, the first
    ``skip`` changes of ``start`` left out. Raises :class:`CompactedError`."""
    current, nth = start, -1  # nth: the position of the last event within `current`
    events = store.watch(keys.root_prefix, start)
    async with contextlib.aclosing(events):  # type: ignore[type-var]
        async for event in events:
            if event.revision != current:
                current, nth = event.revision, 0
            else:
                nth += 1
            if (event.revision == start and nth < skip) or not public(keys, event.key):
                continue
            yield f"{event.revision}.{nth}", change(keys, event)


async def _pump(
    source: AsyncIterator[tuple[str, dict[str, Any]]], queue: asyncio.Queue[Any]
) -> None:
    """Move ``source``'s items into ``queue``; its end or error goes in last."""
    try:
        async for item in source:
            await queue.put(item)
        await queue.put(StopAsyncIteration())
    except Exception as exc:  # CompactedError, a store error: the stream's to say
        await queue.put(exc)


async def with_heartbeats(
    source: AsyncIterator[tuple[str, dict[str, Any]]], every: float = HEARTBEAT
) -> AsyncIterator[tuple[str, dict[str, Any]] | None]:
    """``source``'s items, and None after each ``every`` seconds without one (a comment
    line for the client, so that a dead one is noticed); re-raises its error."""
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=64)
    task = asyncio.create_task(_pump(source, queue))
    try:
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), every)
            except TimeoutError:
                yield None
                continue
            if isinstance(item, StopAsyncIteration):
                return
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
