"""The gossip keyring and its rotation in the store.

- ``gossip-key`` (:class:`KeyringRecord`): the cluster's gossip keys, one base64 AES key (16, 24
  or 32 bytes) per line, the first the primary (it encrypts), every one accepted. Not JSON: this
  is the layout agents have read since the first release, kept so that an agent of any version
  reads it. Its etcd mod revision is the keyring's *version*: what agents acknowledge and
  what ``corral keys rotate`` compares and swaps.
- ``keys/ack/<node>`` (:class:`KeyAckRecord`, under the node's lease): the keyring version
  that node's gossip member applied, with the keys' fingerprints.
- ``keys/rotation`` (:class:`RotationRecord`): the rotation under way (or the last one): the new
  key's fingerprint, the retiring ones', who started it and when, and when it finished.

The keys are secrets: nothing here puts key material in a reason, a ``repr`` or a JSON record;
people see :func:`fingerprint` only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from corral.records.codec import (
    Malformed,
    Record,
    opt_number,
    opt_str,
    req_int,
    req_number,
    req_str,
    strings,
)

KEY_LENGTHS = (16, 24, 32)
FINGERPRINT_HEX = 16


def fingerprint(key: bytes) -> str:
    """A short name of ``key`` that people and records may show (a truncated SHA-256 of a
    domain-separated key: it tells keys apart and reveals nothing usable of them)."""
    return hashlib.sha256(b"corral-gossip-key|" + key).hexdigest()[:FINGERPRINT_HEX]


@dataclass(frozen=True, repr=False)
class KeyringRecord:
    """The keys of ``gossip-key``, primary first (never empty, no key twice)."""

    keys: tuple[bytes, ...]

    def __repr__(self) -> str:  # never the keys themselves, in a log or a traceback
        return f"KeyringRecord({', '.join(self.fingerprints)})"

    @classmethod
    def read(cls, raw: bytes) -> Self:
        """The keyring in ``raw``, or :class:`Malformed` naming the line (never its text)."""
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            raise Malformed("not UTF-8 text") from None
        keys: list[bytes] = []
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line:
                continue
            try:
                key = base64.b64decode(line, validate=True)
            except (binascii.Error, ValueError):
                raise Malformed(f"line {number}: not base64") from None
            if len(key) not in KEY_LENGTHS:
                raise Malformed(f"line {number}: a key of {len(key)} bytes (16, 24 or 32)")
            if key in keys:
                raise Malformed(f"line {number}: the same key twice")
            keys.append(key)
        if not keys:
            raise Malformed("no key")
        return cls(tuple(keys))

    @classmethod
    def parse(cls, raw: bytes) -> Self | None:
        try:
            return cls.read(raw)
        except Malformed:
            return None

    def dump(self) -> bytes:
        return "".join(base64.b64encode(k).decode() + "\n" for k in self.keys).encode()

    @property
    def primary(self) -> bytes:
        return self.keys[0]

    @property
    def fingerprints(self) -> tuple[str, ...]:
        return tuple(fingerprint(k) for k in self.keys)

    def by_fingerprint(self) -> dict[str, bytes]:
        return {fingerprint(k): k for k in self.keys}


@dataclass(frozen=True)
class KeyAckRecord(Record):
    """What one node's gossip member runs: the keyring ``revision`` it applied and the
    fingerprints of its keys, primary first."""

    revision: int
    keys: tuple[str, ...] = ()

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> Self:
        return cls(req_int(value, "revision"), strings(value, "keys"))

    def to_value(self) -> dict[str, Any]:
        return {"revision": self.revision, "keys": list(self.keys)}


@dataclass(frozen=True)
class RotationRecord(Record):
    """A rotation of the gossip key: to the key ``new`` (a fingerprint) from the keys ``old``;
    ``id`` names the run that started it, ``by`` where it ran (host and pid), ``started`` and
    ``finished`` are wall-clock seconds (``finished`` None: under way)."""

    id: str
    new: str
    old: tuple[str, ...]
    by: str = ""
    started: float = 0.0
    finished: float | None = None

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> Self:
        return cls(
            req_str(value, "id"),
            req_str(value, "new"),
            strings(value, "old"),
            opt_str(value, "by"),
            req_number(value, "started"),
            opt_number(value, "finished"),
        )

    def to_value(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "new": self.new,
            "old": list(self.old),
            "by": self.by,
            "started": self.started,
            "finished": self.finished,
        }
