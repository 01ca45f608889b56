"""The controller's RabbitMQ plan of one resource: ``rabbitmq/<resource>/plan``
(:class:`PlanRecord`, written by the controller only, no lease).

It holds the decision of every reporting node (:class:`corral.core.rabbit.Decision`: what it
does next, with whom, and why) and the outage it was made in. Each node's agent reads its own
decision when it acts (:mod:`corral.agent.rabbit`); nothing else tells a broker to start,
join, forget or force-boot.

:func:`plan_txn` writes it in one transaction comparing the controller key (the fencing
token) and the plan as read (a newer plan is never overwritten by an older step); when the
plan needs a force-boot claim, the claim's compares and put go in that same transaction
(:func:`corral.records.rabbit.claim_ops`: absent, token): so no plan ever names a node to
force-boot without its claim existing, and no outage gets two (DESIGN rule 6).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Self

from corral.core.rabbit import Action, Decision, Plan
from corral.records.codec import (
    Malformed,
    Record,
    objects,
    opt_bool,
    opt_int,
    opt_str,
    req_str,
)
from corral.records.rabbit import RabbitKeys, claim_ops
from corral.store import Compare, Delete, Op, Put

ACTIONS: tuple[Action, ...] = (
    "run", "start_first", "start", "join", "wait", "forget", "force_boot"
)  # fmt: skip


def plan_key(rkeys: RabbitKeys) -> bytes:
    return rkeys.prefix + b"plan"


def _action(value: Mapping[str, Any]) -> Action:
    got = req_str(value, "action")
    for action in ACTIONS:
        if got == action:
            return action
    raise Malformed(f"action is not one of {', '.join(ACTIONS)}: {got!r}"[:200])


def _decision(value: Mapping[str, Any]) -> Decision:
    return Decision(
        req_str(value, "node"),
        _action(value),
        opt_str(value, "reason"),
        opt_str(value, "peer") or None,
        reset=opt_bool(value, "reset"),
        regrow=opt_bool(value, "regrow"),
    )


@dataclass(frozen=True)
class PlanRecord(Record):
    """``plan``: ``{"outage", "decisions": [{"node", "action", "reason", "peer", "reset",
    "regrow"}]}``; ``outage`` None: the cluster runs, or never formed."""

    decisions: tuple[Decision, ...]
    outage: int | None = None

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> Self:
        decisions = tuple(_decision(d) for d in objects(value, "decisions"))
        return cls(decisions, opt_int(value, "outage"))

    def to_value(self) -> dict[str, Any]:
        return {
            "outage": self.outage,
            "decisions": [
                {
                    "node": d.node,
                    "action": d.action,
                    "reason": d.reason,
                    "peer": d.peer or "",
                    "reset": d.reset,
                    "regrow": d.regrow,
                }
                for d in self.decisions
            ],
        }

    @classmethod
    def of(cls, plan: Plan) -> Self:
        """The record of ``plan`` (``waiting_for``/``until`` are for the controller's notes:
        not stored)."""
        kept = (replace(d, waiting_for=(), until=None) for d in plan.decisions.values())
        return cls(tuple(kept), plan.outage)

    def decision(self, node: str) -> Decision | None:
        return next((d for d in self.decisions if d.node == node), None)


@dataclass(frozen=True)
class PlanTxn:
    compares: tuple[Compare, ...]
    ops: tuple[Op, ...]


def plan_txn(
    rkeys: RabbitKeys,
    plan: Plan,
    token: int,
    read_revision: int,
    extra: Sequence[Op] = (),
) -> PlanTxn:
    """The transaction that writes ``plan``: the controller key created at ``token``, the
    plan key unchanged since ``read_revision`` (0: absent); with the plan's force-boot claim
    (absent, token) in the same transaction. ``extra``: ops to add (the events)."""
    key = plan_key(rkeys)
    compares = [
        Compare(rkeys.controller, "create_revision", "==", token),
        Compare.unchanged_since(key, read_revision),
    ]
    ops: list[Op] = [Put(key, PlanRecord.of(plan).dump())]
    if plan.claim is not None:
        more, claim = claim_ops(rkeys, plan.claim, token)
        compares += more
        ops += claim
    return PlanTxn(tuple(compares), (*ops, *extra))


def trim_txn(rkeys: RabbitKeys, spent: Sequence[bytes], token: int) -> PlanTxn:
    """The transaction that deletes the spent force-boot claims ``spent``
    (:func:`corral.records.rabbit.spent_claims`), comparing the controller key created at
    ``token``: only the controller trims (a spent claim stays spent, so a trim that lands
    late is still safe; the token keeps a deposed controller's writes out all the same)."""
    compares = (Compare(rkeys.controller, "create_revision", "==", token),)
    return PlanTxn(compares, tuple(Delete(key) for key in spent))
