"""The lease guard: safety rule 1 that outlives the agent.

An agent killed -9 cannot stop its exclusive services when its lease runs out, yet the controller
starts them elsewhere once that lease has expired. The guard is a small process per node, in its
own session, started by the agent. While anything exclusive runs here (or just stopped) the
agent keeps two files in ``<state_dir>``:

- ``guard.json``, rewritten atomically when the listing changes: ``{"deadline": CLOCK_MONOTONIC
  seconds, "exclusive": [names], "node": name, "token": n}`` (``deadline`` = last renewal +
  lease_ttl - safety_margin; ``token`` names the writing agent's lifetime);
- ``guard.deadline``, overwritten in place after every renewal (one ``pwrite``, no rename: a
  renewal every 0.4 s costs a syscall, not four file operations): the record
  ``token, deadline, token, deadline`` (``<QdQd``). The guard believes it only when both halves
  agree (a read that overlapped a write is read again) and the token is the listing's: a later
  deadline of the same lifetime, else the listing's own deadline counts.

It also keeps the running spec in ``<state_dir>/spec.yaml``. The guard reads the files (see
below); once the deadline has passed it stops every listed exclusive service through its driver
(the same code the agent uses), logs what it did to ``<state_dir>/guard.log``, records each
instance it stopped with the CLOCK_MONOTONIC time it began (``guard.stopped``: ``{key: time}``,
rewritten atomically, the newest ``STOPPED_KEEP`` kept) and waits for a new deadline. The agent
reads that record when it finds an exclusive instance dead (:func:`stopped_at`): the
guard's word, not the agent's view of its renewals, says whose event a stop was (rule 7; a
starved agent whose renewal came back in time by its own clock may find the guard acted on
the deadline it had written before).
Between reads it sleeps until the deadline it read (at least 50 ms, at most 0.5 s): a renewal
moves the deadline on before it comes, so an idle guard wakes twice a second. A missing or
corrupt file is treated as "nothing to guard" (the agent rewrites it within one keepalive).

During a planned restart of the agent the guard also renews the node lease itself
(:mod:`corral.agent.handover`, :class:`Renewals`): the handed-over listing is then guarded by
the deadlines of the renewals the guard sent.

It runs at real-time priority, its real-time CPU bounded (:mod:`corral.priority`), raised only
after its imports and first spec parse (they would use the budget up).

Run: ``python -m corral.agent.guard --state-dir DIR``. It exits when the file holds
``{"exit": true}`` or the state directory is removed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import struct
import sys
import time
from pathlib import Path
from typing import Any

from corral.agent import handover as ho
from corral.clocks import MonotonicClock
from corral.core.clock import Clock
from corral.core.guard import POLL, Fenced, Listing, due, parse_stops, pause, with_stops
from corral.fileio import write_atomic

_RECORD = struct.Struct("<QdQd")
STOPPED = "guard.stopped"


class GuardWriter:
    """The agent's side of both files. ``update`` after every renewal and every change of
    what runs: the listing is rewritten (atomically) only when it changes, the deadline is one
    ``pwrite`` on a descriptor kept open; nothing at all while nothing exclusive is listed.
    ``token`` (random, per agent lifetime) ties the deadline records to this agent's listing.
    Raises ``OSError`` like any file write (a full disk); the agent's loop reports it."""

    def __init__(self, state_dir: Path, node: str) -> None:
        self.state_dir, self.node = state_dir, node
        self.token = int.from_bytes(os.urandom(8), "big")
        self._listed: list[str] | None = None  # None: not written yet (a previous agent's
        self._fd: int | None = None  # listing may stand: the first update replaces it)

    def update(self, deadline: float, exclusive: list[str]) -> None:
        if not exclusive and self._listed == []:
            return  # idle: the guard already knows that nothing is listed
        if exclusive != self._listed:
            listing = {
                "node": self.node,
                "deadline": deadline,
                "exclusive": exclusive,
                "token": self.token,
            }
            write_atomic(self.state_dir / "guard.json", json.dumps(listing))
            self._listed = list(exclusive)
        if self._fd is None:
            self._fd = os.open(self.state_dir / "guard.deadline", os.O_RDWR | os.O_CREAT, 0o600)
        os.pwrite(self._fd, _RECORD.pack(self.token, deadline, self.token, deadline), 0)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def read_deadline(path: Path, token: object, tries: int = 3) -> float | None:
    """The deadline in ``guard.deadline`` if it is whole and written under ``token``."""
    for _ in range(tries):
        try:
            raw = path.read_bytes()
        except OSError:
            return None
        if len(raw) < _RECORD.size:
            return None
        t1, d1, t2, d2 = _RECORD.unpack_from(raw)
        if t1 == t2 and d1 == d2:  # NaN never equals itself: refused too
            return d1 if t1 == token else None
        time.sleep(0.001)  # it overlapped a write: the next read sees it whole
    return None


