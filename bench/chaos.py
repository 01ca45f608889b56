#!/usr/bin/env python3
"""Chaos in the network-namespace lab: a seeded mix of faults and operator actions on the
example control plane, judged by an independent checker (``corral.lab.checker``).

Each run brings up ``examples/openstack.yaml`` (three controllers, VIP set, HAProxy, the
services as stand-ins, embedded etcd), runs the schedule of ``corral.lab.chaos`` for the seed
(power-off/on, link cut, partition, service kill, malfunction 500/hang, agent kill -9 and
restart, etcd member kill -9, freeze/thaw, double faults; maintenance at every level, move,
ban, cleanup, standby, spec push, rolling restart), waits for convergence after each episode,
and reports:

- the fault mix and the profile's failover bounds (from their formulas);
- violations by category (target 0): two holders of a VIP or of an exclusive service, two ARP
  answers, two agents on a node, an agent dead unannounced, a traceback, admin state lost, not
  converged within 30 s; ``frozen-unfenced`` ones apart (a paused node without fencing);
- per VIP: availability of a client's requests and the longest outage; outages of ALL VIPs at
  once (there must be none while only one node is faulted);
- convergence: seconds from an episode's last step until converged (median, max), and after
  the last heal.

Timing figures come from a shared 2-core machine: they are reported, never asserted. A run
whose harness fails is reported and the bench goes on.

``--load``: the machine loaded as in ``bench/soak.py`` (``stress-ng --cpu 2`` at nice 0 and an
fsync writer on the lab's filesystem) half of the time: on for ``--load-period`` seconds (300),
off as long, from the start of the run.

Usage: bench/chaos.py [--quick] [--json FILE] [--seed N] [--runs N] [--minutes M]
       [--fence reboot|off|none] [--spec FILE] [--load] [--load-period S]
       (--quick: one 10-minute run)
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from corral.lab.chaos import KINDS  # noqa: E402
from corral.lab.chaosrun import RunConfig, dumps, run  # noqa: E402


class HalfLoaded:
    """``bench/soak.py``'s load, on for ``period`` seconds then off as long, in a thread, until
    :meth:`close` (which always stops it). ``loaded_s``: seconds it was on."""

    def __init__(self, work: Path, period: float) -> None:
        from soak import Load

        self.load, self.work, self.period = Load(work), work, period
        self.loaded_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.load.start(self.work, self.period)
            start = time.monotonic()
            self._stop.wait(self.period)
            self.load.stop()
            self.loaded_s += time.monotonic() - start
            self._stop.wait(self.period)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.load.stop()


def median(values: list[float]) -> float | None:
    return round(statistics.median(values), 2) if values else None


def one_run(args: argparse.Namespace, seed: int, console: Console) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="crlchaos-", dir="/tmp"))
    result: dict[str, Any] = {"seed": seed, "fence": args.fence, "error": None}
    load = HalfLoaded(work, args.load_period) if args.load else None
    try:
        cfg = RunConfig(
            args.spec, work, seed=seed, minutes=args.minutes, fence=args.fence,
            verbose=not args.quiet_agents, kinds=args.kinds or KINDS, servers=args.servers,
            converge_timeout=30.0 if args.servers == "standin" else 90.0,
            log=lambda line: console.print(line, highlight=False, markup=False),
        )  # fmt: skip
        result = run(cfg)
    except Exception as exc:  # the bench goes on
        result["error"] = f"{exc!r}\n{traceback.format_exc()}"
    finally:  # a run that found something keeps its logs: a finding must be diagnosable
        if load is not None:
            load.close()
            result["loaded_s"] = round(load.loaded_s)
        if args.keep or result.get("violations") or result.get("error"):
            console.print(f"work dir kept: {work}", highlight=False, markup=False)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return result


def _all_down_cell(moments: list[dict[str, Any]]) -> str:
    """``N (causes)``: the moments with every VIP failing, by cause
    (:func:`corral.lab.chaosreport.cause_of`: client stalled, slow, refused)."""
    causes = Counter(str(d.get("cause", "?")) for d in moments)
    inner = ", ".join(f"{n} {c}" for c, n in sorted(causes.items()))
    return f"{len(moments)} ({inner})" if moments else "0"


def report(results: list[dict[str, Any]], console: Console) -> dict[str, Any]:
    table = Table(title="corral chaos (safety: violations target 0; timing: not asserted)")
    for col in ("seed", "fence", "episodes", "violations", "frozen-unfenced", "availability",
                "longest outage", "all VIPs down", "converge med/max", "final"):  # fmt: skip
        table.add_column(col)
    for r in results:
        if r.get("error") and "violations" not in r:
            table.add_row(str(r["seed"]), r["fence"], "run failed", r["error"].splitlines()[0])
            continue
        conv = r.get("convergence", [])
        table.add_row(
            str(r["seed"]),
            r["fence"],
            f"{r.get('episodes_run', 0)}/{r.get('episodes_planned', 0)}",
            str(r.get("counts", {}).get("violation", 0)),
            str(r.get("counts", {}).get("frozen-unfenced", 0)),
            " ".join(f"{v * 100:.1f}%" for v in r.get("availability", {}).values() if v),
            " ".join(f"{v:.2f}s" for v in r.get("longest_outage", {}).values()),
            _all_down_cell(r.get("all_vips_down", [])),
            f"{median(conv)}/{max(conv, default=None)}",
            str(r.get("final_convergence")),
        )
    console.print(table)
    for r in results:
        loaded = f", loaded {r['loaded_s']} s" if "loaded_s" in r else ""
        console.print(f"seed {r['seed']} fence {r['fence']}{loaded}: {r.get('mix_line', '')}")
        for name, text in r.get("bounds", {}).items():
            console.print(f"  bound, {name}: {text}", highlight=False)
        if r.get("error"):
            console.print(f"  harness error: {r['error'].splitlines()[0]}", highlight=False)
        for v in r.get("violations", []):
            dur = "" if v["duration"] in (None, 0.0) else f" for {v['duration']:.3f}s"
            console.print(
                f"  [{v['category']}] t={v['at']:.1f}s ({v['wall']}) {v['kind']} {v['subject']}"
                f"{dur}: {v['detail'][:300]} ({v['during']})",
                highlight=False,
                markup=False,
            )
            for line in v.get("events", [])[:8]:
                console.print(f"      event {line}", highlight=False, markup=False)
        for d in r.get("all_vips_down", []):
            console.print(
                f"  all VIPs down at t={d['at']}s ({d.get('wall')}) for {d['duration']}s "
                f"({d['during']}): {d.get('cause', '?')}, client gap {d.get('client_gap')}s, "
                f"{d.get('errors', {})}",
                highlight=False,
            )
    conv = [c for r in results for c in r.get("convergence", [])]
    return {
        "runs": results,
        "summary": {
            "violations": sum(r.get("counts", {}).get("violation", 0) for r in results),
            "frozen_unfenced": sum(r.get("counts", {}).get("frozen-unfenced", 0) for r in results),
            "failed_runs": sum(1 for r in results if r.get("error")),
            "convergence_median": median(conv),
            "convergence_max": max(conv, default=None),
            "all_vips_down": sum(len(r.get("all_vips_down", [])) for r in results),
            "all_vips_down_refused": sum(
                d.get("cause") == "refused" for r in results for d in r.get("all_vips_down", [])
            ),
        },
    }


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    # a SIGTERM (a timeout, a CI kill) unwinds like Ctrl-C: each run's finally takes its lab
    # down instead of leaving its namespaces and processes behind
    signal.signal(signal.SIGTERM, _interrupted)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one 10-minute run")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=1, help="seeds seed, seed+1, ...")
    parser.add_argument("--minutes", type=float)
    parser.add_argument("--fence", choices=["reboot", "off", "none"], default="reboot")
    parser.add_argument("--spec", type=Path, default=ROOT / "examples" / "openstack.yaml")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    parser.add_argument("--quiet-agents", action="store_true", help="agents without -v")
    parser.add_argument(
        "--kinds", type=lambda text: tuple(text.split(",")), default=None,
        help=f"comma-separated episode kinds (default: all of {', '.join(KINDS)})",
    )  # fmt: skip
    parser.add_argument("--load", action="store_true", help="load the machine half the time")
    parser.add_argument(
        "--servers", choices=("standin", "real", "auto"), default="standin",
        help="what the example's galera and rabbitmq run: HTTP stand-ins (default) or the "
        "real MariaDB Galera and RabbitMQ servers (make server-packages)",
    )  # fmt: skip
    parser.add_argument("--load-period", type=float, default=300.0)
    args = parser.parse_args()
    if os.geteuid() != 0 or shutil.which("haproxy") is None:
        print("bench/chaos.py needs root (network namespaces) and haproxy")
        return 1
    if args.minutes is None:
        args.minutes = 10.0 if args.quick else 4.0
    console = Console()
    results = [one_run(args, args.seed + i, console) for i in range(args.runs)]
    summary = report(results, console)
    if args.json:
        args.json.write_text(dumps(summary))
        console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
