#!/usr/bin/env python3
"""Gossip key rotation in the namespace lab: how long ``corral keys rotate`` takes, and what the
cluster noticed (nothing, if it works).

Three nodes on the lan profile with the lab fence device powering nodes off (a false death
would be fenced and show), an active-passive and an active-active stand-in service. Each run
is ``corral keys rotate --json`` in the client namespace, as an operator runs it, while
``etcdctl watch`` there delivers every agent's published gossip view (``members/<node>``)
each time it changes.

Figures per run: ``total_s`` (the command, end to end, process start included), ``add_s``,
``use_s``, ``remove_s`` (from each phase's write until every live member acknowledged it),
``not_alive`` (view rows of a spec node in any state but alive, published during the rotation),
``fences``, ``assigns`` (placement changes: a failover), ``key_events`` (the rotation's own:
one per write), ``other_events`` (events of any other kind written during the rotation),
``agent_restarts`` (registrations whose agent pid changed), ``applied`` (the keyring revisions
the agents' logs say they applied, all nodes).
Printed as a table with the medians; ``--json FILE`` writes the runs and ``<figure>`` medians.

Then the returning node: n3 is powered off (it is fenced and its lease runs out), the key is
rotated without it, and n3 is powered on again: it has no key of its own, it reads the keyring
from the store at start. Figures: ``returning.rotate_s`` (the rotation with n3 down),
``returning.back_s`` (from power-on until every published view holds every node alive) and
``returning.control_not_alive`` (rows the same watch saw not alive after the power-off: the
control that shows the watch sees a death).

Usage: bench/keys.py [--quick] [--runs N] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from corral.lab import gateway
from corral.lab.lab import Lab
from corral.lab.readout import read_events

PY = sys.executable
ETCDCTL = str(Path(PY).parent / "etcdctl")
SPEC = """
cluster: keyrot
profile: lan
nodes:
  n1: {address: 198.18.0.11}
  n2: {address: 198.18.0.12}
  n3: {address: 198.18.0.13}
fencing:
  power: {agent: fence_ipmilan, params: {ip: 198.18.1.1}}
defaults:
  health: {interval: 300ms, timeout: 250ms, rise: 1, fall: 2}
resources:
  web:
    systemd: web.service
    health: {http: "http://{node.address}:8080/"}
  api:
    systemd: api.service
    mode: active-passive
    health: {tcp: "{node.address}:9000"}
"""
FIGURES = [
    "total_s",
    "add_s",
    "use_s",
    "remove_s",
    "not_alive",
    "fences",
    "assigns",
    "key_events",
    "other_events",
    "agent_restarts",
    "applied",
]
APPLIED = "gossip keyring revision"


class ViewWatch:
    """Every published gossip view (``members/<node>``), as ``etcdctl watch`` in the client
    namespace delivers each put: keeps the rows of spec nodes in any state but alive. A watch,
    not a sampler: a suspicion refuted between two samples would be missed."""

    def __init__(self, lab: Lab) -> None:
        state = lab.state()
        prefix = f"/corral/{state['cluster']}/members/"
        # n1's member alone: n3's is powered off in the returning scenario, and a watch on a
        # member that dies comes back on another only after gRPC's backoff
        argv = [ETCDCTL, "--endpoints", lab.store_endpoints()[0], "watch", "--prefix"]
        self.argv = lab.exec_argv("client", [*argv, prefix])
        self.nodes = set(state["nodes"])
        self.bad: list[tuple[float, str, Any]] = []
        self.puts = 0
        self._proc: subprocess.Popen[str] | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            if not line.startswith("{"):
                continue  # the event kind and the key
            self.puts += 1
            with contextlib.suppress(ValueError):
                for row in json.loads(line).get("view", []):
                    if row.get("name") in self.nodes and row.get("state") != "alive":
                        self.bad.append((time.time(), row["name"], row.get("state")))

    def __enter__(self) -> ViewWatch:
        self._proc = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        assert self._proc is not None
        self._proc.terminate()
        self._proc.wait(timeout=10)
        self._thread.join()


def pids(lab: Lab) -> dict[str, Any]:
    return {n: r.get("pid") for n, r in (lab.registrations() or {}).items()}


def applied(lab: Lab) -> int:
    """How many keyring revisions the agents' logs say they applied (every node)."""
    total = 0
    for rec in lab.state()["nodes"].values():
        log = Path(rec["state_dir"]) / "agent.log"
        total += log.read_text(errors="replace").count(APPLIED) if log.exists() else 0
    return total


def rotate(lab: Lab) -> dict[str, Any]:
    argv = [PY, "-m", "corral.cli.main", "keys", "rotate", "--json", "--timeout", "20"]
    argv += ["--spec", str(lab.spec_file)]
    done = subprocess.run(lab.exec_argv("client", argv), capture_output=True, text=True, timeout=90)
    try:
        out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        out = {"ok": False, "error": done.stderr.strip() or done.stdout.strip(), "phases": []}
    return out


