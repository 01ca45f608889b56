"""The agent's part of etcd's RBAC (corral.agent.rbac) against a real etcd requiring client
certificates: the first round turns auth on with every node's user, a node that joins later
with a spec that names it adds its own user, people's grants follow their records, and a store
that cannot be reached is retried with one event per problem, never an exception."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from corral.agent.rbac import FIRST_RETRY, secure_store
from corral.auth.users import UserRecord
from corral.pki import Authority, bundle_identity, init_bundle, issue_identity
from corral.pki.ca import issue, write_identity
from corral.store import EtcdStore, Keys, PermissionDenied
from corral.store.lab import EtcdLab, etcd_lab, free_ports
from corral.store.tls import TlsFiles

pytestmark = pytest.mark.etcd
KEYS = Keys("c1")
SPEC = b"cluster: c1\n"


@pytest.fixture
def ca(tmp_path: Path) -> Authority:
    return init_bundle(tmp_path / "ca", "c1", time.time())


@pytest.fixture
async def etcd(tmp_path: Path, ca: Authority) -> AsyncIterator[EtcdLab]:
    cert, key = issue(ca, "node:m0", ou="node", now=time.time(), days=1,
                      addresses=("127.0.0.1",), server=True)  # fmt: skip
    member = TlsFiles(*map(str, write_identity(tmp_path / "member", "node", ca, cert, key)))
    async with etcd_lab(tmp_path / "etcd", 1, tls=member) as lab:
        yield lab


def as_(ca: Authority, name: str, tmp_path: Path) -> TlsFiles:
    """A certificate of the CA with CN ``name`` (the etcd user it claims to be)."""
    if name.startswith("node:"):
        cert, key = issue(ca, name, ou="node", now=time.time(), days=1)
        return TlsFiles(*map(str, write_identity(tmp_path / name, "id", ca, cert, key)))
    return issue_identity(ca, name, "operator", tmp_path / name, time.time())


async def test_agents_turn_auth_on_and_a_joining_node_adds_its_user(
    etcd: EtcdLab, ca: Authority, tmp_path: Path
) -> None:
    root = bundle_identity(tmp_path / "ca", "root", "admin", tmp_path / "root", time.time())
    said: list[str] = []

    async def report(text: str) -> None:
        said.append(text)

    done = await secure_store(etcd.endpoints, root, KEYS, ["n1", "n2"], SPEC, report)
    assert {"user node:n1 added", "user node:n2 added", "spec seeded", "auth enabled"} <= set(done)
    assert said == [said[0]] and said[0].startswith("etcd auth ensured: ")
    assert "auth enabled" in said[0] and "user node:n2 added" in said[0]
    n3 = EtcdStore(etcd.endpoints, timeout=2.0, tls=as_(ca, "node:n3", tmp_path))
    root_store = EtcdStore(etcd.endpoints, timeout=2.0, tls=root)
    try:
        with pytest.raises(PermissionDenied):  # auth is on: no user, no access
            await n3.put(KEYS.node("n3"), b"{}")
        await root_store.put(KEYS.user("alice"), UserRecord("operator").dump())
        # n3 joins with a spec that names it: its own agent adds its user (and alice's grants)
        again = await secure_store(etcd.endpoints, root, KEYS, ["n1", "n2", "n3"], SPEC, report)
        assert set(again) == {
            "user node:n3 added", "user node:n3: role corral:c1:agent granted",
            "user api:n3 added", "user api:n3: role corral:c1:operator granted",
            "user alice added", "user alice: role corral:c1:operator granted",
        }  # fmt: skip
        await n3.put(KEYS.node("n3"), b"{}")
        alice = EtcdStore(etcd.endpoints, timeout=2.0, tls=as_(ca, "alice", tmp_path))
        try:
            await alice.put(KEYS.admin("maintenance", "cluster"), b"{}")
            with pytest.raises(PermissionDenied):
                await alice.put(KEYS.spec, b"cluster: c1\n# mine\n")
        finally:
            await alice.close()
        assert await secure_store(etcd.endpoints, root, KEYS, ["n1"], SPEC, report) == []
        assert len(said) == 2  # nothing changed, nothing said
    finally:
        await n3.close()
        await root_store.close()


async def test_an_unreachable_store_is_retried_with_one_event_per_problem(
    ca: Authority, tmp_path: Path
) -> None:
    root = bundle_identity(tmp_path / "ca", "root", "admin", tmp_path / "root", time.time())
    (port,) = free_ports(1)  # nothing listens there
    said: list[str] = []
    waits: list[float] = []

    async def report(text: str) -> None:
        said.append(text)

    class Enough(Exception):
        pass

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:
            raise Enough

    endpoints = [f"https://127.0.0.1:{port}"]
    with pytest.raises(Enough):
        await secure_store(endpoints, root, KEYS, ["n1"], SPEC, report, sleep, timeout=0.2)
    assert waits == [FIRST_RETRY, 2 * FIRST_RETRY, 4 * FIRST_RETRY]
    assert len(said) == 1 and "etcd auth not ensured yet (retrying)" in said[0], said
