"""Membership benchmark: SWIM + Lifeguard against plain SWIM, on the simulator and on loopback.

    .venv/bin/python bench/membership.py --quick --json membership.json

Simulator part (virtual time, lan profile, seeded): for each cluster size, crash detection
(first detection, first dead, all know; median and p99), load per member (steady state and
during the crash runs), and false positives per node-hour at 1/5/10 % loss and with one slow
member; every figure with Lifeguard on and off, side by side. Real part: ``--real-nodes``
standalone runners (``python -m corral.net.node``) on 127.0.0.1, killed with SIGKILL one at a
time; detection is read from their event logs (``time.monotonic()`` stamps, one clock for all
processes on a host), CPU from ``/proc/<pid>/stat``. Definitions: ``corral.sim.measure``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from corral.core.membership import MembershipConfig, profile
from corral.net import generate_key
from corral.sim import Simulator
from corral.sim.measure import (
    converged_cluster,
    measure_detection,
    measure_false_positives,
    measure_load,
    percentile,
)

console = Console(width=170)
MODES = (("lifeguard", True), ("plain", False))
SLOW_DELAY = (0.2, 0.6)


def stat(values: list[float]) -> dict[str, float]:
    return {"median": percentile(values, 50), "p99": percentile(values, 99)}


def fmt(x: float, digits: int = 3) -> str:
    return (
        "n/a"
        if isinstance(x, float) and math.isnan(x)
        else ("∞" if x == math.inf else f"{x:.{digits}f}")
    )


def mp(d: dict[str, float], digits: int = 3) -> str:
    """``median / p99`` of a :func:`stat` result."""
    return f"{fmt(d['median'], digits)} / {fmt(d['p99'], digits)}"


def ratio(a: float, b: float) -> str:
    if b == 0 or math.isnan(a) or math.isnan(b) or math.isinf(a) or math.isinf(b):
        return "-"
    return f"{a / b:.2f}x"


# ---------------------------------------------------------------- simulator


def sim_sizes(args: argparse.Namespace) -> dict[str, Any]:
    rows = []
    for n in args.sizes:
        runs = args.runs_small if n <= 100 else args.runs_large
        for mode, lifeguard in MODES:
            t0 = time.perf_counter()
            config = profile("lan", lifeguard=lifeguard)

            def make(i: int, n: int = n, config: MembershipConfig = config) -> Simulator:
                sim = converged_cluster(n, config, args.seed * 1000 + i)
                sim.run_for(1.0)  # past the first protocol periods
                return sim

            load = measure_load(make(0), args.load_seconds)
            det = measure_detection(make, runs, args.seed)
            rows.append(
                {
                    "n": n,
                    "mode": mode,
                    "runs": runs,
                    "first_detection_s": stat(det.first_suspect),
                    "first_dead_s": stat(det.first_dead),
                    "all_know_s": stat(det.all_dead),
                    "dissemination_periods": stat(det.dissemination_periods),
                    "steady_packets_per_node_s": load.packets_per_node_s,
                    "steady_bytes_per_node_s": load.bytes_per_node_s,
                    "crash_packets_per_node_s": det.packets_per_node_s,
                    "crash_bytes_per_node_s": det.bytes_per_node_s,
                    "wall_s": time.perf_counter() - t0,
                }
            )
            console.log(f"sim n={n} {mode}: {rows[-1]['wall_s']:.1f}s")
    return {"detection": rows}


def sim_false_positives(args: argparse.Namespace) -> list[dict[str, Any]]:
    conditions: list[tuple[str, float, tuple[float, float] | None]] = [
        ("loss 1%", 0.01, None),
        ("loss 5%", 0.05, None),
        ("loss 10%", 0.10, None),
        (f"slow member ({SLOW_DELAY[0]:.1f}-{SLOW_DELAY[1]:.1f}s)", 0.0, SLOW_DELAY),
    ]
    rows = []
    for name, loss, slow in conditions:
        for mode, lifeguard in MODES:
            cfg = profile("lan", lifeguard=lifeguard)
            fp = measure_false_positives(args.fp_nodes, cfg, args.fp_seconds, args.seed, loss, slow)
            rows.append(
                {
                    "condition": name,
                    "mode": mode,
                    "n": fp.members,
                    "seconds": fp.seconds,
                    "node_hours": fp.node_hours,
                    "false_dead": fp.false_dead,
                    "per_node_hour": fp.per_node_hour,
                    "slow_member_declared_dead": fp.slow_declared_dead,
                    "suspicions": fp.suspicions,
                }
            )
            console.log(f"fp {name} {mode}: {fp.false_dead} false deaths")
    return rows


# ---------------------------------------------------------------- real processes


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_events(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return []


def wait_until(cond: Callable[[], bool], within: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


def runner_address(workdir: Path, i: int) -> str | None:
    try:
        return str(json.loads((workdir / f"r{i}.json").read_text())["address"])
    except (OSError, ValueError, KeyError):
        return None


@contextmanager
def runners(n: int, workdir: Path, profile_name: str) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start ``n`` runners on OS-chosen ports (no race with other users of the host for a port
    picked in advance); r0 first, then the rest seeded by r0. Kills all of them on exit."""
    key = workdir / "key"
    key.write_text(generate_key() + "\n")
    procs: list[subprocess.Popen[bytes]] = []

    def start(i: int, seed: str | None) -> None:
        cmd = [
            sys.executable, "-m", "corral.net.node", "--name", f"r{i}",
            "--bind", "127.0.0.1:0", "--key-file", str(key),
            "--profile", profile_name, "--events-file", str(workdir / f"r{i}.jsonl"),
            "--status-file", str(workdir / f"r{i}.json"), "--status-every", "5",
            "--run-for", "600",
        ]  # fmt: skip
        if seed:
            cmd += ["--seed", seed]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    try:
        start(0, None)
        if not wait_until(lambda: runner_address(workdir, 0) is not None, 30, 0.05):
            raise RuntimeError("the first runner did not start")
        seed = runner_address(workdir, 0)
        for i in range(1, n):
            start(i, seed)
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
        for p in procs:
            p.wait(timeout=30)


