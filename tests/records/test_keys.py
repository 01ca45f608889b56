"""The keyring records: ``gossip-key`` (lines of base64), ``keys/ack/<node>``, ``keys/rotation``."""

from __future__ import annotations

import base64

import pytest

from corral.records import (
    KeyAckRecord,
    KeyringRecord,
    Malformed,
    RotationRecord,
    fingerprint,
)

A, B = b"a" * 32, b"b" * 16


def test_the_keyring_reads_as_every_agent_before_it_wrote_it() -> None:
    record = KeyringRecord((A, B))
    raw = record.dump()
    # what agents before key rotation did with the record: lines, b64decode each
    lines = [ln.strip() for ln in raw.decode().splitlines() if ln.strip()]
    assert [base64.b64decode(ln) for ln in lines] == [A, B]
    assert KeyringRecord.read(raw) == record and record.primary == A
    assert KeyringRecord.read(base64.b64encode(A) + b"\n\n  ") == KeyringRecord((A,))


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "no key"),
        (b"not base64!\n", "line 1: not base64"),
        (base64.b64encode(A) + b"\n" + base64.b64encode(b"short"), "line 2: a key of 5 bytes"),
        (base64.b64encode(A) + b"\n" + base64.b64encode(A), "line 2: the same key twice"),
        (b"\xff", "not UTF-8 text"),
    ],
)
def test_a_bad_keyring_is_refused_naming_the_line_never_its_text(raw: bytes, reason: str) -> None:
    with pytest.raises(Malformed) as exc:
        KeyringRecord.read(raw)
    assert exc.value.reason.startswith(reason)
    assert KeyringRecord.parse(raw) is None


def test_no_key_material_in_a_repr_or_the_other_records() -> None:
    record = KeyringRecord((A, B))
    shown = repr(record) + str(record)
    assert base64.b64encode(A).decode() not in shown and "aaaa" not in shown
    assert fingerprint(A) in shown and len(fingerprint(A)) == 16
    assert record.fingerprints == (fingerprint(A), fingerprint(B)) and fingerprint(
        A
    ) != fingerprint(B)
    ack = KeyAckRecord(7, record.fingerprints)
    rotation = RotationRecord("run1", fingerprint(B), (fingerprint(A),), "host pid 1", 10.0)
    for r in (ack, rotation):
        assert type(r).read(r.dump()) == r
        assert base64.b64encode(A) not in r.dump()
    assert RotationRecord.read(rotation.dump()).finished is None
    assert KeyAckRecord.parse(b'{"keys":[]}') is None  # no revision: not an acknowledgement
