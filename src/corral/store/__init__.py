"""The store: etcd v3 (real) and an in-memory twin behind one contract.

The contract is the docstring of :mod:`corral.store.base`. Public API:

- :class:`Store` (protocol) and its data types: :class:`KeyValue`, :class:`RangeResult`,
  :class:`WatchEvent`, :class:`Compare`, :class:`Put`, :class:`Delete`, :class:`TxnResult`,
  :class:`Lease`, :class:`LeaseInfo`;
- backends: :class:`EtcdStore` (etcd through aetcd), :class:`MemoryStore` (injected clock);
- the embedded member: :class:`EmbeddedEtcd`, :class:`MemberConfig`, :func:`etcd_timing`,
  :func:`min_lease_ttl`, :func:`find_etcd`;
- the key layout: :class:`Keys`;
- errors: :class:`StoreError`, :class:`StoreUnavailable`, :class:`LeaseNotFound`,
  :class:`CompactedError`, :class:`PermissionDenied`, :class:`EmbeddedError`.

A local etcd cluster for tests and benchmarks is in :mod:`corral.store.lab`.
"""

from typing import TYPE_CHECKING

from corral.store.base import (
    Compare,
    Delete,
    KeyValue,
    Lease,
    LeaseInfo,
    Op,
    Put,
    RangeResult,
    Store,
    TxnResult,
    WatchEvent,
)
from corral.store.embedded import (
    EmbeddedError,
    EmbeddedEtcd,
    MemberConfig,
    etcd_timing,
    find_etcd,
    min_lease_ttl,
)
from corral.store.errors import (
    CompactedError,
    LeaseNotFound,
    PermissionDenied,
    StoreError,
    StoreUnavailable,
)
from corral.store.etcd import EtcdStore
from corral.store.keys import Keys
from corral.store.memory import MemoryStore

if TYPE_CHECKING:
    # mypy proves here that both backends implement the whole protocol
    def _conforms(memory: MemoryStore, etcd: EtcdStore) -> tuple[Store, Store]:
        return memory, etcd


__all__ = [
    "CompactedError",
    "Compare",
    "Delete",
    "EmbeddedError",
    "EmbeddedEtcd",
    "EtcdStore",
    "KeyValue",
    "Keys",
    "Lease",
    "LeaseInfo",
    "LeaseNotFound",
    "MemberConfig",
    "MemoryStore",
    "Op",
    "PermissionDenied",
    "Put",
    "RangeResult",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "TxnResult",
    "WatchEvent",
    "etcd_timing",
    "find_etcd",
    "min_lease_ttl",
]
