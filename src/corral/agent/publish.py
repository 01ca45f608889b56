"""This node's status records, ``status/<node>/<resource>`` under the node lease (shell).

Contract of :meth:`StatusPublisher.publish`:

- It writes what runs here *when its turn comes*: one record per resource with its instances
  (role, reported health, detail, item), and deletes the records of resources that no longer
  run here. Records that did not change since they were last written are not written again.
- Calls run one at a time, in the order they were made (an :class:`asyncio.Lock`, which is
  fair). Several coroutines publish: the agent's round, a health verdict's callback inside a
  service's check task, a drain. Serialized, and reading the services only once its turn has
  come, the last write of a record always carries the latest state: an older view can never
  land after a newer one, and two calls never delete one record twice.
- A write whose outcome is unknown (the store raised, or the caller was cancelled while the
  write was under way) leaves that record marked unknown, so the next call writes it again
  (or deletes it again). A cancelled call leaves the bookkeeping consistent and the lock free.
- Records are bound to the lease; a new lease (the node registered again) means every record
  is written again under it. No lease: nothing is written.
- Store errors propagate to the caller (after the bookkeeping above).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from corral.agent.instances import LocalService
from corral.records import StatusInstance, StatusRecord
from corral.store import Keys, Store

_UNKNOWN = b""  # never a record's value (dump() of a dict is never empty): must be written


class StatusPublisher:
    def __init__(
        self,
        store: Store,
        keys: Keys,
        node: str,
        services: Callable[[], Iterable[LocalService]],
        lease: Callable[[], int | None],
    ) -> None:
        """``services`` and ``lease`` are read at the start of each call's turn."""
        self._store, self._keys, self._node = store, keys, node
        self._services, self._lease = services, lease
        self._lock = asyncio.Lock()
        self._written: dict[str, bytes] = {}  # resource -> value last written (or _UNKNOWN)
        self._written_lease: int | None = None  # the lease those records are bound to

    def forget(self) -> None:
        """Write every record again at the next call (a new lease, tests)."""
        self._written_lease = None

    async def publish(self) -> None:
        async with self._lock:
            lease = self._lease()
            if lease is None:
                return
            if lease != self._written_lease:  # records of an older lease are gone with it
                self._written.clear()
                self._written_lease = lease
            wanted = {name: StatusRecord(v).dump() for name, v in self._records().items()}
            for name, value in wanted.items():
                if self._written.get(name) != value:
                    self._written[name] = _UNKNOWN  # until the put is known to be applied
                    await self._store.put(self._keys.status(self._node, name), value, lease=lease)
                    self._written[name] = value
            for name in [n for n in self._written if n not in wanted]:
                self._written[name] = _UNKNOWN
                await self._store.delete(self._keys.status(self._node, name))
                del self._written[name]  # safe: no other call runs while we hold the lock

    def _records(self) -> dict[str, tuple[StatusInstance, ...]]:
        by_resource: dict[str, tuple[StatusInstance, ...]] = {}
        for svc in sorted(self._services(), key=lambda s: s.name):
            inst = StatusInstance(svc.role, svc.reported_health, svc.detail, svc.item)
            by_resource[svc.resource] = (*by_resource.get(svc.resource, ()), inst)
        return by_resource
