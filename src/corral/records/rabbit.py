"""The RabbitMQ records of one resource, under ``rabbitmq/<resource>/`` (:class:`RabbitKeys`).

- ``rabbitmq/<resource>/report/<node>`` (:class:`ReportRecord`, under the node's lease,
  written by that node's agent only: a blind put): the broker's state on that node
  (:class:`corral.core.rabbit.NodeReport`). Gone with the node's lease: a node without a
  report has no live agent.
- ``rabbitmq/<resource>/running/<node>`` (:class:`RunningRecord`, no lease, written by that
  node's agent only, whenever the set of nodes it sees running changes while its broker runs):
  the nodes it saw running. It outlives an outage on purpose: the record with the highest mod
  revision names the last-running set (:class:`corral.core.rabbit.RunRecord`, ``seq`` = that
  revision: one global order, no clock).
- ``rabbitmq/<resource>/force-boot/<outage>`` (:class:`ClaimRecord`, written by the
  controller only): the one node allowed to ``force_boot`` in that outage (DESIGN rule 6). It
  is written by :func:`claim_force_boot`, one transaction comparing that the key is absent and
  that the controller key is still the one created at the writer's token, so two controllers,
  or one controller twice, can never claim two nodes for one outage. A claim is kept while
  its outage may still be the current one, and trimmed by the controller once it is *spent*
  (:func:`spent_claims`: a run record newer than the outage exists, so a node served after
  it; the ``force-boot`` event keeps the why for people).

Run records are never deleted (each rewrite only raises its revision): the newest ``seq`` never
goes back, so an outage once over is over for good; the trim relies on it.

Every reader skips a malformed value (``parse_kv``: counted and logged once), never crashes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

from corral.core.rabbit import BrokerState, ForceBootClaim, NodeReport, RunRecord
from corral.records.codec import Malformed, Record, opt_number, opt_str, req_int, req_str, strings
from corral.store import Compare, Keys, KeyValue, Op, Put, Store
from corral.store.keys import check_name

STATES: tuple[BrokerState, ...] = ("running", "starting", "paused", "stopped")


class RabbitKeys:
    """The keys of one RabbitMQ resource of a cluster (see the module docstring)."""

    def __init__(self, keys: Keys, resource: str) -> None:
        self.keys = keys
        self.resource = check_name("resource", resource)
        self.prefix = f"{keys.root}rabbitmq/{resource}/".encode()

    def report(self, node: str) -> bytes:
        return self.prefix + b"report/" + check_name("node", node).encode()

    def running(self, node: str) -> bytes:
        return self.prefix + b"running/" + check_name("node", node).encode()

    def claim(self, outage: int) -> bytes:
        """Fixed width, so key order is outage order."""
        if outage < 0:
            raise ValueError("an outage id is a store revision, never negative")
        return self.prefix + f"force-boot/{outage:020d}".encode()

    @property
    def controller(self) -> bytes:
        return self.keys.controller


def _state(value: Mapping[str, Any]) -> BrokerState:
    got = req_str(value, "state")
    for state in STATES:
        if got == state:
            return state
    raise Malformed(f"state is not one of {', '.join(STATES)}: {got!r}"[:200])


@dataclass(frozen=True)
class ReportRecord(Record):
    """``report/<node>``: ``{"state", "identity", "members", "running", "since"}``."""

    state: BrokerState
    identity: str = ""
    members: tuple[str, ...] = ()
    running: tuple[str, ...] = ()
    since: float = 0.0

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> Self:
        return cls(
            _state(value),
            opt_str(value, "identity"),
            strings(value, "members"),
            strings(value, "running"),
            opt_number(value, "since") or 0.0,
        )

    def to_value(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "identity": self.identity,
            "members": sorted(self.members),
            "running": sorted(self.running),
            "since": self.since,
        }

    @classmethod
    def of(cls, report: NodeReport) -> Self:
        members, running = tuple(sorted(report.members)), tuple(sorted(report.running))
        return cls(report.state, report.identity, members, running, report.since)

    def report(self, node: str) -> NodeReport:
        members, running = frozenset(self.members), frozenset(self.running)
        return NodeReport(node, self.state, self.identity, members, running, self.since)


@dataclass(frozen=True)
class RunningRecord(Record):
    """``running/<node>``: ``{"identity", "running", "at"}``."""

    identity: str
    running: tuple[str, ...]
    at: float = 0.0

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> Self:
        running = strings(value, "running")
        if not running:
            raise Malformed("running is empty (its writer itself runs)")
        return cls(req_str(value, "identity"), running, opt_number(value, "at") or 0.0)

    def to_value(self) -> dict[str, Any]:
        return {"identity": self.identity, "running": sorted(self.running), "at": self.at}

    def record(self, node: str, seq: int) -> RunRecord:
        return RunRecord(node, self.identity, frozenset(self.running), seq, self.at)


@dataclass(frozen=True)
class ClaimRecord(Record):
    """``force-boot/<outage>``: ``{"node", "outage", "at", "reason"}``."""

    node: str
    outage: int
    at: float
    reason: str = ""

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> Self:
        node, outage = req_str(value, "node"), req_int(value, "outage")
        return cls(node, outage, opt_number(value, "at") or 0.0, opt_str(value, "reason"))

    def to_value(self) -> dict[str, Any]:
        return {"node": self.node, "outage": self.outage, "at": self.at, "reason": self.reason}

    @classmethod
    def of(cls, claim: ForceBootClaim) -> Self:
        return cls(claim.node, claim.outage, claim.at, claim.reason)

    def claim(self) -> ForceBootClaim:
        return ForceBootClaim(self.outage, self.node, self.at, self.reason)


@dataclass
class RabbitState:
    """Everything of one resource read at once: reports and run records by node, claims by
    outage, and the read's store revision."""

    reports: dict[str, NodeReport] = field(default_factory=dict)
    records: dict[str, RunRecord] = field(default_factory=dict)
    claims: dict[int, ForceBootClaim] = field(default_factory=dict)
    revision: int = 0

    def claim_of(self, outage: int | None) -> ForceBootClaim | None:
        return None if outage is None else self.claims.get(outage)


