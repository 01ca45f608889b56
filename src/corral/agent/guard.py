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
(the same code the agent uses), logs what it did to ``<state_dir>/guard.log`` and waits for a
new deadline.
Between reads it sleeps until the deadline it read (at least 50 ms, at most 0.5 s): a renewal
moves the deadline on before it comes, so an idle guard wakes twice a second. A missing or
corrupt file is treated as "nothing to guard" (the agent rewrites it within one keepalive).

Run: ``python -m corral.agent.guard --state-dir DIR``. It exits when the file holds
``{"exit": true}`` or the state directory is removed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import struct
import sys
import time
from pathlib import Path
from typing import Any

from corral.clocks import MonotonicClock
from corral.core.clock import Clock
from corral.core.guard import Fenced, Listing, due, pause
from corral.fileio import write_atomic

_RECORD = struct.Struct("<QdQd")


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


async def _fence(state_dir: Path, node: str, names: list[str], log: Path) -> None:
    """Stop every listed instance through its driver, all at once."""
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

    async def stop(key: str) -> None:
        name, item = split_key(key)
        res = spec.resources.get(name)
        if res is None:
            return
        try:
            await make_driver(name, res, ctx, item).stop()
            _log(log, f"lease deadline passed: stopped exclusive {key} (rule 1)")
        except DriverError as exc:
            _log(log, f"lease deadline passed: stopping {key} failed: {exc}")

    await asyncio.gather(*(stop(key) for key in names))


def _log(path: Path, line: str) -> None:
    with open(path, "a") as handle:
        handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")


def guard(state_dir: Path, clock: Clock | None = None) -> None:
    """Poll the guard file until told to exit (synchronous: it only waits and reads a file).
    ``clock``: CLOCK_MONOTONIC (the agent writes its deadlines on it)."""
    clock = clock or MonotonicClock()
    path, log = state_dir / "guard.json", state_dir / "guard.log"
    fenced: Fenced = None
    _log(log, f"guard {os.getpid()} watching {path}")
    _prepare(state_dir, log)
    while state_dir.is_dir():
        listing = Listing()
        try:
            listing = read_listing(path)
            if listing.exit:
                return
            fenced = fence_if_due(state_dir, listing, log, fenced, clock.now())
        except Exception as exc:  # the guard must outlive any surprise; it says what happened
            _log(log, f"guard error: {exc!r}")
        time.sleep(pause(listing, fenced, clock.now()))


def fence_if_due(
    state_dir: Path, listing: Listing, log: Path, fenced: Fenced, now: float
) -> Fenced:
    """Fence if :func:`~corral.core.guard.due`; return what was last fenced for."""
    if due(listing, fenced, now):
        asyncio.run(_fence(state_dir, listing.node, list(listing.exclusive), log))
        return listing.mark
    return fenced


def main() -> None:
    parser = argparse.ArgumentParser(description="corral lease guard (started by the agent)")
    parser.add_argument("--state-dir", required=True, type=Path)
    args = parser.parse_args()
    (args.state_dir / "guard.pid").write_text(str(os.getpid()))
    guard(args.state_dir)


def spawn(state_dir: Path) -> int:
    """Start a guard for ``state_dir`` unless one runs; return its pid."""
    pidfile = state_dir / "guard.pid"
    try:
        pid = int(pidfile.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if b"corral.agent.guard" in cmdline:
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
    pidfile.write_text(str(proc.pid))
    return proc.pid


if __name__ == "__main__":
    main()
