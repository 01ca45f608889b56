"""Records read from the store (others can write etcd): every record type, the whole-prefix
read, and the agent's own readers. A malformed value is never a crash: it is skipped, counted
in :data:`corral.records.DROPS` and logged once."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from corral.records import FailCountRecord, Malformed, read_records, snapshot_from_kvs
from corral.records.codec import Record
from corral.store import KeyValue
from tests.fuzz.budget import fuzz, mutated, tree_mutated
from tests.records.record_dump import KEYS
from tests.records.test_upgrade import SPEC_NOW, recorded


def _leaves(cls: type[Record]) -> list[type[Record]]:
    subs = cls.__subclasses__()
    return [c for s in subs for c in ([s] if not s.__subclasses__() else _leaves(s))]


KINDS = _leaves(Record)
STORED = recorded()
SEEDS = sorted({kv.value for kv in STORED if kv.value}) + [
    json.dumps({"v": 1, **json.loads(kv.value)}).encode()
    for kv in STORED
    if kv.value.startswith(b"{")
]
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.sampled_from([10**400, -(10**400)])
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["n1", "n2", "db", "web", "db@n2", "web[1.2.3.4]@n1", "v", "promoted"]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["v", "instances", "node", "role", "item", "reg", "count", "nodes"])
            | st.text(max_size=6),
            inner,
            max_size=5,
        )
    ),
    max_leaves=25,
)


def read_only_malformed(kind: type[Record], raw: bytes) -> None:
    """``raw`` reads as a record, or raises Malformed with a reason; what reads is written
    back the same (an operator's edit keeps what it read)."""
    try:
        record = kind.read(raw)
    except Malformed as exc:
        assert exc.reason
        return
    assert kind.read(record.dump()) == record


@fuzz(300)
@given(st.sampled_from(KINDS), mutated(SEEDS))
@example(KINDS[0], b"[" * 100_000)  # RecursionError out of json.loads: crashed every reader
@example(FailCountRecord, b'{"count": 1, "last": NaN}')  # not JSON; was read, and written back so
@example(FailCountRecord, b'{"count": 1, "last": 1e999}')  # inf: a time that never comes
@example(FailCountRecord, b'{"count": 1, "last": 1' + b"0" * 400 + b"}")  # OverflowError in float()
def test_mutated_records_are_read_or_malformed(kind: type[Record], raw: bytes) -> None:
    read_only_malformed(kind, raw)


@fuzz(300)
@given(st.sampled_from(KINDS), JSON)
def test_any_json_is_read_or_malformed(kind: type[Record], value: Any) -> None:
    try:
        kind.read_value(value)
    except Malformed as exc:
        assert exc.reason
    read_only_malformed(kind, json.dumps(value).encode())


@fuzz(300)
@given(st.sampled_from(KINDS), tree_mutated([json.loads(s) for s in SEEDS if s.startswith(b"{")]))
def test_records_of_a_mutated_shape_are_read_or_malformed(kind: type[Record], value: Any) -> None:
    """Valid JSON of the wrong shape: a list where an object belongs, a field of the wrong
    type deep inside a list of instances."""
    read_only_malformed(kind, json.dumps(value).encode())


@fuzz(150)
@given(st.data())
def test_a_store_of_mutated_records_reads_with_every_bad_one_skipped(data: st.DataObject) -> None:
    kvs = list(STORED)
    for i in data.draw(st.lists(st.integers(0, len(kvs) - 1), min_size=1, max_size=6)):
        kv = kvs[i]
        value = data.draw(mutated([kv.value or b"{}"]))
        kvs[i] = KeyValue(kv.key, value, kv.create_revision, kv.mod_revision + 100, 1, kv.lease)
    records = read_records(KEYS, kvs)
    for skipped in records.skipped:
        assert skipped.reason and skipped.key.startswith(KEYS.root_prefix)
    snapshot_from_kvs(SPEC_NOW, KEYS, kvs, now=1e9)


def test_a_value_nested_too_deep_is_skipped_not_a_crash() -> None:
    """Found while fuzzing: json.loads raises RecursionError (not a ValueError) for a few
    thousand ``[``, which escaped read_records and crashed the controller's step."""
    deep = next(kv for kv in STORED if kv.key.endswith(b"/assign/db"))
    bad = KeyValue(deep.key, b"[" * 100_000, 1, 99, 1, 0)
    records = read_records(KEYS, [*STORED, bad])
    assert [(s.key, s.mod_revision, s.reason) for s in records.skipped] == [
        (deep.key, 99, "not JSON")
    ]
