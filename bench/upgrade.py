#!/usr/bin/env python3
"""Restarting and upgrading corral under client load: services must not notice.

The failover bench's lab (three nodes, a VIP per node, HAProxy and a stand-in API under
corral, lan profile), a client sending about 200 requests/s spread over the VIPs. Each agent
in turn is stopped and started again, waiting for the node to settle before the next.
Scenarios:

- ``restart``: SIGTERM (as ``systemctl restart corral``): the lease goes to the guard and the
  next agent takes it back (``corral.agent.handover``);
- ``crash-restart`` (baseline, what a restart was before the handover): SIGKILL, then started
  again: nobody renews the lease meanwhile;
- ``upgrade`` (needs ``--from REV``, the commit or tag of the release you run): the lab starts
  on that release (its wheel, built here, in a venv under /var/tmp with its dependencies from
  PyPI), every agent is restarted (SIGTERM) into this tree's code, then restarted once more
  (this release into itself). A release without the handover drops the lease in its own
  stop: the first pass shows what that costs, the second what upgrades from this release on
  will cost.

Figures per scenario (medians over runs): ``requests``, ``failed``, ``service_restarts``
(services whose pid changed), ``vip_moves`` (VIPs not on their home node at the end),
``away_s`` (median seconds from the signal to the new agent's start). Printed as a table;
``--json FILE`` writes ``<scenario>.<figure>``; a scenario that fails is reported and the
others go on.

Usage: bench/upgrade.py [--quick] [--runs N] [--scenarios restart,crash-restart[,upgrade]]
       [--from REV] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))

from failover import PY, Client, CorralTarget

REPO = Path(__file__).resolve().parent.parent
RESOURCES = ("api", "haproxy")
SETTLE = 3.0  # seconds after a node's new agent took over before the next node's restart
LOAD = ["--rate", "200", "--cycle", "--timeout", "1.0"]
CLIENT_S = 30.0  # seconds of client load per pass: three restarts and their settling
FIGURES = ["requests", "failed", "service_restarts", "vip_moves", "away_s"]


def previous_release(rev: str, work: Path) -> str:
    """A venv with the wheel of ``rev`` (its dependencies from PyPI); returns its python."""
    venv = Path("/var/tmp") / f"corral-release-{_sha(rev)}"
    python = venv / "bin" / "python"
    if python.exists():
        return str(python)
    src = work / "release-src"
    src.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", rev], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(src)], check=True)
    return str(python)


def _sha(rev: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", rev],
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


@contextlib.contextmanager
def started_with(python: str) -> Iterator[None]:
    """Agents started meanwhile run ``python``: another release's must not import this tree
    (the ``PYTHONPATH`` of a bench run from a checkout), this tree's keeps it."""
    saved = os.environ.get("PYTHONPATH")
    if python != PY:
        os.environ.pop("PYTHONPATH", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["PYTHONPATH"] = saved


def service_pids(t: CorralTarget) -> dict[tuple[str, str], int | None]:
    return {(n, r): t.lab.service_pid(n, r) for n in t.lab.state()["nodes"] for r in RESOURCES}


def restart_each(t: CorralTarget, sig: signal.Signals, python: str) -> list[float]:
    """Stop every agent with ``sig`` in turn and start it on ``python``; the seconds each
    was away."""
    away = []
    for node in sorted(t.lab.state()["nodes"]):
        start = time.monotonic()
        t.lab.kill_agent(node, sig, wait=10.0)
        t.lab.python = python
        with started_with(python):
            t.lab.power_on(node)
        away.append(time.monotonic() - start)
        state_dir = Path(t.lab.node(node)["state_dir"])
        deadline = time.monotonic() + 20
        while (state_dir / "handover.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)  # the new agent took the lease back (or gave it up)
        time.sleep(SETTLE)
    return away


def one_run(scenario: str, work: Path, old_python: str | None) -> dict[str, Any]:
    with started_with(old_python or PY):
        t = CorralTarget(work, python=old_python or PY)
    try:
        t.wait_settled(60.0)
        before = service_pids(t)
        passes: list[tuple[signal.Signals, str]] = {
            "restart": [(signal.SIGTERM, PY)],
            "crash-restart": [(signal.SIGKILL, PY)],
            "upgrade": [(signal.SIGTERM, PY), (signal.SIGTERM, PY)],
        }[scenario]
        out: dict[str, Any] = {}
        for i, (sig, python) in enumerate(passes):
            client = Client(t, work, [t.url(v) for v in t.vips], CLIENT_S, LOAD)
            time.sleep(1.0)
            away = restart_each(t, sig, python)
            records, _ = client.finish()
            prefix = "" if i == 0 else "then_"
            out[f"{prefix}requests"] = len(records)
            out[f"{prefix}failed"] = sum(1 for r in records if not r.ok)
            out[f"{prefix}away_s"] = statistics.median(away)
        after = service_pids(t)
        out["service_restarts"] = sum(1 for k, pid in before.items() if after.get(k) != pid)
        out["vip_moves"] = sum(1 for v in t.vips if t.holders(v) != {t.home(v)})
        return out
    finally:
        with contextlib.suppress(Exception):
            t.down()


def run_scenario(
    scenario: str, runs: int, rev: str | None, console: Console
) -> list[dict[str, Any]]:
    results = []
    for i in range(runs):
        with tempfile.TemporaryDirectory(prefix=f"corral-upgrade-{scenario}-") as tmp:
            work = Path(tmp)
            try:
                old = previous_release(rev, work) if scenario == "upgrade" and rev else None
                result = one_run(scenario, work, old)
            except Exception as exc:  # a failed run is reported; the others go on
                console.print(f"[red]{scenario} run {i + 1} failed: {exc!r}[/red]")
                continue
            console.print(f"{scenario} run {i + 1}: {result}")
            results.append(result)
    return results


def median_of(results: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in results if r.get(key) is not None]
    return statistics.median(values) if values else None


def report(all_results: dict[str, list[dict[str, Any]]], console: Console) -> dict[str, Any]:
    table = Table(title="corral restarted under load (medians over runs)")
    table.add_column("scenario")
    keys = [*FIGURES, "then_requests", "then_failed"]
    for key in keys:
        table.add_column(key, justify="right")
    figures: dict[str, Any] = {}
    for scenario, results in all_results.items():
        row = []
        for key in keys:
            value = median_of(results, key)
            figures[f"{scenario}.{key}"] = value
            row.append("-" if value is None else f"{value:g}")
        figures[f"{scenario}.runs"] = len(results)
        table.add_row(scenario, *row)
    base, new = figures.get("crash-restart.failed"), figures.get("restart.failed")
    if base is not None and new is not None:
        figures["restart.failed_vs_crash_restart"] = new / base if base else None
    console.print(table)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int)
    parser.add_argument("--scenarios", default="restart,crash-restart")
    parser.add_argument("--from", dest="rev", help="the release to upgrade from (upgrade)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/upgrade.py builds network namespaces: run it as root")
    if "upgrade" in args.scenarios.split(",") and not args.rev:
        raise SystemExit("the upgrade scenario needs --from REV (the release you run)")
    runs = args.runs or (1 if args.quick else 3)
    console = Console()
    all_results = {s: run_scenario(s, runs, args.rev, console) for s in args.scenarios.split(",")}
    figures = report(all_results, console)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, sort_keys=True))


if __name__ == "__main__":
    from failover import run_main

    run_main(main)
