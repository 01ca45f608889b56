"""The agent's watch on the cluster prefix (shell): what changed, to whom it matters.

It keeps :class:`~corral.agent.view.StoreView`, a copy of the prefix: read whole when the
watch (re)starts, then kept from the events. Every change but an event wakes the main loop
(``on_change``); a new spec is handed to ``on_spec`` (the registrar validates it); the
controller key's creation and deletion go to ``on_controller`` (a deleted key: campaign now;
a new one: seen when made, not when its holder dies); a request for this node sets
``requests_pending``; the gossip keyring record goes to ``on_keyring`` (at every load of the
prefix and on every put: the agent's gossip member follows it); a put of a ``fenced/<node>``
record is kept for :meth:`WatchFeed.take_fenced` (the agent's main loop polls its drivers at
once, not at the next ``STATUS_POLL``: a Galera survivor evicts a fenced member at its poll,
rule 2, and each second there is a second of stalled commits for every client). A lost
watch is said, and started again with a new read of the prefix and a look at everything (a
request may have come meanwhile).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from corral.agent.events import EventLog
from corral.agent.view import StoreView
from corral.store import Keys, KeyValue, Store, StoreError, WatchEvent

RETRY = 0.5  # seconds before a lost watch is started again


class WatchFeed:
    def __init__(
        self,
        store: Store,
        keys: Keys,
        requests: bytes,
        events: EventLog,
        on_spec: Callable[[bytes], Awaitable[None]],
        view: StoreView,
    ) -> None:
        """``requests``: the prefix of this node's operator requests; ``view``: the copy to
        keep."""
        self.store, self.keys, self.requests, self.events = store, keys, requests, events
        self.on_spec = on_spec
        self.on_change: Callable[[], None] = lambda: None
        self.on_controller: Callable[[bytes, int | None], None] = lambda _k, _r: None
        self.on_keyring: Callable[[KeyValue | None], None] = lambda _kv: None
        self.on_event: Callable[[WatchEvent], None] = lambda _e: None  # after view.apply
        self.fenced_seen = False  # a fenced/<node> put since the last take_fenced
        self.requests_pending = True  # read the requests at start and when they change
        self.view = view
        self._fenced = keys.prefix("fenced")

    def take_fenced(self) -> bool:
        """Whether a fence record was put since the last call (and forget it)."""
        seen, self.fenced_seen = self.fenced_seen, False
        return seen

    async def run(self) -> None:
        """Watch until cancelled."""
        while True:
            try:
                snapshot = await self.store.range(self.keys.root.encode())
                self.view.load(snapshot)
                key = self.keys.gossip_key
                self.on_keyring(next((kv for kv in snapshot.kvs if kv.key == key), None))
                async for event in self.store.watch(self.keys.root.encode(), snapshot.revision + 1):
                    self.view.apply(event)
                    self.on_event(event)
                    if event.key == key and event.kind == "put":
                        kv = event.kv or KeyValue(key, event.value, 0, event.revision, 0)
                        self.on_keyring(kv)
                    if event.key == self.keys.spec and event.kind == "put":
                        await self.on_spec(event.value)
                    if event.key == self.keys.controller:
                        deleted = event.kind == "delete"
                        self.on_controller(event.key, None if deleted else event.revision)
                    if event.key.startswith(self._fenced) and event.kind == "put":
                        self.fenced_seen = True
                    if event.key.startswith(self.requests) and event.kind == "put":
                        self.requests_pending = True
                    if not event.key.startswith(self.keys.event_prefix()):
                        self.on_change()
            except StoreError as exc:
                self.view.lost()
                self.events.decide(f"watch lost: {exc}")
                self.requests_pending = True  # a request may have come while we were away
            self.on_change()  # the watch starts again at the current revision: look now
            await asyncio.sleep(RETRY)
