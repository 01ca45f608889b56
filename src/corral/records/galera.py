"""The Galera records of one resource, under ``galera/<resource>/``, and the transactions that
write the exclusive ones.

- ``galera/<resource>/report/<node>`` (:class:`ReportRecord`, written by that node's agent with
  a blind put under its node lease: one writer): what the node's data directory says
  (grastate, the ``--wsrep-recover`` position, the saved view) and whether mariadbd runs
  there. Leased, so that a dead node has no report: its state is unknown, and the bootstrap
  decision never assumes it behind (:mod:`corral.core.galera.bootstrap`). A malformed report
  is skipped: the node reads as not reported, which only makes corral wait.
- ``galera/<resource>/bootstrap`` (:class:`BootstrapClaim`, written by the controller only):
  the one bootstrap under way (DESIGN rule 6). See "The claim" below.
- ``galera/<resource>/writer`` (:class:`WriterRecord`, written by the controller only): the
  node every HAProxy sends writes to (:mod:`corral.core.galera.writer` chooses it), so that
  two LB nodes never send writes to two nodes.

The claim (safety rule 6: an exclusive decision is an exclusive instance)
    :func:`claim_txn` writes it in ONE transaction that holds only if (1) no claim exists,
    (2) the controller key is still the one this controller created (the fencing token, as
    every controller write), and (3) the claimant's registration ``nodes/<node>`` is still
    the one the claim names (``reg``, its mod revision): a claim for a node that died and
    registered again is refused. The claim is put **under the claimant's node lease**.

    The claimant's agent starts ``--wsrep-new-cluster`` only while the claim names it and its
    current registration (:func:`may_bootstrap`), and (rule 1) stops it when it cannot renew
    its lease before ``lease_ttl - safety_margin``.

    Its lifetime:

    - *The bootstrap fails* (mariadbd exits, the claimant's agent stops it): the claimant
      gives the claim back (:func:`release_txn`) once its server is stopped, and reports; the
      failure counts against the resource on that node (rule 7); the controller decides again.

    - *Success*: once the bootstrap node runs a Primary component and reports synced, the
      controller clears the claim (:func:`clear_txn`, comparing the token and the claim's mod
      revision as read, so it deletes exactly the claim it judged). Later decisions are joins
      (a Primary runs).
    - *The claimant dies before it is Primary*: the claim stays while its lease lives, so no
      second bootstrap can start while the first may still be running. It goes with the lease:
      when the lease expires (the agent self-fenced first, rule 1) or when the controller
      revokes it after a successful fence (rule 2's fast path). That is exactly when rule 2
      would let an exclusive instance move; then the controller decides again from the
      reports, and a second bootstrap (another node, or the same one back) may be claimed.
      :func:`claim_holds` says the same from records (a view that already shows the fence or
      a new registration before the delete of the claim arrives): a claim that no longer
      holds is cleared with :func:`clear_txn` before a new one is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from corral.core.galera.bootstrap import Bootstrap
from corral.core.galera.state import GraState, NodeState, Position, SavedView
from corral.records.cluster import FencedRecord
from corral.records.codec import (
    Malformed,
    Record,
    opt_bool,
    opt_number,
    opt_str,
    req_int,
    req_str,
    strings,
)
from corral.records.store import Skipped
from corral.store import Compare, Delete, Keys, KeyValue, Op, Put


def _position(value: object, name: str) -> Position | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise Malformed(f"{name} is not an object: {value!r}"[:200])
    return Position(req_str(value, "uuid"), req_int(value, "seqno"))


def _position_value(position: Position | None) -> dict[str, Any] | None:
    return None if position is None else {"uuid": position.uuid, "seqno": position.seqno}


@dataclass(frozen=True)
class ReportRecord(Record):
    """``galera/<resource>/report/<node>``: one node's :class:`NodeState` (without the node's
    name: the key has it); ``time``: wall-clock seconds of the report, for people."""

    grastate: GraState | None
    recovered: Position | None
    view: SavedView | None
    running: bool
    time: float | None = None

    @classmethod
    def from_state(cls, state: NodeState, time: float | None = None) -> Self:
        return cls(state.grastate, state.recovered, state.view, state.running, time)

    def state(self, node: str) -> NodeState:
        return NodeState(node, self.grastate, self.recovered, self.view, self.running)

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> Self:
        gra = value.get("grastate")
        grastate = None
        if gra is not None:
            position = _position(gra, "grastate")
            assert position is not None
            grastate = GraState(position, opt_bool(gra, "safe_to_bootstrap"))
        view = value.get("view")
        saved = None
        if view is not None:
            if not isinstance(view, dict):
                raise Malformed(f"view is not an object: {view!r}"[:200])
            saved = SavedView(
                req_str(view, "my_uuid"),
                req_str(view, "view_id"),
                frozenset(strings(view, "members")),
            )
        return cls(
            grastate,
            _position(value.get("recovered"), "recovered"),
            saved,
            opt_bool(value, "running"),
            opt_number(value, "time"),
        )

    def to_value(self) -> dict[str, Any]:
        gra = self.grastate
        view = self.view
        return {
            "grastate": None
            if gra is None
            else {
                **(_position_value(gra.position) or {}),
                "safe_to_bootstrap": gra.safe_to_bootstrap,
            },
            "recovered": _position_value(self.recovered),
            "view": None
            if view is None
            else {
                "my_uuid": view.my_uuid,
                "view_id": view.view_id,
                "members": sorted(view.members),
            },
            "running": self.running,
            "time": self.time,
        }


@dataclass(frozen=True)
class BootstrapClaim(Record):
    """``galera/<resource>/bootstrap``: ``node`` bootstraps from ``uuid:seqno``; ``reg`` is
    the claimant's registration (mod revision of ``nodes/<node>``); ``force``: mark its
    grastate safe_to_bootstrap first; ``partial``: without the gone nodes; ``by``: the
    controller that claimed; ``reason``: the decision's reason; ``time``: wall seconds."""

    node: str
    reg: int
    uuid: str
    seqno: int
    force: bool = False
    partial: bool = False
    reason: str = ""
    by: str = ""
    time: float | None = None

    @property
    def position(self) -> Position:
        return Position(self.uuid, self.seqno)

    @classmethod
    def of(cls, decision: Bootstrap, reg: int, by: str, time: float | None = None) -> Self:
        """The claim of a bootstrap decision for the claimant's registration ``reg``."""
        position = decision.position
        return cls(
            decision.node,
            reg,
            position.uuid,
            position.seqno,
            decision.force,
            decision.partial,
            decision.reason,
            by,
            time,
        )

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> Self:
        return cls(
            req_str(value, "node"),
            req_int(value, "reg"),
            req_str(value, "uuid"),
            req_int(value, "seqno"),
            opt_bool(value, "force"),
            opt_bool(value, "partial"),
            opt_str(value, "reason"),
            opt_str(value, "by"),
            opt_number(value, "time"),
        )

    def to_value(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "reg": self.reg,
            "uuid": self.uuid,
            "seqno": self.seqno,
            "force": self.force,
            "partial": self.partial,
            "reason": self.reason,
            "by": self.by,
            "time": self.time,
        }


