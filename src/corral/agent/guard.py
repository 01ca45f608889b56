"""The lease guard: DESIGN.md rule 1 that outlives the agent.

An agent killed -9 cannot stop its exclusive services when its lease runs out, yet the controller
starts them elsewhere once that lease has expired. The guard is a small process per node, in its
own session, started by the agent. After every lease renewal (while anything exclusive runs
here, or just stopped) the agent writes
``<state_dir>/guard.json``: ``{"deadline": CLOCK_MONOTONIC seconds, "exclusive": [names],
"node": name}`` (``deadline`` = last renewal + lease_ttl - safety_margin), and keeps the running
spec in ``<state_dir>/spec.yaml``. The guard reads the file (see below); once the deadline has
passed it stops every listed exclusive service through its driver (the same code the agent
uses), logs what it did to ``<state_dir>/guard.log`` and waits for a new deadline.
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
import sys
import time
from pathlib import Path

POLL = 0.05  # the guard's precision: it acts at most this late after the deadline
IDLE = 0.5  # seconds between reads while nothing is listed (a new listing waits this long)


def write_atomic(path: Path, data: dict[str, object]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _read(path: Path) -> dict[str, object]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


async def _fence(state_dir: Path, node: str, names: list[str], log: Path) -> None:
    from corral.agent.instances import split_key
    from corral.drivers import make_driver
    from corral.drivers.base import DriverError, NodeContext
    from corral.spec import SpecError, load_spec

    try:
        spec = load_spec(state_dir / "spec.yaml")
    except SpecError as exc:
        _log(log, f"cannot read the spec to fence {names}: {exc}")
        return
    n = spec.nodes.get(node)
    if n is None:
        return
    ctx = NodeContext(node, str(n.address), dict(n.attrs), state_dir)
    for key in names:
        name, item = split_key(key)
        res = spec.resources.get(name)
        if res is None:
            continue
        try:
            await make_driver(name, res, ctx, item).stop()
            _log(log, f"lease deadline passed: stopped exclusive {key} (rule 1)")
        except DriverError as exc:
            _log(log, f"lease deadline passed: stopping {key} failed: {exc}")


def _log(path: Path, line: str) -> None:
    with open(path, "a") as handle:
        handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")


def guard(state_dir: Path) -> None:
    """Poll the guard file until told to exit (synchronous: it only waits and reads a file)."""
    path, log = state_dir / "guard.json", state_dir / "guard.log"
    fenced: object = None
    _log(log, f"guard {os.getpid()} watching {path}")
    while state_dir.is_dir():
        data: dict[str, object] = {}
        try:
            data = _read(path)
            if data.get("exit"):
                return
            fenced = _once(state_dir, data, log, fenced)
        except Exception as exc:  # the guard must outlive any surprise; it says what happened
            _log(log, f"guard error: {exc!r}")
        time.sleep(_pause(data))


def _pause(data: dict[str, object]) -> float:
    """How long to sleep before reading the file again: until the deadline it names while it
    lists services (then the agent has renewed, and the file says so, or it is time to act),
    at most ``IDLE``; ``IDLE`` when it lists none; never less than ``POLL``."""
    deadline, listed = data.get("deadline"), data.get("exclusive")
    if not listed or not isinstance(deadline, int | float) or deadline != deadline:
        return IDLE
    return min(IDLE, max(POLL, deadline - time.monotonic()))


def _once(state_dir: Path, data: dict[str, object], log: Path, fenced: object) -> object:
    """Fence if the deadline in ``data`` has passed (once per deadline); return the deadline
    last fenced for."""
    deadline = data.get("deadline")
    listed = data.get("exclusive")
    names = [str(n) for n in listed] if isinstance(listed, list) else []
    if (
        isinstance(deadline, int | float)
        and names
        and time.monotonic() > deadline
        and deadline != fenced
    ):
        asyncio.run(_fence(state_dir, str(data.get("node", "")), names, log))
        return deadline
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
