"""Under etcd's RBAC an agent may not write the spec: an agent that finds none in the store
runs its own and says so, instead of failing its registration."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from corral.records import Event
from corral.store import MemoryStore, Op, PermissionDenied, TxnResult
from corral.store.base import Compare

from ..agent.fakes import make_agent, spec_text


class NoSpecWrites(MemoryStore):
    """A memory store that refuses, as etcd's RBAC does for the agent role, any write of a
    spec key."""

    async def txn(
        self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        if any(op.key.endswith(b"/spec") for op in [*success, *failure]):
            raise PermissionDenied("etcd txn refused: permission denied")
        return await super().txn(compares, success, failure)


async def test_an_agent_that_may_not_seed_the_spec_runs_its_own_and_says_so(
    tmp_path: Path,
) -> None:
    store = NoSpecWrites()
    text = spec_text("web")
    agent = make_agent(store, tmp_path, text, spec_text=text)
    await agent.registrar.load_spec()
    assert await store.get(b"/corral/t/spec") is None
    reasons = [Event.read(kv.value).reason for kv in (await store.range(b"/corral/t/events/")).kvs]
    assert any("agents may not write it" in r for r in reasons), reasons
