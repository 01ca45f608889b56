"""When a Galera bootstrap claim still holds (rule 2's two ways out), and who may act on it
(:mod:`corral.records.galera`); the claim's transactions run in tests/store/test_galera_claims.py."""

from __future__ import annotations

from corral.records import FencedRecord
from corral.records.galera import BootstrapClaim, claim_holds, may_bootstrap

CLAIM = BootstrapClaim("ctl2", 40, "5ee3", 120, force=True)


def test_a_claim_holds_while_its_registration_lives() -> None:
    assert claim_holds(CLAIM, {"ctl2": 40}, {}) is None
    # a fence of an older registration of the node does not end it
    assert claim_holds(CLAIM, {"ctl2": 40}, {"ctl2": FencedRecord(31)}) is None


def test_a_claim_ends_with_a_fence_or_a_lost_registration() -> None:
    fenced = claim_holds(CLAIM, {"ctl2": 40}, {"ctl2": FencedRecord(40)})
    assert fenced == "ctl2, which claimed the bootstrap, was fenced"
    assert claim_holds(CLAIM, {}, {}) == "ctl2, which claimed the bootstrap, lost its registration"
    again = claim_holds(CLAIM, {"ctl2": 57}, {})  # it died and came back: a new registration
    assert again == "ctl2, which claimed the bootstrap, lost its registration"


def test_only_the_named_node_at_the_named_registration_may_bootstrap() -> None:
    assert may_bootstrap(CLAIM, "ctl2", 40)
    assert not may_bootstrap(CLAIM, "ctl2", 57)
    assert not may_bootstrap(CLAIM, "ctl1", 40)
    assert not may_bootstrap(None, "ctl2", 40)


def test_a_claim_of_a_decision() -> None:
    from corral.core.galera.bootstrap import Bootstrap, decide
    from tests.galera_core.transcript import report

    reports = {n: report([n, f"grastate=5ee3:{s}"]) for n, s in (("ctl1", 7), ("ctl2", 9))}
    decision = decide(("ctl1", "ctl2"), reports, {}, (), 0.0, 0.0)
    assert isinstance(decision, Bootstrap)
    got = BootstrapClaim.of(decision, 40, "ctl1", 1.5)
    assert got == BootstrapClaim("ctl2", 40, "5ee3", 9, True, False, decision.reason, "ctl1", 1.5)
