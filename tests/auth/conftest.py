"""A real etcd with corral's roles applied and password auth on: users ``node:n1`` (agent),
``alice`` (operator), ``vic`` (viewer), ``ada`` (admin), all with password ``pw``, and
``root`` (``rootpw``). Stopped by PID when the test ends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aetcd
import pytest

from corral.auth.etcdauth import EtcdAuth, User, ensure
from corral.auth.users import UserRecord
from corral.store import EtcdStore, Keys
from corral.store.etcd import parse_endpoint
from corral.store.lab import EtcdLab, etcd_lab

KEYS = Keys("c1")
USERS = [
    User("node:n1", ("agent",), "pw"),
    User("alice", ("operator",), "pw"),
    User("vic", ("viewer",), "pw"),
    User("ada", ("admin",), "pw"),
]
SPEC = b"cluster: c1\n"


@dataclass
class Secured:
    lab: EtcdLab
    first: list[str]  # what the first ensure did

    def store(self, user: str | None, password: str = "pw") -> EtcdStore:
        return EtcdStore(
            self.lab.endpoints,
            timeout=3.0,
            username=user,
            password=password if user else None,
        )

    async def auth(self, user: str | None = "root", password: str = "rootpw") -> EtcdAuth:
        host, port = parse_endpoint(self.lab.endpoints[0])
        creds = {"username": user, "password": password} if user else {}
        client = aetcd.Client(host=host, port=port, timeout=5, **creds)
        await client.connect()
        return EtcdAuth(client)


async def secure(lab: EtcdLab) -> list[str]:
    """The people's records (their roles' source of truth), then ``ensure``."""
    store = lab.store()
    for user in USERS:
        if not user.name.startswith("node:"):
            await store.put(KEYS.user(user.name), UserRecord(user.roles[0]).dump())
    await store.close()
    api = await Secured(lab, []).auth(None)
    try:
        return await ensure(api, KEYS, USERS, spec_text=SPEC, root_password="rootpw")
    finally:
        await api.close()


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[Secured]:
    async with etcd_lab(tmp_path, 1) as lab:
        yield Secured(lab, await secure(lab))
