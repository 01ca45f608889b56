"""Store errors. Every backend raises these and nothing else for store-level failures."""

from __future__ import annotations


class StoreError(Exception):
    """Base of every store error."""


class StoreUnavailable(StoreError):
    """No endpoint answered in time (after trying every one). For a write the outcome is
    unknown: the caller must re-read before deciding again."""


class LeaseNotFound(StoreError):
    """The lease does not exist: it expired or was revoked. Its keys are gone."""


class CompactedError(StoreError):
    """A watch asked for history older than the store keeps."""

    def __init__(self, compact_revision: int) -> None:
        super().__init__(f"revision compacted: history starts after revision {compact_revision}")
        self.compact_revision = compact_revision
