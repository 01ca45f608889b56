"""The store: etcd v3 (real) and an in-memory twin behind one contract.

Public API: :class:`Store` (protocol) and its data types, :class:`EtcdStore`,
:class:`MemoryStore`, :class:`EmbeddedEtcd` / :class:`MemberConfig`, :class:`Keys`, errors.
"""

from corral.store.base import (
    Compare,
    Delete,
    KeyValue,
    Lease,
    Put,
    RangeResult,
    Store,
    TxnResult,
    WatchEvent,
)
from corral.store.embedded import EmbeddedError, EmbeddedEtcd, MemberConfig, find_etcd
from corral.store.errors import CompactedError, LeaseNotFound, StoreError, StoreUnavailable
from corral.store.etcd import EtcdStore
from corral.store.keys import Keys
from corral.store.memory import MemoryStore

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
    "LeaseNotFound",
    "MemberConfig",
    "MemoryStore",
    "Put",
    "RangeResult",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "TxnResult",
    "WatchEvent",
    "find_etcd",
]
