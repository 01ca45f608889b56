"""The agent's side of a handover on an in-memory store: which leases it takes back, and what
it leaves when it cannot (the guard side is ``test_handover.py``, the real one
``test_cluster.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.agent import handover as ho
from corral.agent.guard import GuardWriter
from corral.store import Keys, MemoryStore, StoreError

from .fakes import make_agent, spec_text


def handover(lease: int, token: int, node: str = "n1") -> ho.Handover:
    return ho.Handover(node, lease, token, 1e9, ("http://127.0.0.1:1",), 3, 0.5, 0.4)


async def registered(store: MemoryStore) -> tuple[int, int]:
    """A live lease and ``nodes/n1`` under it, as a stopped agent leaves them."""
    lease = await store.grant(3)
    revision = await store.put(Keys("t").node("n1"), b"{}", lease=lease.id)
    return lease.id, revision


async def test_a_live_lease_still_holding_the_registration_is_taken_back(tmp_path: Path) -> None:
    store = MemoryStore()
    agent = make_agent(store, tmp_path, spec_text("web"))
    lease, revision = await registered(store)
    assert await agent.registrar.reattach(lease)
    assert (agent.lease, agent.registration) == (lease, revision)  # the same registration
    assert agent.may_hold_exclusive()


async def test_a_lease_etcd_forgot_is_not_taken(tmp_path: Path) -> None:
    store = MemoryStore()
    agent = make_agent(store, tmp_path, spec_text("web"))
    lease, _ = await registered(store)
    await store.revoke(lease)
    assert not await agent.registrar.reattach(lease)
    assert agent.lease is None and not agent.may_hold_exclusive()


async def test_a_lease_no_longer_holding_the_registration_is_not_taken(tmp_path: Path) -> None:
    store = MemoryStore()
    agent = make_agent(store, tmp_path, spec_text("web"))
    lease, _ = await registered(store)
    other = await store.grant(3)
    await store.put(Keys("t").node("n1"), b"{}", lease=other.id)  # registered anew meanwhile
    assert not await agent.registrar.reattach(lease)
    assert agent.lease is None


async def test_the_handed_over_listing_is_listed_again_under_the_new_token(
    tmp_path: Path,
) -> None:
    store = MemoryStore()
    agent = make_agent(store, tmp_path, spec_text("web"))
    lease, _ = await registered(store)
    old = GuardWriter(tmp_path, "n1")
    old.update(1.0, ["vip"])
    ho.write(tmp_path, handover(lease, old.token))
    listed = []
    await agent.succession.take(agent.registrar, lambda: listed.append(True))
    assert agent.succession.inherited == {"vip"} and listed == [True]
    assert ho.read(tmp_path) is None  # the guard stops renewing only now


@pytest.mark.parametrize("case", ["gone", "other-node", "store-down"])
async def test_a_handover_that_cannot_be_taken_is_dropped_and_nothing_inherited(
    tmp_path: Path, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = MemoryStore()
    agent = make_agent(store, tmp_path, spec_text("web"))
    lease, _ = await registered(store)
    old = GuardWriter(tmp_path, "n1")
    old.update(1.0, ["vip"])
    if case == "gone":
        await store.revoke(lease)
    ho.write(tmp_path, handover(lease, old.token, "n2" if case == "other-node" else "n1"))
    if case == "store-down":

        async def down(_lease: int) -> int:
            raise StoreError("etcd unreachable")

        monkeypatch.setattr(store, "keepalive", down)
    listed: list[bool] = []
    await agent.succession.take(agent.registrar, lambda: listed.append(True))
    assert agent.succession.inherited == frozenset() and listed == []
    assert agent.lease is None  # the keepalive loop registers anew, as after a crash
    assert ho.read(tmp_path) is None