def missing_views(workdir: Path, live: list[int]) -> dict[str, list[str]]:
    """For each live runner, the other live runners it has not logged as ``alive`` yet."""
    out = {}
    for i in live:
        seen = {e["member"] for e in read_events(workdir / f"r{i}.jsonl") if e["state"] == "alive"}
        missing = sorted({f"r{j}" for j in live if j != i} - seen)
        if missing:
            out[f"r{i}"] = missing
    return out


def real_cluster(args: argparse.Namespace) -> dict[str, Any]:
    n = args.real_nodes
    out: dict[str, Any] = {"nodes": n, "profile": "lan"}
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as tmp:
        workdir = Path(tmp)
        with runners(n, workdir, "lan") as procs:
            live = list(range(n))
            t0 = time.monotonic()
            if not wait_until(lambda: not missing_views(workdir, live), 120, 0.5):
                exited = [f"r{i}" for i, p in enumerate(procs) if p.poll() is not None]
                out["error"] = f"no convergence in 120 s; exited: {exited}"
                out["missing"] = missing_views(workdir, live)
                return out
            out["converge_s"] = time.monotonic() - t0
            time.sleep(2.0)  # past the join burst
            before = [cpu_seconds(p.pid) for p in procs]
            t0 = time.monotonic()
            time.sleep(args.cpu_seconds)
            elapsed = time.monotonic() - t0
            cpu = [
                (cpu_seconds(p.pid) - b) / elapsed * 100 for p, b in zip(procs, before, strict=True)
            ]
            out["cpu_percent_per_node"] = {"median": percentile(cpu, 50), "max": max(cpu)}
            out.update(real_kills(args, workdir, procs, live))
    return out


def verdicts(workdir: Path, live: list[int], name: str, since: float) -> list[float]:
    """For each live runner that logged ``name`` dead after ``since``: when it first did."""
    times = []
    for i in live:
        ts = [
            e["t"]
            for e in read_events(workdir / f"r{i}.jsonl")
            if e["member"] == name and e["state"] == "dead" and e["t"] > since
        ]
        if ts:
            times.append(min(ts))
    return times


def real_kills(
    args: argparse.Namespace, workdir: Path, procs: list[subprocess.Popen[bytes]], live: list[int]
) -> dict[str, Any]:
    first: list[float] = []
    everyone: list[float] = []
    for _ in range(args.real_kills):
        victim = live.pop()  # never r0, the seed of most
        name, t_kill = f"r{victim}", time.monotonic()
        os.kill(procs[victim].pid, signal.SIGKILL)
        wait_until(lambda: len(verdicts(workdir, live, name, t_kill)) == len(live), 15, 0.2)  # noqa: B023
        times = verdicts(workdir, live, name, t_kill)
        first.append(min(times) - t_kill if times else math.inf)
        everyone.append(max(times) - t_kill if len(times) == len(live) else math.inf)
        console.log(f"real kill {name}: first {fmt(first[-1])}s, all {fmt(everyone[-1])}s")
        time.sleep(1.0)
    return {"kills": len(first), "first_dead_s": stat(first), "all_know_s": stat(everyone)}


