"""The controller's Galera step (shell): reads the records, asks the pure gate
(:mod:`corral.core.galera.gate`) for each galera resource, and hands back what the step must
write. Nothing is decided here.

- :meth:`GaleraGates.apply` rewrites the staged assignments of the galera resources, adds the
  gate's notes (``waiting`` events, rule 5) and returns the bootstrap claims to put in the
  step's own transaction (``claims``: compares + puts of
  :func:`corral.records.galera.claim_txn`, with a ``bootstrap`` event) and the claims to clear
  after it (``clears``: :func:`corral.records.galera.clear_txn`).
- ``waiting_since`` per resource is kept here on the controller's monotonic clock: it starts
  when a resource first has no Primary and no claim, and starts again when its set of gone
  nodes changes (so a node fenced late still gets the whole ``bootstrap_wait``).
- A member counts as Primary when its status record shows the resource promoted and not
  unhealthy on an online node (the agent reports a member promoted only once its mariadbd
  answered as part of the Primary component).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from corral.core.assign import Assigned
from corral.core.galera.gate import Claim, GateInputs, gate, hold
from corral.core.galera.writer import choose_writer
from corral.core.scheduler.model import Instance
from corral.drivers.galera_member import PRIMARY_DETAIL
from corral.records.galera import (
    BootstrapClaim,
    GaleraRecords,
    Txn,
    WriterRecord,
    claim_holds,
    claim_txn,
    clear_txn,
    read_galera,
    writer_txn,
)
from corral.records.store import StoreRecords
from corral.spec import Spec
from corral.store import Keys, KeyValue


@dataclass
class GaleraStep:
    assigned: Assigned
    notes: list[str]
    claims: list[tuple[str, Txn, str]] = field(default_factory=list)  # (res, txn, reason)
    clears: list[Txn] = field(default_factory=list)
    writers: list[tuple[str, Txn, str]] = field(default_factory=list)  # (res, txn, reason)


class GaleraGates:
    def __init__(self, keys: Keys, me: str, clock: Callable[[], float], wall: Callable[[], float]):
        self.keys, self.me, self.clock, self.wall = keys, me, clock, wall
        self._since: dict[str, tuple[frozenset[str], float]] = {}

    def apply(
        self,
        spec: Spec,
        records: StoreRecords,
        kvs: list[KeyValue],
        assigned: Assigned,
        notes: list[str],
        token: int,
    ) -> GaleraStep:
        step = GaleraStep(dict(assigned), list(notes))
        prefix = self.keys.nodes()
        leases = {  # the node leases (of nodes/<node>) a claim goes under
            kv.key[len(prefix) :].decode(errors="replace"): kv.lease
            for kv in kvs
            if kv.key.startswith(prefix)
        }
        for name, res in spec.resources.items():
            if res.galera is not None and name in assigned:
                self._one(spec, name, records, kvs, leases, step, token)
        return step

    def _one(
        self,
        spec: Spec,
        name: str,
        records: StoreRecords,
        kvs: list[KeyValue],
        leases: dict[str, int],
        step: GaleraStep,
        token: int,
    ) -> None:
        res = spec.resources[name]
        assert res.galera is not None
        read = read_galera(self.keys, name, kvs)
        regs = records.registrations
        gone = {
            n: "fenced"
            for n, f in records.fenced.items()
            if regs.get(n) in (None, f.revision) and n in spec.nodes
        }
        primary = [
            n
            for (n, r), status in records.status.items()
            if r == name
            and n in regs
            and n not in gone
            and any(i.role == "promoted" and i.health != "unhealthy" for i in status.instances)
        ]
        claim = None
        if read.claim is not None:
            record, _ = read.claim
            claim = Claim(record.node, claim_holds(record, regs, records.fenced))
        now = self.clock()
        since = self._waiting_since(name, frozenset(gone), now, bool(primary) or claim is not None)
        expected = [n for n, node in spec.nodes.items() if res.on.allows(n, node)]
        got = gate(
            GateInputs(
                name, expected, step.assigned[name], read.states(), primary, claim, gone,
                since, now, res.galera.bootstrap_wait,
            )
        )  # fmt: skip
        step.assigned[name] = list(got.instances)
        self._writer(name, expected, got.instances, records, read, step, token)
        if got.note is not None:
            step.notes.append(got.note)
        if got.clear and read.claim is not None:
            step.clears.append(clear_txn(self.keys, name, token, read.claim[1]))
        decision = got.bootstrap
        if decision is None:
            return
        reg, lease = regs.get(decision.node), leases.get(decision.node, 0)
        if reg is None or not lease:  # no claim can be made: nobody is told to bootstrap
            step.assigned[name] = list(hold(got.instances))
            step.notes.append(f"{name}: {decision.node} should bootstrap but is not registered")
            return
        claim_record = BootstrapClaim.of(decision, reg, self.me, self.wall())
        txn = claim_txn(self.keys, name, claim_record, token, lease)
        step.claims.append((name, txn, decision.reason))

    def _writer(
        self,
        name: str,
        expected: list[str],
        instances: tuple[Instance, ...],
        records: StoreRecords,
        read: GaleraRecords,
        step: GaleraStep,
        token: int,
    ) -> None:
        """The writer record after :func:`choose_writer`: ready = an online member reported
        promoted, healthy by its checks and synced in the Primary component (its driver's
        status detail, :data:`PRIMARY_DETAIL`: a donor or a non-Primary member is not);
        stopping = a ready member no longer assigned the promoted role
        (a planned stop, standby, a move)."""
        ready = [
            n
            for (n, r), status in records.status.items()
            if r == name
            and n in records.registrations
            and any(
                i.role == "promoted" and i.health == "healthy" and i.detail == PRIMARY_DETAIL
                for i in status.instances
            )
        ]
        promoted = {i.node for i in instances if i.role == "promoted"}
        current = read.writer[0].node if read.writer is not None else None
        choice = choose_writer(current, expected, ready, [n for n in ready if n not in promoted])
        if choice.changed and choice.node is not None:
            record = WriterRecord(choice.node, choice.reason, self.wall())
            revision = read.writer[1] if read.writer is not None else 0
            txn = writer_txn(self.keys, name, record, token, revision)
            step.writers.append((name, txn, choice.reason))

    def _waiting_since(self, name: str, gone: frozenset[str], now: float, settled: bool) -> float:
        if settled:
            self._since.pop(name, None)
            return now
        kept = self._since.get(name)
        if kept is None or kept[0] != gone:
            self._since[name] = kept = (gone, now)
        return kept[1]