@dataclass(frozen=True)
class WriterRecord(Record):
    """``galera/<resource>/writer``: the node HAProxy sends writes to, why, since when."""

    node: str
    reason: str = ""
    time: float | None = None

    @classmethod
    def from_value(cls, value: Mapping[str, Any]) -> Self:
        return cls(req_str(value, "node"), opt_str(value, "reason"), opt_number(value, "time"))

    def to_value(self) -> dict[str, Any]:
        return {"node": self.node, "reason": self.reason, "time": self.time}


@dataclass(frozen=True)
class Txn:
    """One transaction for :meth:`corral.store.Store.txn`: ``compares``, then ``success``."""

    compares: tuple[Compare, ...]
    success: tuple[Op, ...]


def _token(keys: Keys, token: int) -> Compare:
    """The controller's fencing token (as :func:`corral.agent.controller.token_compare`)."""
    return Compare(keys.controller, "create_revision", "==", token)


def claim_txn(keys: Keys, resource: str, claim: BootstrapClaim, token: int, lease: int) -> Txn:
    """The bootstrap claim in one transaction (module docstring): no claim yet, still the
    controller, the claimant still at registration ``claim.reg``; put under ``lease``, the
    claimant's node lease (the ``lease`` of its ``nodes/<node>`` key)."""
    key = keys.galera_bootstrap(resource)
    return Txn(
        (
            Compare.missing(key),
            _token(keys, token),
            Compare(keys.node(claim.node), "mod_revision", "==", claim.reg),
        ),
        (Put(key, claim.dump(), lease),),
    )