# ---------------------------------------------------------------- report


def pair_rows(
    rows: list[dict[str, Any]], key: str
) -> Iterator[tuple[Any, dict[str, Any], dict[str, Any]]]:
    by = {(r[key], r["mode"]): r for r in rows}
    for k in dict.fromkeys(r[key] for r in rows):
        yield k, by[(k, "lifeguard")], by[(k, "plain")]


def detection_table(rows: list[dict[str, Any]]) -> Table:
    t = Table(title="Crash detection, simulator, lan profile (seconds; median / p99)")
    for col in ("N", "runs", "first detection", "first dead", "all know", "spread (periods)"):
        t.add_column(col, justify="right")
    t.add_column("plain: first det.", justify="right")
    t.add_column("plain: all know", justify="right")
    t.add_column("all know LG/plain", justify="right")
    for n, lg, pl in pair_rows(rows, "n"):
        t.add_row(
            str(n),
            str(lg["runs"]),
            mp(lg["first_detection_s"]),
            mp(lg["first_dead_s"]),
            mp(lg["all_know_s"]),
            mp(lg["dissemination_periods"], 1),
            mp(pl["first_detection_s"]),
            mp(pl["all_know_s"]),
            ratio(lg["all_know_s"]["median"], pl["all_know_s"]["median"]),
        )
    return t


def load_table(rows: list[dict[str, Any]]) -> Table:
    t = Table(title="Load per member (datagrams/s and bytes/s sent)")
    for col in ("N", "steady pkt/s", "steady B/s", "during crashes pkt/s", "during crashes B/s",
                "plain steady B/s", "plain crashes B/s", "crash B/s LG/plain"):  # fmt: skip
        t.add_column(col, justify="right")
    for n, lg, pl in pair_rows(rows, "n"):
        t.add_row(
            str(n),
            fmt(lg["steady_packets_per_node_s"], 1),
            fmt(lg["steady_bytes_per_node_s"], 0),
            fmt(lg["crash_packets_per_node_s"], 1),
            fmt(lg["crash_bytes_per_node_s"], 0),
            fmt(pl["steady_bytes_per_node_s"], 0),
            fmt(pl["crash_bytes_per_node_s"], 0),
            ratio(lg["crash_bytes_per_node_s"], pl["crash_bytes_per_node_s"]),
        )
    return t


def fp_table(rows: list[dict[str, Any]]) -> Table:
    n, secs = rows[0]["n"], rows[0]["seconds"]
    t = Table(title=f"False positives, {n} members x {secs:.0f} s simulated (per node-hour)")
    for col in ("condition", "Lifeguard", "plain SWIM", "plain/LG", "LG count", "plain count",
                "slow member declared dead LG / plain"):  # fmt: skip
        t.add_column(col, justify="right")
    for cond, lg, pl in pair_rows(rows, "condition"):
        better = (
            "∞ (0 vs >0)"
            if lg["false_dead"] == 0 and pl["false_dead"]
            else ratio(pl["per_node_hour"], lg["per_node_hour"])
        )
        t.add_row(
            cond,
            fmt(lg["per_node_hour"], 2),
            fmt(pl["per_node_hour"], 2),
            better,
            str(lg["false_dead"]),
            str(pl["false_dead"]),
            f"{lg['slow_member_declared_dead']} / {pl['slow_member_declared_dead']}"
            if "slow" in cond
            else "-",
        )
    return t


def real_table(real: dict[str, Any]) -> Table:
    t = Table(title=f"Real processes: {real['nodes']} runners on 127.0.0.1, lan profile")
    t.add_column("figure")
    t.add_column("median", justify="right")
    t.add_column("p99 / max", justify="right")
    if "error" in real:
        t.add_row("error", real["error"], "")
        return t
    t.add_row(
        f"first death verdict after SIGKILL (s), {real['kills']} kills",
        fmt(real["first_dead_s"]["median"]),
        fmt(real["first_dead_s"]["p99"]),
    )
    t.add_row(
        "all survivors know (s)", fmt(real["all_know_s"]["median"]), fmt(real["all_know_s"]["p99"])
    )
    t.add_row(
        "gossip CPU per member (% of a core)",
        fmt(real["cpu_percent_per_node"]["median"], 2),
        fmt(real["cpu_percent_per_node"]["max"], 2),
    )
    return t


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    out = sim_targets(report["sim"]) if "sim" in report else []
    real = report.get("real")
    if real and "error" not in real:
        v = real["all_know_s"]["median"]
        out.append(
            {
                "name": "real: all know a killed runner, median (s)",
                "value": v,
                "target": "< 1.0",
                "ok": v < 1.0,
            }
        )
        v = real["cpu_percent_per_node"]["median"]
        out.append(
            {
                "name": "real: gossip CPU per member (% core), median",
                "value": v,
                "target": "< 1.0",
                "ok": v < 1.0,
            }
        )
    return out


