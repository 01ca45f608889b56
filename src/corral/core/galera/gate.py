"""The controller's gate on a Galera resource's promotions (pure).

The scheduler assigns the promoted role to every member as for any promotable resource; this
gate holds those promotions back until :func:`corral.core.galera.bootstrap.decide` allows
them, so that the assignments the controller writes never ask a node to start mariadbd
before there is a cluster to join or a claim to bootstrap one (DESIGN rule 6). Contract of
:func:`gate`, for one resource:

- A Primary component runs (some member reports the resource promoted): every promotion
  stands (the others join it). When the bootstrap claimant is among the Primary members the
  claim is to be cleared (``clear``), and until that is done the others stay held: a member
  joins only once no claim exists, so a claim and a *joined* member never coexist (rule 1g,
  :mod:`corral.core.galera.hold`: while a claim exists every running member is the
  claimant, held to its lease; a claimant stopped by rule 1 whose lease outlived a store outage
  may bootstrap again under its claim only because nothing else runs).
- A claim holds (its claimant's registration lives and was not fenced): only the claimant
  stays promoted, the others are held (role ``started``) until it is Primary.
- A claim that no longer holds (fenced, registration gone): everything is held; the claim
  goes with the claimant's lease (rule 2), then the next step decides again.
- No claim: :func:`decide`. ``Wait`` and ``Refuse`` hold everything, with the decision's
  reason as a note (an event once, rule 5). ``Bootstrap`` keeps only the chosen node
  promoted and returns the decision (``bootstrap``): the shell writes the claim in the same
  transaction as that assignment (:func:`corral.records.galera.claim_txn`), so no agent is
  ever told to bootstrap without the claim existing. A chosen node the scheduler did not
  promote (banned, standby) holds everything, with a note.
Instances not promoted by the scheduler are passed through untouched.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace

from corral.core.galera.bootstrap import Bootstrap, Join, Refuse, Wait, decide
from corral.core.galera.state import NodeState
from corral.core.scheduler.model import Instance


@dataclass(frozen=True)
class Claim:
    """The bootstrap claim as the controller read it: its node, and why it no longer holds
    (None: it holds; :func:`corral.records.galera.claim_holds`)."""

    node: str
    void: str | None = None


@dataclass(frozen=True)
class GateInputs:
    """``expected``: the resource's eligible nodes in spec order; ``assigned``: the staged
    instances; ``primary``: the members running a Primary component; ``gone``: node -> why it
    is gone for good (fenced); ``waiting_since``: when the controller began waiting (the shell
    restarts it when ``gone`` changes); ``wait``: the resource's ``bootstrap_wait``."""

    resource: str
    expected: Sequence[str]
    assigned: Sequence[Instance]
    reports: Mapping[str, NodeState]
    primary: Collection[str]
    claim: Claim | None
    gone: Mapping[str, str]
    waiting_since: float
    now: float
    wait: float


@dataclass(frozen=True)
class Gate:
    instances: tuple[Instance, ...]
    note: str | None = None  # why promotions are held (a ``waiting`` event when new)
    bootstrap: Bootstrap | None = None  # a claim to write with these instances, in one txn
    clear: bool = False  # the claimant is Primary: clear the claim


def hold(assigned: Sequence[Instance], keep: str | None = None) -> tuple[Instance, ...]:
    """The instances with every promotion but ``keep``'s held back (role ``started``)."""
    return tuple(
        i if i.role != "promoted" or i.node == keep else replace(i, role="started")
        for i in assigned
    )


def gate(g: GateInputs) -> Gate:
    """The gated instances of one Galera resource (see the module contract)."""
    assigned = tuple(g.assigned)
    promoted = [i.node for i in assigned if i.role == "promoted"]
    if not promoted:
        return Gate(assigned)
    if g.primary:
        if g.claim is not None and g.claim.node in g.primary:  # rule 1g: clear, then join
            note = f"{g.resource}: {g.claim.node} is Primary; the others join once its claim goes"
            return Gate(hold(assigned, g.claim.node), note, clear=True)
        return Gate(assigned)
    res = g.resource
    if g.claim is not None:
        if g.claim.void is not None:
            return Gate(hold(assigned), f"{res}: {g.claim.void}; waiting for its claim to go")
        return Gate(
            hold(assigned, g.claim.node),
            f"{res}: {g.claim.node} bootstraps; the others join once it is Primary",
        )
    decision = decide(g.expected, g.reports, g.gone, (), g.waiting_since, g.now, g.wait)
    if isinstance(decision, Bootstrap):
        if decision.node not in promoted:
            return Gate(
                hold(assigned),
                f"{res}: {decision.node} should bootstrap but is not assigned the promoted role",
            )
        return Gate(hold(assigned, decision.node), None, decision)
    if isinstance(decision, Refuse):
        return Gate(hold(assigned), f"{res}: not bootstrapping: {decision.reason}")
    if isinstance(decision, Wait):
        return Gate(hold(assigned), f"{res}: {decision.reason}")
    assert isinstance(decision, Join)  # not with primary=(): the decision joins nothing here
    return Gate(hold(assigned), f"{res}: {decision.reason}")
