"""Store errors. Every backend raises these, and nothing else, for store-level failures.

Programming errors (a malformed :class:`~corral.store.base.Compare`, a bad endpoint string)
raise ``ValueError``/``TypeError`` at once instead: they are not conditions to retry.
"""

from __future__ import annotations


class StoreError(Exception):
    """Base of every store error. A refused request (e.g. a txn that writes one key twice)
    raises this base class itself."""


class StoreUnavailable(StoreError):
    """No endpoint answered in time, after every endpoint was tried.

    ``maybe_applied`` is True when a write may have been applied although its reply was lost
    (only ``txn`` reports this: see :mod:`corral.store.base`); the caller must then re-read
    before deciding again. False means the request was certainly not applied.
    """

    def __init__(self, message: str, *, maybe_applied: bool = False) -> None:
        super().__init__(message)
        self.maybe_applied = maybe_applied


class LeaseNotFound(StoreError):
    """The lease does not exist: it expired or was revoked, and its keys are gone."""


class CompactedError(StoreError):
    """A watch asked for history older than the store keeps.

    ``compact_revision`` is the oldest revision still watchable: the caller re-reads with
    ``range`` and watches again from the range's ``revision + 1``.
    """

    def __init__(self, compact_revision: int) -> None:
        super().__init__(f"revision compacted: history is kept from revision {compact_revision} on")
        self.compact_revision = compact_revision


class PermissionDenied(StoreError):
    """etcd's RBAC refused the request: this client's identity may not do it (or etcd does
    not know the identity at all). Never retried: it is an answer."""