def read_listing(path: Path) -> Listing:
    """``guard.json``, its deadline moved on by ``guard.deadline`` (same token, later)."""
    try:
        listing = Listing.parse(path.read_text())
    except OSError:
        return Listing()
    return listing.renewed(read_deadline(path.with_name("guard.deadline"), listing.token))


_SPEC: tuple[float, Any] | None = None  # (mtime, Spec) of the last spec.yaml read


def _spec(state_dir: Path) -> Any:
    """The running spec, parsed once per change of ``spec.yaml`` (not at the deadline)."""
    global _SPEC
    from corral.spec import load_spec

    path = state_dir / "spec.yaml"
    mtime = path.stat().st_mtime
    if _SPEC is None or _SPEC[0] != mtime:
        _SPEC = (mtime, load_spec(path))
    return _SPEC[1]


def _prepare(state_dir: Path, log: Path) -> None:
    """Pay the imports and the spec parse at start, not in the fence's 0.5 s margin."""
    import importlib

    for module in ("corral.drivers", "corral.drivers.vip"):  # pyroute2: the slowest import
        importlib.import_module(module)
    try:
        _spec(state_dir)
    except Exception as exc:  # no spec yet, or a bad one: read again at the deadline
        _log(log, f"spec not read ahead: {exc!r}")


def _stops(state_dir: Path) -> dict[str, float]:
    try:
        return parse_stops((state_dir / STOPPED).read_text())
    except OSError:
        return {}


def stopped_at(state_dir: Path, key: str) -> float | None:
    """When the guard began stopping instance ``key`` the last time (CLOCK_MONOTONIC), from
    ``guard.stopped``; None when it never did (or the record cannot be read)."""
    return _stops(state_dir).get(key)


async def _fence(state_dir: Path, node: str, names: list[str], log: Path, at: float) -> None:
    """Stop every listed instance through its driver, all at once; ``at``: when the guard
    began (recorded before any stop, so an agent that finds one gone finds the record)."""
    from corral.agent.instances import split_key
    from corral.drivers import make_driver
    from corral.drivers.base import DriverError, NodeContext
    from corral.spec import SpecError

    try:
        spec = _spec(state_dir)
    except (OSError, SpecError) as exc:
        _log(log, f"cannot read the spec to fence {names}: {exc}")
        return
    n = spec.nodes.get(node)
    if n is None:
        return
    ctx = NodeContext(node, str(n.address), dict(n.attrs), state_dir)
    try:
        write_atomic(state_dir / STOPPED, with_stops(_stops(state_dir), names, at))
    except OSError as exc:  # a full disk must not keep the guard from stopping (rule 1)
        _log(log, f"cannot record the stops of {names}: {exc}")

    async def stop(key: str) -> None:
        name, item = split_key(key)
        res = spec.resources.get(name)
        if res is None:
            return
        try:
            await make_driver(name, res, ctx, item, spec=spec).stop()
            _log(log, f"lease deadline passed: stopped exclusive {key} (rule 1)")
        except DriverError as exc:
            _log(log, f"lease deadline passed: stopping {key} failed: {exc}")

    await asyncio.gather(*(stop(key) for key in names))


def _log(path: Path, line: str) -> None:
    with open(path, "a") as handle:
        handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")


