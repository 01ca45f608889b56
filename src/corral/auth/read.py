"""What a viewer's client reads of a cluster: every public span (the secrets cut out)."""

from __future__ import annotations

from corral.auth.roles import public_spans
from corral.store import Keys, KeyValue, Store


async def read_public(store: Store, keys: Keys) -> tuple[list[KeyValue], int]:
    """Every key of the cluster of ``keys`` but the secrets (a viewer may read that, and no
    view needs them), in key order, and the newest store revision the reads saw. The spans
    are read one after the other (not at one revision)."""
    kvs: list[KeyValue] = []
    revision = 0
    for span in public_spans(keys):
        result = await store.range(span.start, end=span.end)
        kvs += result.kvs
        revision = max(revision, result.revision)
    return kvs, revision
