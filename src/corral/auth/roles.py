"""Roles and their etcd permissions, as a pure function of the key layout (:class:`Keys`).

Roles, by what their holder may change (each person's role is one of the first three):

- ``viewer``: reads the cluster's keys, secrets excepted; writes nothing.
- ``operator``: a viewer that also writes the operators' records: ``admin/`` (maintenance,
  standby, bans, moves), ``failcounts/`` (``corral cleanup`` forgets failures),
  ``requests/`` (``corral resource restart``) and ``events/`` (the audit of its own actions);
  never the spec, never a secret, never what the agents decide (``assign/``, ``nodes/``, ...).
- ``admin``: everything under the cluster's root: the spec, the secrets, ``auth/``.
- ``agent`` (every node's agent, its etcd user ``node:<node>``): reads everything under the
  root (the gossip key, the API tokens it verifies) and writes what an agent or the controller
  writes: ``nodes/`` ``status/`` ``members/`` ``lb/`` (under its lease), ``controller``, ``assign/``
  ``fenced/`` ``systemic/`` (the controller), ``failcounts/`` (an agent counts its failures, the
  controller rewrites them when it judges them systemic), ``requests/`` (an agent deletes a request
  it carried out), ``events/`` (and the controller trims them), ``gossip-key`` (the first agent
  creates it) and ``keys/ack/`` (the keyring version it applied). Any agent may become the
  controller, so the ranges are cluster-wide, not per node; and a controller that revokes a fenced
  node's lease needs write access to every key under that lease (etcd checks it), which these ranges
  give. Not the spec (the bootstrap seeds it before auth is on, see
  :func:`corral.auth.etcdauth.ensure`), not ``admin/`` nor ``auth/``.

Secrets (:func:`secret_ranges`): ``gossip-key`` and ``auth/tokens/``. etcd's permissions are
additive ranges ``[key, range_end)``, and a read must lie wholly inside the union of the
ranges granted, so viewers and operators get the cluster's root cut around the secrets
(:func:`public_spans`), and a client of theirs reads those spans, never the whole root.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from corral.store import Keys
from corral.store.base import prefix_end

Role = Literal["viewer", "operator", "admin", "agent"]
PEOPLE: tuple[Role, ...] = ("viewer", "operator", "admin")  # in order of power
ROLES: tuple[Role, ...] = (*PEOPLE, "agent")
Access = Literal["read", "write", "readwrite"]


@dataclass(frozen=True, order=True)
class Span:
    """Keys ``start <= key < end``."""

    start: bytes
    end: bytes

    @staticmethod
    def prefix(prefix: bytes) -> Span:
        return Span(prefix, prefix_end(prefix))

    @staticmethod
    def key(key: bytes) -> Span:
        return Span(key, key + b"\x00")

    def covers(self, key: bytes) -> bool:
        return self.start <= key < self.end

    def show(self, root: bytes) -> str:
        """``admin/`` for a prefix, ``spec`` for one key, else ``[a, b)`` (relative)."""

        def text(key: bytes) -> str:
            return key[len(root) :].decode(errors="replace").replace("\x00", "\\0")

        start = text(self.start)
        if self.end == self.start + b"\x00":
            return start
        if self.end == prefix_end(self.start):
            return f"{start}*"
        end = text(self.end) if self.end.startswith(root) else "<end of root>"
        return f"[{start or '<root>'}, {end})"


@dataclass(frozen=True, order=True)
class Perm:
    """One etcd permission: ``access`` to the keys of ``span``. As etcd's ``Permission``:
    ``key = span.start``, ``range_end = span.end``."""

    span: Span
    access: Access


def etcd_role(cluster: str, role: Role) -> str:
    """The etcd role's name: per cluster, since clusters may share an external etcd."""
    return f"corral:{cluster}:{role}"


def secret_ranges(keys: Keys) -> tuple[Span, ...]:
    """The keys only agents and admins may read."""
    return (Span.prefix(keys.tokens()), Span.key(keys.gossip_key))


def public_spans(keys: Keys) -> tuple[Span, ...]:
    """The cluster's root without the secrets, as few sorted spans as that takes."""
    return cut(Span.prefix(keys.root_prefix), secret_ranges(keys))


def cut(whole: Span, holes: Iterable[Span]) -> tuple[Span, ...]:
    """``whole`` minus ``holes`` (sorted, empty pieces left out)."""
    pieces, start = [], whole.start
    for hole in sorted(holes):
        if hole.start > start:
            pieces.append(Span(start, min(hole.start, whole.end)))
        start = max(start, hole.end)
    if start < whole.end:
        pieces.append(Span(start, whole.end))
    return tuple(p for p in pieces if p.start < p.end)


def _agent_writes(keys: Keys) -> list[Span]:
    sections: tuple[str, ...] = ("nodes", "status", "members", "lb", "assign", "fenced")
    sections += ("systemic", "galera", "rabbitmq")  # galera/rabbitmq: reports, claims, plans
    return [
        *(Span.prefix(keys.prefix(s)) for s in sections),
        Span.key(keys.controller),
        Span.prefix(keys.prefix("failcounts")),
        Span.prefix(keys.prefix("requests")),
        Span.prefix(keys.event_prefix()),
        Span.key(keys.gossip_key),
        Span.prefix(keys.key_acks()),
    ]


def _operator_writes(keys: Keys) -> list[Span]:
    return [Span.prefix(keys.prefix(s)) for s in ("admin", "failcounts", "requests", "events")]


def permissions(keys: Keys) -> dict[Role, tuple[Perm, ...]]:
    """Every role's etcd permissions for the cluster of ``keys``, sorted (the contract of the
    module docstring; golden-tested)."""
    root = Span.prefix(keys.root_prefix)
    public = public_spans(keys)
    operator = _operator_writes(keys)
    table: dict[Role, list[Perm]] = {
        "viewer": [Perm(s, "read") for s in public],
        "operator": [Perm(s, "read") for s in public] + [Perm(s, "write") for s in operator],
        "admin": [Perm(root, "readwrite")],
        "agent": [Perm(root, "read")] + [Perm(s, "write") for s in _agent_writes(keys)],
    }
    return {role: tuple(sorted(perms)) for role, perms in table.items()}


def allowed(perms: Iterable[Perm], access: Literal["read", "write"], span: Span) -> bool:
    """Whether ``perms`` give ``access`` to every key of ``span``, as etcd decides it (the
    union of the granted ranges must cover the span)."""
    granted = sorted(p.span for p in perms if p.access in (access, "readwrite"))
    reach = span.start
    for piece in granted:
        if piece.start > reach:
            break
        reach = max(reach, piece.end)
        if reach >= span.end:
            return True
    return reach >= span.end


def table_text(keys: Keys, table: Mapping[Role, tuple[Perm, ...]]) -> str:
    """The table as people read it (``corral auth roles``; the golden file)."""
    lines = []
    for role, perms in table.items():
        lines.append(f"{role} ({etcd_role(keys.cluster, role)}):")
        lines += [f"  {p.access:9} {p.span.show(keys.root_prefix)}" for p in perms]
    return "\n".join(lines) + "\n"
