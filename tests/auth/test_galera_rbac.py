"""The Galera records under corral's roles on a real etcd: an agent (the controller is one)
writes reports and claims a bootstrap under another node's lease; an operator writes none."""

from __future__ import annotations

import pytest

from corral.records.galera import BootstrapClaim, ReportRecord, WriterRecord, claim_txn, writer_txn
from corral.store import Compare, PermissionDenied, Put

from .conftest import KEYS, Secured

pytestmark = pytest.mark.etcd


async def test_an_agent_claims_a_bootstrap_and_an_operator_writes_no_galera_record(
    secured: Secured,
) -> None:
    agent, operator = secured.store("node:n1"), secured.store("alice")
    try:
        own = await agent.grant(5)
        took = await agent.txn(
            [Compare.missing(KEYS.controller)], [Put(KEYS.controller, b"n1", own.id)]
        )
        theirs = await agent.grant(5)  # n2's node lease, with n2's keys on it
        reg = await agent.put(KEYS.node("n2"), b"{}", lease=theirs.id)
        report = ReportRecord(None, None, None, running=False)
        await agent.put(KEYS.galera_report("db", "n2"), report.dump(), lease=theirs.id)
        claim = claim_txn(KEYS, "db", BootstrapClaim("n2", reg, "u", 1), took.revision, theirs.id)
        writer = writer_txn(KEYS, "db", WriterRecord("n2"), took.revision, 0)
        for txn in (claim, writer):
            with pytest.raises(PermissionDenied):
                await operator.txn(txn.compares, txn.success)
            assert (await agent.txn(txn.compares, txn.success)).succeeded
        await agent.revoke(theirs.id)  # n2 fenced: its report and the claim go with its lease
        assert await agent.get(KEYS.galera_bootstrap("db")) is None
        assert await agent.get(KEYS.galera_report("db", "n2")) is None
        assert await agent.get(KEYS.galera_writer("db")) is not None
    finally:
        await agent.close()
        await operator.close()
