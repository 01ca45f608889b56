"""API tokens: ``auth/tokens/<id>`` (:class:`TokenRecord`), stored salted and hashed.

A token reads ``corral_<id>_<secret>``: ``id`` (12 hex digits) names its record, ``secret``
(32 random bytes, URL-safe base64) is never stored: the record keeps ``scrypt(secret, salt)``
with its parameters, the name and role it stands for, who made it and when. The token is
shown once, at creation (``corral tokens create``); a lost token is revoked and made anew.

:func:`check` is constant-time in the secret: the hash comparison is
``hmac.compare_digest``, and a token whose record is missing is hashed all the same (against
a fixed salt), so an unknown id and a wrong secret take the same time. The records are a
secret too (:func:`corral.auth.roles.secret_ranges`): only agents (which verify tokens for
their API) and admins read them.

Randomness is injected (``random_bytes``) for tests; the default is :func:`secrets.token_bytes`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Self

from corral.auth.identity import Identity
from corral.auth.roles import PEOPLE, Role
from corral.records.codec import Malformed, Record, opt_number, opt_str, req_int, req_str
from corral.store import Compare, Keys, Put, Store

PREFIX = "corral_"
_TOKEN = re.compile(r"^corral_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
SCRYPT = {"n": 2**12, "r": 8, "p": 1}  # ~10 ms: a token is random, not a guessable password
_DUMMY_SALT = b"\x00" * 16


@dataclass(frozen=True)
class TokenRecord(Record):
    name: str
    role: Role
    salt: str  # hex
    hash: str  # hex of scrypt(secret, salt, n, r, p)
    n: int
    r: int
    p: int
    created: float = 0.0
    by: str = ""

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> Self:
        role = value.get("role")
        if role not in PEOPLE:
            raise Malformed(f"role {role!r} is not one of {', '.join(PEOPLE)}")
        return cls(
            req_str(value, "name"),
            role,
            req_str(value, "salt"),
            req_str(value, "hash"),
            req_int(value, "n"),
            req_int(value, "r"),
            req_int(value, "p"),
            opt_number(value, "created") or 0.0,
            opt_str(value, "by"),
        )

    def to_value(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "salt": self.salt,
            "hash": self.hash,
            "n": self.n,
            "r": self.r,
            "p": self.p,
            "created": self.created,
            "by": self.by,
        }


def _hash(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, dklen=32)


def issue(
    name: str,
    role: Role,
    *,
    by: str,
    now: float,
    random_bytes: Callable[[int], bytes] = secrets.token_bytes,
) -> tuple[str, str, TokenRecord]:
    """A new token: ``(token text, id, record to store)``."""
    token_id = random_bytes(6).hex()
    secret = base64.urlsafe_b64encode(random_bytes(32)).decode().rstrip("=")
    salt = random_bytes(16)
    digest = _hash(secret, salt, **SCRYPT)
    record = TokenRecord(name, role, salt.hex(), digest.hex(), **SCRYPT, created=now, by=by)
    return f"{PREFIX}{token_id}_{secret}", token_id, record


def token_id(token: str) -> str | None:
    """The id of a well-formed token, else None."""
    found = _TOKEN.match(token)
    return found.group(1) if found else None


def check(token: str, record: TokenRecord | None) -> Identity | None:
    """The identity ``token`` proves, given the record stored under its id (None: no record):
    None for a malformed token, a missing record or a wrong secret (constant-time)."""
    found = _TOKEN.match(token)
    secret = found.group(2) if found else "x"
    if record is None:
        _hash(secret, _DUMMY_SALT, **SCRYPT)  # the same work as a real check
        return None
    try:
        digest = _hash(secret, bytes.fromhex(record.salt), record.n, record.r, record.p)
        good = hmac.compare_digest(digest, bytes.fromhex(record.hash))
    except ValueError:  # a record with a bad salt or parameters proves nothing
        return None
    return Identity(record.name, record.role, "token") if good and found else None


async def verify(store: Store, keys: Keys, token: str) -> Identity | None:
    """The identity ``token`` proves in the cluster of ``keys``, or None."""
    found = token_id(token)
    kv = await store.get(keys.token(found)) if found is not None else None
    return check(token, TokenRecord.parse(kv.value) if kv is not None else None)


async def create(
    store: Store, keys: Keys, name: str, role: Role, *, by: str, now: float
) -> tuple[str, str]:
    """Store a new token; ``(token text, id)``. The text is shown once and never stored."""
    while True:
        text, found, record = issue(name, role, by=by, now=now)
        key = keys.token(found)
        if (await store.txn([Compare.missing(key)], [Put(key, record.dump())])).succeeded:
            return text, found


async def listing(store: Store, keys: Keys) -> dict[str, TokenRecord]:
    """id -> record of every readable token (hashes included: callers show the rest)."""
    prefix = keys.tokens()
    out = {}
    for kv in (await store.range(prefix)).kvs:
        record = TokenRecord.parse(kv.value)
        if record is not None:
            out[kv.key[len(prefix) :].decode(errors="replace")] = record
    return out


async def revoke(store: Store, keys: Keys, found: str) -> bool:
    """Delete token ``found``; whether it existed."""
    return await store.delete(keys.token(found)) > 0