def one_run(lab: Lab) -> dict[str, Any]:
    before, logged = pids(lab), applied(lab)
    start = time.time()
    with ViewWatch(lab) as watch:
        time.sleep(0.5)  # the watch is established
        began = time.monotonic()
        result = rotate(lab)
        total = time.monotonic() - began
        time.sleep(1.0)  # a death would take ~0.6 s to show on the lan profile
    if not result.get("ok"):
        raise RuntimeError(f"rotation failed: {result.get('error')}")
    events = [e for e in read_events(lab) if e.get("time", 0) >= start]
    kinds = [e.get("kind") for e in events]
    phases = {p["action"]: p["applied_s"] for p in result["phases"]}
    after = pids(lab)
    return {
        "total_s": round(total, 3),
        "add_s": round(phases.get("add", float("nan")), 3),
        "use_s": round(phases.get("use", float("nan")), 3),
        "remove_s": round(phases.get("remove", float("nan")), 3),
        "not_alive": len(watch.bad),
        "fences": kinds.count("fence"),
        "assigns": kinds.count("assign"),
        "key_events": kinds.count("keys"),
        "other_events": len([k for k in kinds if k not in ("fence", "assign", "keys", "audit")]),
        "agent_restarts": len([n for n in before if after.get(n) != before[n]]),
        "applied": applied(lab) - logged,
        "view_puts": watch.puts,
        "events": [
            f"{e.get('node')} {e.get('kind')}: {e.get('reason')}"
            for e in events
            if e.get("kind") not in ("keys", "audit")  # the rotation's own (and its audit)
        ],
        "bad_rows": watch.bad[:20],
    }


def all_alive(lab: Lab) -> bool:
    state = lab.state()
    prefix = f"/corral/{state['cluster']}/members/".encode()
    views = gateway.range_prefix(state["client"]["ns"], lab.store_endpoints(), prefix) or {}
    nodes = set(state["nodes"])
    return set(views) == nodes and all(
        {r.get("name") for r in v.get("view", []) if r.get("state") == "alive"} >= nodes
        for v in views.values()
    )


def returning(lab: Lab, node: str = "n3") -> dict[str, float]:
    """Rotate while ``node`` is down, then power it on (see the module docstring)."""
    with ViewWatch(lab) as control:  # the same watch sees a real death: it would see a false one
        time.sleep(0.5)
        lab.power_off(node)
        deadline = time.monotonic() + 60
        while node in (lab.registrations() or {node}):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{node} still registered 60 s after its power-off")
            time.sleep(0.2)
        time.sleep(1.0)  # the last views published
    began = time.monotonic()
    result = rotate(lab)
    rotate_s = time.monotonic() - began
    if not result.get("ok"):
        raise RuntimeError(f"rotation without {node} failed: {result.get('error')}")
    began = time.monotonic()
    lab.power_on(node)
    while not all_alive(lab):
        if time.monotonic() - began > 60:
            raise RuntimeError(f"{node} not alive in every view 60 s after power-on")
        time.sleep(0.1)
    back_s = round(time.monotonic() - began, 3)
    return {"rotate_s": round(rotate_s, 3), "back_s": back_s, "control_not_alive": len(control.bad)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one rotation")
    parser.add_argument("--runs", type=int, default=None, help="rotations (default 5)")
    parser.add_argument("--json", type=Path, help="write the runs and medians here")
    args = parser.parse_args()
    runs = args.runs or (1 if args.quick else 5)
    with tempfile.TemporaryDirectory(prefix="corral-keys-") as tmp:
        work = Path(tmp)
        (work / "spec.yaml").write_text(SPEC)
        lab = Lab.up(work / "spec.yaml", work / "lab", timeout=90.0, fence_action="off")
        try:
            time.sleep(3.0)  # every agent's first rounds: services started, views published
            results = [one_run(lab) for _ in range(runs)]
            back = returning(lab)
        finally:
            lab.down(force=True)
    medians = {f: statistics.median(r[f] for r in results) for f in FIGURES}
    table = Table("figure", *(f"run {i + 1}" for i in range(runs)), "median", box=None)
    for f in FIGURES:
        table.add_row(f, *(f"{r[f]:g}" for r in results), f"{medians[f]:g}")
    console = Console(highlight=False)
    console.print(table)
    for i, r in enumerate(results, 1):
        for line in r["events"]:
            console.print(f"run {i} event: {line}", markup=False)
    console.print(
        f"returning node: rotated without n3 in {back['rotate_s']:g}s; n3 alive in every "
        f"view {back['back_s']:g}s after its power-on; the watch saw {back['control_not_alive']} "
        "rows not alive after its power-off (the control: a real death is seen)"
    )
    if args.json:
        figures = {**medians, **{f"returning.{k}": v for k, v in back.items()}}
        args.json.write_text(json.dumps({"runs": results, **figures}, indent=2))


if __name__ == "__main__":
    main()