def sim_targets(sim: dict[str, Any]) -> list[dict[str, Any]]:
    rows = sim["detection"]
    lg = {r["n"]: r for r in rows if r["mode"] == "lifeguard"}
    small, big = min(lg), max(lg)
    out = []

    def add(name: str, value: float, goal: str, ok: bool) -> None:
        out.append({"name": name, "value": value, "target": goal, "ok": bool(ok)})

    for key, label in (("first_detection_s", "first detection"), ("first_dead_s", "first dead")):
        r = lg[big][key]["median"] / lg[small][key]["median"]
        add(f"{label} N={big} / N={small}", r, "<= 1.5", r <= 1.5)
    r = lg[big]["steady_bytes_per_node_s"] / lg[small]["steady_bytes_per_node_s"]
    add(f"steady bytes/member N={big} / N={small}", r, "<= 1.5", r <= 1.5)
    r = lg[big]["crash_bytes_per_node_s"] / lg[small]["crash_bytes_per_node_s"]
    add(f"bytes/member during crashes N={big} / N={small}", r, "<= 1.5", r <= 1.5)
    for n in sorted(lg):
        p = lg[n]["dissemination_periods"]["p99"]
        add(
            f"dissemination p99 N={n} (periods) vs log2(N)",
            p,
            f"<= {math.log2(n):.1f}",
            p <= math.log2(n),
        )
    fps = {(r["condition"], r["mode"]): r for r in sim["false_positives"]}
    add(
        "false positives at 5% loss (Lifeguard)",
        fps[("loss 5%", "lifeguard")]["false_dead"],
        "0",
        fps[("loss 5%", "lifeguard")]["false_dead"] == 0,
    )
    slow = next(c for c, _ in fps if c.startswith("slow"))
    lg_fp, pl_fp = fps[(slow, "lifeguard")]["false_dead"], fps[(slow, "plain")]["false_dead"]
    add(
        "slow member: plain FP / Lifeguard FP",
        pl_fp / lg_fp if lg_fp else math.inf,
        ">= 10",
        pl_fp >= 10 * max(lg_fp, 1) or (lg_fp == 0 and pl_fp >= 10),
    )
    return out


def targets_table(rows: list[dict[str, Any]]) -> Table:
    t = Table(title="Targets")
    for col in ("target", "measured", "goal", "met"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["name"], fmt(float(r["value"]), 2), r["target"], "yes" if r["ok"] else "NO")
    return t


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller sizes and runs (a few minutes)")
    p.add_argument("--json", type=Path, help="write the figures here")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=None)
    p.add_argument("--no-real", action="store_true", help="skip the real-process part")
    p.add_argument("--no-sim", action="store_true", help="skip the simulator part")
    args = p.parse_args(argv)
    quick = args.quick
    args.sizes = args.sizes or ([10, 100, 1000] if quick else [10, 100, 1000, 5000])
    args.runs_small, args.runs_large = (20, 8) if quick else (60, 20)
    args.load_seconds = 3.0 if quick else 10.0
    args.fp_nodes, args.fp_seconds = (50, 120.0) if quick else (100, 600.0)
    args.real_nodes, args.real_kills, args.cpu_seconds = (50, 5, 10.0) if quick else (50, 10, 30.0)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    report: dict[str, Any] = {"profile": "lan", "quick": args.quick, "seed": args.seed}
    if not args.no_sim:
        report["sim"] = sim_sizes(args)
        report["sim"]["false_positives"] = sim_false_positives(args)
    if not args.no_real:
        report["real"] = real_cluster(args)
    report["targets"] = targets(report)
    report["wall_seconds"] = time.perf_counter() - started
    if "sim" in report:
        console.print(detection_table(report["sim"]["detection"]))
        console.print(load_table(report["sim"]["detection"]))
        console.print(fp_table(report["sim"]["false_positives"]))
    if "real" in report:
        console.print(real_table(report["real"]))
    console.print(targets_table(report["targets"]))
    console.print(f"wall time {report['wall_seconds']:.0f}s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