def clear_txn(keys: Keys, resource: str, token: int, mod_revision: int) -> Txn:
    """Delete the claim read at ``mod_revision`` (succeeded, or no longer holding), only while
    still the controller and only that claim (a newer one is left alone)."""
    key = keys.galera_bootstrap(resource)
    return Txn((_token(keys, token), Compare.unchanged_since(key, mod_revision)), (Delete(key),))


def release_txn(keys: Keys, resource: str, mod_revision: int) -> Txn:
    """The claimant gives its claim back (its bootstrap failed and its mariadbd is stopped):
    only the claim it read at ``mod_revision``, which names it. No controller token: the
    claimant alone knows that its server is stopped, and giving a claim back never lets two
    bootstraps run (the controller decides again, from the reports)."""
    key = keys.galera_bootstrap(resource)
    return Txn((Compare.unchanged_since(key, mod_revision),), (Delete(key),))


def writer_txn(
    keys: Keys, resource: str, writer: WriterRecord, token: int, read_revision: int
) -> Txn:
    """Set the writer, only while still the controller and only over the writer record read
    at ``read_revision`` (0: there was none), so two controllers never interleave."""
    key = keys.galera_writer(resource)
    read = (
        Compare.missing(key) if read_revision == 0 else Compare.unchanged_since(key, read_revision)
    )
    return Txn((_token(keys, token), read), (Put(key, writer.dump()),))


def claim_holds(
    claim: BootstrapClaim, registrations: Mapping[str, int], fenced: Mapping[str, FencedRecord]
) -> str | None:
    """None while the claim holds; else why not (the claimant's registration is gone or was
    fenced: rule 2 lets the controller decide again). ``registrations``: node -> mod revision
    of ``nodes/<node>``."""
    fence = fenced.get(claim.node)
    if fence is not None and fence.revision == claim.reg:
        return f"{claim.node}, which claimed the bootstrap, was fenced"
    if registrations.get(claim.node) != claim.reg:
        return f"{claim.node}, which claimed the bootstrap, lost its registration"
    return None


def may_bootstrap(claim: BootstrapClaim | None, node: str, reg: int) -> bool:
    """Whether the agent of ``node`` at registration ``reg`` may start a new cluster: only
    under a claim that names both (rule 1: the claim is its assignment)."""
    return claim is not None and claim.node == node and claim.reg == reg


@dataclass
class GaleraRecords:
    """The Galera records of one resource: ``reports`` by node; the claim and the writer
    with the mod revision they were read at (for :func:`clear_txn` / :func:`writer_txn`)."""

    reports: dict[str, ReportRecord] = field(default_factory=dict)
    claim: tuple[BootstrapClaim, int] | None = None
    writer: tuple[WriterRecord, int] | None = None
    skipped: list[Skipped] = field(default_factory=list)

    def states(self) -> dict[str, NodeState]:
        """The reports as the bootstrap decision takes them."""
        return {node: r.state(node) for node, r in self.reports.items()}


def read_galera(keys: Keys, resource: str, kvs: Iterable[KeyValue]) -> GaleraRecords:
    """The records of ``resource`` among ``kvs`` (a range read of ``keys.galera(resource)`` or
    of the whole cluster); a malformed one is listed in ``skipped``, never raised."""
    prefix = keys.galera(resource)
    out = GaleraRecords()
    for kv in kvs:
        if not kv.key.startswith(prefix):
            continue
        parts = kv.key[len(prefix) :].decode(errors="replace").split("/")
        try:
            if len(parts) == 2 and parts[0] == "report":
                out.reports[parts[1]] = ReportRecord.read(kv.value)
            elif parts == ["bootstrap"]:
                out.claim = (BootstrapClaim.read(kv.value), kv.mod_revision)
            elif parts == ["writer"]:
                out.writer = (WriterRecord.read(kv.value), kv.mod_revision)
        except Malformed as exc:
            out.skipped.append(Skipped(kv.key, kv.mod_revision, exc.reason))
    return out
