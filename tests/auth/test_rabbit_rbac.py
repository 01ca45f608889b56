"""The RabbitMQ records under corral's roles on a real etcd: an agent (the controller is one)
writes a node's report and run record and the plan with its force-boot claim in one
transaction; an operator writes none of them, and a viewer reads them."""

from __future__ import annotations

import pytest

from corral.core.rabbit import Decision, ForceBootClaim, NodeReport, Plan
from corral.records.rabbit import RabbitKeys, ReportRecord, RunningRecord, read_state
from corral.records.rabbit_plan import plan_key, plan_txn
from corral.store import Compare, PermissionDenied, Put

from .conftest import KEYS, Secured

pytestmark = pytest.mark.etcd
RKEYS = RabbitKeys(KEYS, "mq")


async def test_an_agent_writes_the_rabbitmq_records_and_an_operator_none(
    secured: Secured,
) -> None:
    agent, operator, viewer = secured.store("node:n1"), secured.store("alice"), secured.store("vic")
    try:
        own = await agent.grant(5)
        took = await agent.txn(
            [Compare.missing(KEYS.controller)], [Put(KEYS.controller, b"n1", own.id)]
        )
        report = ReportRecord.of(NodeReport("n1", "stopped", "id1", frozenset({"n1"})))
        running = RunningRecord("id1", ("n1",))
        for key, value in (
            (RKEYS.report("n1"), report.dump()),
            (RKEYS.running("n1"), running.dump()),
        ):
            with pytest.raises(PermissionDenied):
                await operator.put(key, value)
            await agent.put(key, value)
        claim = ForceBootClaim(4, "n1", 1.0, "the last-running set is gone")
        plan = Plan({"n1": Decision("n1", "force_boot", claim.reason)}, claim, 4)
        txn = plan_txn(RKEYS, plan, took.revision, 0)
        with pytest.raises(PermissionDenied):
            await operator.txn(list(txn.compares), list(txn.ops))
        assert (await agent.txn(list(txn.compares), list(txn.ops))).succeeded
        again = plan_txn(RKEYS, plan, took.revision, 0)  # a second claim of outage 4: refused
        assert not (await agent.txn(list(again.compares), list(again.ops))).succeeded
        state = await read_state(viewer, RKEYS)
        assert state.claims[4].node == "n1" and state.reports["n1"].identity == "id1"
        assert await viewer.get(plan_key(RKEYS)) is not None
        with pytest.raises(PermissionDenied):
            await viewer.put(plan_key(RKEYS), b"{}")
    finally:
        for store in (agent, operator, viewer):
            await store.close()
