"""The controller's gate on a RabbitMQ resource's promotions (pure).

A rabbitmq resource is promotable: a promoted instance is a running broker. The scheduler
promotes every member; this gate holds a promotion back (role ``started``: the broker stays
stopped, its state reported) while the node's decision in the plan
(:func:`corral.core.rabbit.decide`) is to wait, so no agent ever starts a broker out of order
(DESIGN rule 6: a node outside the last-running set never starts first while one of that set
may come back; only the claimant of an outage force-boots). Contract of :func:`gate`:

- A node whose decision acts (``start_first``, ``start``, ``join``, ``force_boot``) or whose
  broker runs (``run``, ``forget``) keeps its promotion.
- A node told to ``wait`` keeps its promotion while its broker is not stopped (booting, or
  paused by ``pause_minority``: demoting it would stop a broker that is coming back), and is
  held while it is stopped.
- A node without a decision (no report: no live agent, or its agent has not reported yet)
  is held: its first report decides.
- ``note``: why the first held node waits (a ``waiting`` event when new, rule 5), or None.
Instances not promoted by the scheduler are passed through untouched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from corral.core.rabbit.decide import Plan
from corral.core.rabbit.state import NodeReport
from corral.core.scheduler.model import Instance

ACTS = frozenset({"start_first", "start", "join", "force_boot", "run", "forget"})


@dataclass(frozen=True)
class RabbitGate:
    instances: tuple[Instance, ...]
    note: str | None = None


def may_run(node: str, plan: Plan, reports: Mapping[str, NodeReport]) -> tuple[bool, str]:
    """(keep ``node`` promoted, why not when held) under ``plan``."""
    decision = plan.decisions.get(node)
    if decision is None:
        return False, "no report from its agent yet"
    if decision.action in ACTS:
        return True, ""
    report = reports.get(node)
    if report is not None and report.state != "stopped":
        return True, ""
    return False, decision.reason


def gate(
    resource: str,
    assigned: Sequence[Instance],
    plan: Plan,
    reports: Mapping[str, NodeReport],
) -> RabbitGate:
    """The gated instances of one RabbitMQ resource (see the module contract)."""
    out, note = [], None
    for instance in assigned:
        if instance.role != "promoted":
            out.append(instance)
            continue
        keep, why = may_run(instance.node, plan, reports)
        if keep:
            out.append(instance)
            continue
        out.append(replace(instance, role="started"))
        if note is None:
            note = f"{resource}: {instance.node} waits: {why}"
    return RabbitGate(tuple(out), note)