class Renewals:
    """The guard's side of a handover (:mod:`corral.agent.handover`): while a valid
    ``handover.json`` names this node, renew its lease every ``interval`` until ``until``, and
    guard the listing of the handed-over agent lifetime (its token) by the deadlines of the
    renewals etcd accepted. A lease etcd no longer knows ends the handover."""

    def __init__(self, state_dir: Path, log: Path) -> None:
        self.state_dir, self.log = state_dir, log
        self.sent = -math.inf  # when the last renewal was sent
        self.deadline = -math.inf  # rule 1's deadline of the last accepted one
        self.active: ho.Handover | None = None
        self.token: int | None = None  # the handed-over agent lifetime
        self.ended: ho.Handover | None = None  # a handover whose lease is gone
        self.error: str | None = None  # the last failure logged (one line per new one)

    def step(self, listing: Listing, now: float) -> Listing:
        """Renew if due; the listing with the guard's own deadline applied if it is the
        handed-over one."""
        handover = ho.read(self.state_dir)
        if handover is None or handover == self.ended or now >= handover.until:
            if self.active is not None:
                _log(self.log, f"handover of lease {self.active.lease:x} over: stopped renewing")
            self.active = None
        else:
            if handover != self.active:
                self.active, self.sent, self.deadline = handover, -math.inf, -math.inf
                self.token = handover.token
                _log(self.log, f"renewing lease {handover.lease:x} until the next agent takes it")
            if now >= self.sent + handover.interval:
                self._renew(handover, now)
        # the deadline of an accepted renewal stays true after the handover ends: the listing
        # of the handed-over lifetime is guarded by it until the next agent lists its own
        if self.token is None or listing.token != self.token or self.deadline == -math.inf:
            return listing
        return listing.renewed(self.deadline)

    def _renew(self, handover: ho.Handover, sent: float) -> None:
        self.sent = sent
        try:
            ttl = ho.renew(handover, timeout=handover.interval)
        except Exception as exc:  # any failure: the deadline runs on, the next renewal retries
            text = f"renewing lease {handover.lease:x} failed: {exc!r}"
            if text != self.error:
                self.error = text
                _log(self.log, text)
            return
        self.error = None
        if ttl <= 0:
            _log(self.log, f"lease {handover.lease:x} is gone: handover ended")
            self.ended, self.active = handover, None
            return
        self.deadline = handover.deadline(sent)

    def pause(self, now: float) -> float:
        """Seconds until the next renewal is due (inf when not renewing)."""
        if self.active is None:
            return math.inf
        return max(0.0, self.sent + self.active.interval - now)


def guard(state_dir: Path, clock: Clock | None = None, *, realtime: bool = False) -> None:
    """Poll the guard file until told to exit (synchronous: it only waits and reads a file).
    ``clock``: CLOCK_MONOTONIC (the agent writes its deadlines on it). ``realtime``: raise the
    guard's priority (:func:`corral.priority.raise_guard`) once it is prepared."""
    clock = clock or MonotonicClock()
    path, log = state_dir / "guard.json", state_dir / "guard.log"
    fenced: Fenced = None
    _log(log, f"guard {os.getpid()} watching {path}")
    _prepare(state_dir, log)
    if realtime:
        from corral.priority import raise_guard

        for problem in raise_guard(lambda line: _log(log, line)):
            _log(log, f"priority not raised: {problem}")
    _log(log, f"guard {os.getpid()} ready")
    renewals = Renewals(state_dir, log)
    while state_dir.is_dir():
        listing = Listing()
        try:
            listing = renewals.step(read_listing(path), clock.now())
            if listing.exit:
                return
            fenced = fence_if_due(state_dir, listing, log, fenced, clock.now())
        except Exception as exc:  # the guard must outlive any surprise; it says what happened
            _log(log, f"guard error: {exc!r}")
        now = clock.now()
        time.sleep(min(pause(listing, fenced, now), max(POLL, renewals.pause(now))))


def fence_if_due(
    state_dir: Path, listing: Listing, log: Path, fenced: Fenced, now: float
) -> Fenced:
    """Fence if :func:`~corral.core.guard.due`; return what was last fenced for."""
    if due(listing, fenced, now):
        asyncio.run(_fence(state_dir, listing.node, list(listing.exclusive), log, now))
        return listing.mark
    return fenced


def main() -> None:
    parser = argparse.ArgumentParser(description="corral lease guard (started by the agent)")
    parser.add_argument("--state-dir", required=True, type=Path)
    args = parser.parse_args()
    # atomic: the agent (and its tests) read this file while it is rewritten
    write_atomic(args.state_dir / "guard.pid", str(os.getpid()))
    guard(args.state_dir, realtime=True)


def guard_alive(pid: int) -> bool:
    """Whether ``pid`` is a running lease guard (a zombie has no command line)."""
    try:
        return b"corral.agent.guard" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def spawn(state_dir: Path) -> int:
    """Start a guard for ``state_dir`` unless one runs; return its pid."""
    pidfile = state_dir / "guard.pid"
    try:
        pid = int(pidfile.read_text())
        if guard_alive(pid):
            return pid
    except (OSError, ValueError):
        pass
    import subprocess

    proc = subprocess.Popen(
        [sys.executable, "-m", "corral.agent.guard", "--state-dir", str(state_dir)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    write_atomic(pidfile, str(proc.pid))
    return proc.pid


if __name__ == "__main__":
    main()
