"""Desired server states vs what HAProxy reports -> runtime commands, or "reload needed".

Pure: no I/O. :func:`plan` is the whole contract:

- ``desired`` maps backend -> server -> ``ready`` | ``drain`` | ``maint`` and is *complete*
  for the backends it names: a running server of such a backend that ``desired`` does not name
  is to go. ``observed`` maps ``(backend, server)`` -> the state HAProxy reports (the
  ``admin`` of :class:`corral.lb.runtime.ServerState`).
- A server in both with another state: ``set server b/s state <desired>``. A server of a
  backend in ``cut`` put in ``maint`` from another state also gets ``shutdown sessions server
  b/s``: for a balanced galera service (one writer, rule 6) the writer record moved, and a
  session opened to the old writer must not keep writing there beside the new one (HAProxy
  keeps established sessions of a server in maintenance); its client reconnects through
  HAProxy to the new writer at once, instead of waiting on a dead node's silent connection.
- A desired server HAProxy does not have: with its :class:`~corral.lb.config.Server` in
  ``known`` (and the backend's check there), ``add server`` + ``enable health`` + ``set server
  state``; without it a reload is needed (the rendered configuration has it). A dynamic
  server is added in maint, so its last command always sets its desired state.
- A running server not desired: with ``allow_delete``, ``set server state maint`` +
  ``shutdown sessions server`` + ``del server``; else a reload is needed.
- A backend HAProxy runs that ``desired`` does not name, or a desired backend HAProxy does not
  run at all: a reload is needed (frontends and backends cannot be made at run time).
- The commands that *can* run are planned even when a reload is needed too, so a server that
  must leave rotation leaves it now, not after the reload.
- Order: additions first, then state changes, then deletions (capacity comes before it goes);
  within each, sorted by backend then server. Same input, same plan.
- Unknown states and names that would smuggle a command separator raise ValueError.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from corral.lb.config import Backend, hostport, server_params

STATES = ("ready", "drain", "maint")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]+$")


@dataclass(frozen=True)
class SyncPlan:
    """Runtime commands to send in order, and whether (and why) a reload is needed too."""

    commands: tuple[str, ...] = ()
    reload_needed: bool = False
    reasons: tuple[str, ...] = ()

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)

    @property
    def empty(self) -> bool:
        return not self.commands and not self.reload_needed


def _name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise ValueError(f"{name!r} is not an HAProxy name")
    return name


def plan(
    desired: Mapping[str, Mapping[str, str]],
    observed: Mapping[tuple[str, str], str],
    *,
    known: Mapping[str, Backend] | None = None,
    allow_delete: bool = True,
    cut: Collection[str] = (),
) -> SyncPlan:
    """The runtime commands that take ``observed`` to ``desired`` (see the module contract)."""
    out = _Commands()
    running: dict[str, dict[str, str]] = {}
    for (backend, server), state in observed.items():
        running.setdefault(backend, {})[server] = state
    for backend in sorted(set(running) - set(desired)):
        out.reasons.append(f"backend {backend} runs but is not desired")
    for backend in sorted(desired):
        wanted = desired[backend]
        _check(backend, wanted)
        have = running.get(backend)
        if have is None:
            if wanted:
                out.reasons.append(f"backend {backend} is not in the running configuration")
            continue
        for server in sorted(wanted):
            out.bring(backend, server, wanted[server], have.get(server), known)
            if (
                backend in cut
                and wanted[server] == "maint"
                and have.get(server) not in (None, "maint")
            ):
                out.changes.append(f"shutdown sessions server {backend}/{server}")
        for server in sorted(set(have) - set(wanted)):
            out.remove(f"{backend}/{_name(server)}", have[server], allow_delete)
    return SyncPlan(
        tuple(out.adds + out.changes + out.deletes), bool(out.reasons), tuple(out.reasons)
    )


def _check(backend: str, wanted: Mapping[str, str]) -> None:
    """ValueError for an unknown state or a name HAProxy cannot take."""
    for server, state in wanted.items():
        if state not in STATES:
            raise ValueError(f"{backend}/{server}: unknown state {state!r}")
        _name(server)
    _name(backend)


class _Commands:
    """The commands of one plan, in their three groups, and why it is incomplete."""

    def __init__(self) -> None:
        self.adds: list[str] = []
        self.changes: list[str] = []
        self.deletes: list[str] = []
        self.reasons: list[str] = []

    def bring(
        self,
        backend: str,
        server: str,
        want: str,
        have: str | None,
        known: Mapping[str, Backend] | None,
    ) -> None:
        """Take one wanted server from ``have`` (None: not running) to ``want``."""
        ref = f"{backend}/{server}"
        if have is not None:
            if have != want:
                self.changes.append(f"set server {ref} state {want}")
            return
        spec = _known_server(known, backend, server)
        if spec is None:
            self.reasons.append(f"server {ref} is not running and its address is unknown")
            return
        b, address = spec
        self.adds += [f"add server {ref} {address} {server_params(b.check)}"]
        self.adds += [f"enable health {ref}", f"set server {ref} state {want}"]

    def remove(self, ref: str, have: str, allow_delete: bool) -> None:
        """Take out a server that runs but is not wanted (drained first, unless in maint)."""
        if not allow_delete:
            self.reasons.append(f"server {ref} runs but is not desired")
            return
        if have != "maint":
            self.deletes.append(f"set server {ref} state maint")
        self.deletes += [f"shutdown sessions server {ref}", f"del server {ref}"]


def _known_server(
    known: Mapping[str, Backend] | None, backend: str, server: str
) -> tuple[Backend, str] | None:
    if known is None or backend not in known:
        return None
    b = known[backend]
    for s in b.servers:
        if s.name == server:
            return b, hostport(s.address, s.port)
    return None
