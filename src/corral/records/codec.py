"""How a record is encoded, versioned and checked (the rules every record module follows).

- A record is one JSON object, keys sorted, no spaces (``etcdctl get`` shows it as written).
- :func:`encode` writes any JSON value as such (a caller that writes a record goes through
  :meth:`Record.dump`, which adds ``"v"``); :func:`decode` reads a JSON object or raises
  :class:`Malformed` with the reason.
- The field readers (:func:`req_str` ...) take a mapping and a field name and return the
  field's value with its type, or raise :class:`Malformed` naming the field: a record with a
  field of the wrong type is malformed as a whole (no half-read record), unless its module
  says otherwise. An optional field that is absent or ``null`` reads as its default.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, ClassVar, Self, TypeVar

from corral.records.drops import DROPS, RecordDrops
from corral.store import KeyValue

VERSION = 1  # the version this code writes (see corral.records: the contract)
MAX_INT = 2**63 - 1  # etcd's revisions and our nanosecond times are int64
T = TypeVar("T")


class Malformed(ValueError):
    """A record that cannot be read; ``reason`` says why (shown in events and by the CLI)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def encode(value: object) -> bytes:
    """``value`` as compact JSON with sorted keys (what records look like in the store)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _no_constant(name: str) -> float:
    raise Malformed(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999: a timestamp that never comes, a count never reached
        raise Malformed(f"{text[:40]} is out of range")
    return value


def _int64(text: str) -> int:
    value = int(text)
    if not -MAX_INT <= value <= MAX_INT:  # no writer of ours makes one; float() would overflow
        raise Malformed(f"{text[:40]} is out of range")
    return value


def decode(raw: bytes) -> dict[str, Any]:
    """The JSON object in ``raw``; :class:`Malformed` when it is not JSON (``NaN`` and
    ``Infinity``, which Python's json reads, are not), has a number out of range (a float
    that overflows, an integer beyond 64 bits) or is not an object."""
    try:
        value = json.loads(raw, parse_constant=_no_constant, parse_float=_finite, parse_int=_int64)
    except Malformed:
        raise
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise Malformed("not JSON") from None
    if not isinstance(value, dict):
        raise Malformed(f"not a JSON object but {type(value).__name__}")
    return value


def version(value: Mapping[str, object]) -> int | None:
    """The record's ``v``: 0 when absent (written before versions), None when it is there but
    not a version number (a non-negative integer)."""
    if "v" not in value:
        return 0
    v = value["v"]
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


class Record:
    """Base of the typed records: a subclass is a frozen dataclass that defines
    :meth:`from_value` (read a decoded object; raise :class:`Malformed`) and :meth:`to_value`
    (its fields as JSON data, without ``v``).

    ``VERSIONED_BY_FIELD``: False for the records whose v0 layout is a bare name -> value map
    (``admin/moves``, ``admin/tickets``): there a ``"v"`` that is not a version number is an
    entry of the map (a resource may be called ``v``), not a malformed version."""

    VERSIONED_BY_FIELD: ClassVar[bool] = True

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> Self:
        raise NotImplementedError

    def to_value(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def read(cls, raw: bytes) -> Self:
        """The record in ``raw``, or :class:`Malformed` with the reason."""
        return cls.read_value(decode(raw))

    @classmethod
    def read_value(cls, value: object) -> Self:
        """The record in an already decoded JSON value (a lab's range read), or
        :class:`Malformed`."""
        if not isinstance(value, dict):
            raise Malformed(f"not a JSON object but {type(value).__name__}")
        if cls.VERSIONED_BY_FIELD and version(value) is None:
            raise Malformed(f"v is not a version number: {value['v']!r}")
        return cls.from_value(value)

    @classmethod
    def parse(cls, raw: bytes) -> Self | None:
        """The record in ``raw``, or None when it is malformed (use :meth:`read` to learn
        why)."""
        try:
            return cls.read(raw)
        except Malformed:
            return None

    @classmethod
    def parse_kv(cls, kv: KeyValue, drops: RecordDrops = DROPS) -> Self | None:
        """The record in ``kv``'s value, or None when it is malformed: then counted in
        ``drops`` (logged the first time, with the key and why). What a reader of the store
        calls: a malformed value is skipped, never a crash, and never silent."""
        try:
            return cls.read(kv.value)
        except Malformed as exc:
            drops.skip(kv.key, kv.mod_revision, exc.reason)
            return None

    @classmethod
    def parse_value(cls, value: object) -> Self | None:
        """:meth:`read_value`, None when malformed."""
        try:
            return cls.read_value(value)
        except Malformed:
            return None

    def dump(self) -> bytes:
        """The record as this version writes it: its fields and ``"v": VERSION``."""
        return encode({**self.to_value(), "v": VERSION})


def _wrong(name: str, wanted: str, got: object) -> Malformed:
    return Malformed(f"{name} is not {wanted}: {got!r}"[:200])


def req_str(value: Mapping[str, Any], name: str) -> str:
    got = value.get(name)
    if not isinstance(got, str):
        raise _wrong(name, "a string", got) if name in value else Malformed(f"no {name}")
    return got


def _optional(value: Mapping[str, Any], name: str, kind: type[T], wanted: str, default: T) -> T:
    """``value[name]`` of type ``kind`` (absent or null: ``default``)."""
    got = value.get(name)
    if got is None:
        return default
    if not isinstance(got, kind):
        raise _wrong(name, wanted, got)
    return got


def opt_str(value: Mapping[str, Any], name: str, default: str = "") -> str:
    return _optional(value, name, str, "a string", default)


def nullable_str(value: Mapping[str, Any], name: str) -> str | None:
    got = value.get(name)
    if got is not None and not isinstance(got, str):
        raise _wrong(name, "a string or null", got)
    return got


def _is_int(got: object) -> bool:
    return isinstance(got, int) and not isinstance(got, bool)


def req_int(value: Mapping[str, Any], name: str) -> int:
    got = value.get(name)
    if not _is_int(got):
        raise _wrong(name, "an integer", got) if name in value else Malformed(f"no {name}")
    assert isinstance(got, int)
    return got


def opt_int(value: Mapping[str, Any], name: str) -> int | None:
    got = value.get(name)
    if got is not None and not _is_int(got):
        raise _wrong(name, "an integer or null", got)
    assert got is None or isinstance(got, int)
    return got


def _float(name: str, got: int | float) -> float:
    """``got`` as a finite float (a value read by :meth:`Record.read_value` was not checked
    by :func:`decode`)."""
    try:
        number = float(got)
    except OverflowError:
        raise _wrong(name, "a number in range", got) from None
    if not math.isfinite(number):
        raise _wrong(name, "a finite number", got)
    return number


def opt_number(value: Mapping[str, Any], name: str) -> float | None:
    got = value.get(name)
    if got is None:
        return None
    if not isinstance(got, int | float) or isinstance(got, bool):
        raise _wrong(name, "a number", got)
    return _float(name, got)


def req_number(value: Mapping[str, Any], name: str) -> float:
    got = value.get(name)
    if not isinstance(got, int | float) or isinstance(got, bool):
        raise _wrong(name, "a number", got) if name in value else Malformed(f"no {name}")
    return _float(name, got)


def opt_bool(value: Mapping[str, Any], name: str) -> bool:
    """A boolean (absent or null: False)."""
    return _optional(value, name, bool, "true or false", False)


def objects(value: Mapping[str, Any], name: str) -> list[Mapping[str, Any]]:
    """A list of JSON objects (absent: empty)."""
    got = value.get(name)
    if got is None:
        return []
    if not isinstance(got, list) or not all(isinstance(i, dict) for i in got):
        raise _wrong(name, "a list of objects", got)
    return got


def strings(value: Mapping[str, Any], name: str) -> tuple[str, ...]:
    """A list of strings (absent: empty)."""
    got = value.get(name)
    if got is None:
        return ()
    if not isinstance(got, list) or not all(isinstance(i, str) for i in got):
        raise _wrong(name, "a list of strings", got)
    return tuple(got)


def string_map(value: object, name: str) -> dict[str, str]:
    """A JSON object of strings (``value`` itself, not a field of it)."""
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _wrong(name, "an object of strings", value)
    return dict(value)
