"""The controller's RabbitMQ step (shell): reads the records, asks the pure cores for each
rabbitmq resource (:func:`corral.core.rabbit.decide`, then :mod:`corral.core.rabbit.gate`)
and hands back what the step must write. Nothing is decided here.

- :meth:`RabbitGates.apply` rewrites the staged assignments of the rabbitmq resources (a
  node told to wait is held unpromoted), adds the gate's notes (``waiting`` events, rule 5)
  and returns one transaction per resource whose plan changed
  (:func:`corral.records.rabbit_plan.plan_txn`: the plan, and the force-boot claim when the
  plan needs one, with a ``force-boot`` event, all in one write: DESIGN rule 6).
- The controller writes these transactions *before* the step's assignments: an agent told
  to run its broker always finds its decision (and its claim) in the store. A plan
  transaction that fails (deposed, or a newer plan) ends the step; the next one reads again.
- ``gone``: a node fenced at its current registration (or fenced with no registration left)
  is ``fenced`` since its fence record's time; ``now`` is the wall clock, like the nodes'
  report times (``since``) the cores compare it with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from corral.core.assign import Assigned
from corral.core.rabbit import Cluster, Policy, decide
from corral.core.rabbit.gate import gate
from corral.records.rabbit import RabbitKeys, parse_state, spent_claims
from corral.records.rabbit_plan import PlanRecord, PlanTxn, plan_key, plan_txn, trim_txn
from corral.records.store import StoreRecords
from corral.spec import Spec
from corral.store import Keys, KeyValue, Put

EventOp = Callable[[str, str, str], Put]


@dataclass
class RabbitStep:
    assigned: Assigned
    notes: list[str]
    plans: list[tuple[str, PlanTxn]] = field(default_factory=list)  # (resource, txn)


class RabbitGates:
    def __init__(self, keys: Keys, wall: Callable[[], float]) -> None:
        self.keys, self.wall = keys, wall

    def apply(
        self,
        spec: Spec,
        records: StoreRecords,
        kvs: list[KeyValue],
        step: RabbitStep,
        token: int,
        event: EventOp,
    ) -> RabbitStep:
        for name, res in spec.resources.items():
            if res.rabbitmq is not None and name in step.assigned:
                self._one(spec, name, records, kvs, step, token, event)
        return step

    def _one(
        self,
        spec: Spec,
        name: str,
        records: StoreRecords,
        kvs: list[KeyValue],
        step: RabbitStep,
        token: int,
        event: EventOp,
    ) -> None:
        res = spec.resources[name]
        assert res.rabbitmq is not None
        rkeys = RabbitKeys(self.keys, name)
        state = parse_state(rkeys, kvs)
        regs = records.registrations
        fenced = {
            n: f for n, f in records.fenced.items() if regs.get(n) in (None, f.revision)
        }  # a node registered again since its fence is back: not gone
        last = max((r.seq for r in state.records.values()), default=0)
        expected = tuple(n for n, node in spec.nodes.items() if res.on.allows(n, node))
        cluster = Cluster(
            expected,
            {n: r for n, r in state.reports.items() if n in expected},
            state.records,
            {n: "fenced" for n in fenced},
            {n: f.time or 0.0 for n, f in fenced.items()},
            state.claim_of(last),
        )
        policy = Policy(res.rabbitmq.force_boot_after, res.rabbitmq.forget_fenced_after)
        plan = decide(cluster, self.wall(), policy)
        got = gate(name, step.assigned[name], plan, cluster.reports)
        step.assigned[name] = list(got.instances)
        if got.note is not None:
            step.notes.append(got.note)
        spent = spent_claims(rkeys, state)
        if spent:  # outages over: their claims can never be looked up again
            step.plans.append((name, trim_txn(rkeys, spent, token)))
        key = plan_key(rkeys)
        stored = next((kv for kv in kvs if kv.key == key), None)
        new = PlanRecord.of(plan)
        if stored is not None and PlanRecord.parse(stored.value) == new and plan.claim is None:
            return
        said = [event("force-boot", plan.claim.reason, name)] if plan.claim is not None else []
        revision = stored.mod_revision if stored is not None else 0
        step.plans.append((name, plan_txn(rkeys, plan, token, revision, said)))