def parse_state(rkeys: RabbitKeys, kvs: Sequence[KeyValue], revision: int = 0) -> RabbitState:
    """The records among ``kvs`` (other keys are ignored, malformed values skipped)."""
    state = RabbitState(revision=revision)
    for kv in kvs:
        if not kv.key.startswith(rkeys.prefix):
            continue
        kind, _, name = kv.key[len(rkeys.prefix) :].decode(errors="replace").partition("/")
        if kind == "report" and (got := ReportRecord.parse_kv(kv)) is not None:
            state.reports[name] = got.report(name)
        elif kind == "running" and (run := RunningRecord.parse_kv(kv)) is not None:
            state.records[name] = run.record(name, kv.mod_revision)
        elif kind == "force-boot" and (claim := ClaimRecord.parse_kv(kv)) is not None:
            state.claims.update(_claim_at(rkeys, kv, claim))
    return state


def _claim_at(rkeys: RabbitKeys, kv: KeyValue, claim: ClaimRecord) -> dict[int, ForceBootClaim]:
    """The claim by its outage when it sits under its own outage's key (a value copied under
    another key claims nothing)."""
    return {claim.outage: claim.claim()} if kv.key == rkeys.claim(claim.outage) else {}


async def read_state(store: Store, rkeys: RabbitKeys) -> RabbitState:
    """One linearizable range read of the resource's records."""
    got = await store.range(rkeys.prefix)
    return parse_state(rkeys, got.kvs, got.revision)


async def write_report(store: Store, rkeys: RabbitKeys, report: NodeReport, lease: int) -> int:
    """The node's own report, under its lease (single writer: a blind put)."""
    return await store.put(rkeys.report(report.node), ReportRecord.of(report).dump(), lease)


async def write_running(
    store: Store, rkeys: RabbitKeys, node: str, identity: str, running: frozenset[str], at: float
) -> int:
    """The nodes ``node`` sees running (itself included), no lease; returns the revision,
    which is the record's ``seq``. Single writer (the node's agent): a blind put."""
    if node not in running:
        raise ValueError(f"{node} writes the nodes it sees running, itself among them")
    value = RunningRecord(identity, tuple(sorted(running)), at).dump()
    return await store.put(rkeys.running(node), value)


def claim_ops(
    rkeys: RabbitKeys, claim: ForceBootClaim, token: int, extra: Sequence[Op] = ()
) -> tuple[list[Compare], list[Op]]:
    """The compares and ops of the force-boot claim: the claim key is absent and the
    controller key is the one created at ``token`` (the fencing token); ``extra``: ops to
    write in the same transaction (the event that says why)."""
    compares = [
        Compare.missing(rkeys.claim(claim.outage)),
        Compare(rkeys.controller, "create_revision", "==", token),
    ]
    return compares, [Put(rkeys.claim(claim.outage), ClaimRecord.of(claim).dump()), *extra]


async def claim_force_boot(
    store: Store, rkeys: RabbitKeys, claim: ForceBootClaim, token: int, extra: Sequence[Op] = ()
) -> bool:
    """Write the claim (DESIGN rule 6); True when this call wrote it. False: the outage was
    claimed already (read it back: the node named there, and only it, force-boots) or this
    writer is no longer the controller. A :class:`~corral.store.StoreUnavailable` with
    ``maybe_applied`` is the caller's to resolve by reading again, never by a blind retry."""
    compares, ops = claim_ops(rkeys, claim, token, extra)
    return (await store.txn(compares, ops)).succeeded


def spent_claims(rkeys: RabbitKeys, state: RabbitState) -> list[bytes]:
    """Keys of the claims whose outage is over: a run record with a higher ``seq`` exists.

    Why deleting them keeps DESIGN rule 6 (one force_boot per outage): the outage the
    controller plans for is the ``seq`` of the newest run record, and a claim is looked up by
    that outage only. A run record is written only by a node whose broker *serves*, and is
    never deleted, so once a record newer than outage ``o`` exists the newest ``seq`` stays
    above ``o`` for good: no later plan is made for ``o`` again, and no node can be told to
    force-boot in it (a stale plan that still says so finds no claim: the member refuses,
    :meth:`corral.drivers.rabbitmq_member.RabbitMember.promote`). The claim of the current
    outage (``o`` == the newest ``seq``) is never spent, even when its node never came back:
    that keeps every other node from force-booting it."""
    newest = max((r.seq for r in state.records.values()), default=0)
    return [rkeys.claim(o) for o in sorted(state.claims) if o < newest]
