"""``auth/users/<name>`` (:class:`UserRecord`): ``{"role": "viewer"|"operator"|"admin"}``,
a person's role: the one source of truth (:mod:`corral.auth.identity`). Written by admins
(``corral auth user``); read by :func:`corral.auth.etcdauth.ensure` (etcd's grants follow
it) and by whoever maps an identity to its role (the CLI, an agent's API)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from corral.auth.roles import PEOPLE, Role
from corral.records.codec import Malformed, Record
from corral.store import Keys, Store


@dataclass(frozen=True)
class UserRecord(Record):
    role: Role

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> Self:
        role = value.get("role")
        if role not in PEOPLE:
            raise Malformed(f"role {role!r} is not one of {', '.join(PEOPLE)}")
        return cls(role)

    def to_value(self) -> dict[str, Any]:
        return {"role": self.role}


async def read_people(store: Store, keys: Keys) -> dict[str, Role]:
    """name -> role of every readable ``auth/users/`` record (a malformed one gives none)."""
    prefix = keys.users()
    found = {}
    for kv in (await store.range(prefix)).kvs:
        record = UserRecord.parse(kv.value)
        if record is not None:
            found[kv.key[len(prefix) :].decode(errors="replace")] = record.role
    return found


async def read_role(store: Store, keys: Keys, name: str) -> Role | None:
    """The role recorded for the person ``name`` (None: no valid record, or not a name a
    person can have)."""
    try:
        key = keys.user(name)
    except ValueError:
        return None
    kv = await store.get(key)
    record = UserRecord.parse(kv.value) if kv is not None else None
    return record.role if record is not None else None
