#!/usr/bin/env python3
"""Soak: the example control plane in the lab on a loaded machine, no fault, for 30 minutes.

A slow machine must not turn into failovers. The run brings up ``examples/openstack.yaml``
(three controllers, the VIP set, HAProxy, the services as stand-ins, embedded etcd, the lab
fence device; lan profile) with the nodes' state, and so etcd's data, on a disk-backed data
dir (``Lab.up(data_dir=)``, under ``--data-root``, default ``/var/tmp``: a tmpfs there is
reported, since an fsync costs nothing on it). Once the cluster has converged and its event
log has been quiet for 5 s, it starts, for ``--minutes`` (30; ``--quick``: 3):

- a client on every VIP (:mod:`corral.lab.client`: a GET of keystone behind HAProxy per VIP
  every 50 ms, 0.5 s timeout: a request that fails on a machine this loaded is a real one,
  not a client that was late by 0.2 s);
- ``stress-ng --cpu 2`` at nice 0 (one hog per core of this machine);
- an fsync writer (``bench/_fsync.py``: 4 KiB writes each followed by an fsync, rewriting a
  64 MiB file in the data dir, so on the filesystem of etcd's WAL).

Both loads run in their own process groups, started and ended by the bench (SIGTERM, then
SIGKILL), with ``--timeout`` backstops of their own, also when the run fails; ``--no-load``
runs the same window without them.

Figures (targets 0, reported, never asserted), from the settle point to the end:

- from corral's event log: ``failovers`` (starts or promotions of a VIP or an exclusive
  instance: a move, or a restart in place of an exclusive one), ``fences``, ``self_fences``
  (stops for rule 1, plus stops by the lease guard from its ``guard.log``), ``restarts``
  (starts of any other instance), ``lease_lost``, ``failed_operations``, ``unhealthy_events``
  (health verdicts other than healthy); each event is listed;
- ``failcounts_added`` (the store's ``failcounts/``), ``agent_restarts`` (an agent pid that
  changed), ``tracebacks`` in the agent logs; as cross-checks that do not ask corral,
  ``pids_changed`` (service pid files) and ``vips_moved`` (VIP addresses at the end);
- the client's requests and failed requests per VIP, their error kinds, p99 latency and the
  longest outage;
- the machine: 1-minute load average sampled every 5 s (median, max; it counts every task of
  the machine, another person's tests included), the fsync writer's rate and fsync latency,
  and etcd's own WAL fsync latency and leader changes (its ``/metrics``, per member).

No ratio against a baseline: the targets are absolute zeros, and a ratio of two zeros says
nothing; ``--no-load`` gives the unloaded figures when they are wanted. A failure of the run
(the lab not converging, an interrupt) is reported as such after the cleanup; the work dir (the
agent logs) is kept when the run failed or missed a target, or with ``--keep``.

Usage: bench/soak.py [--quick] [--json FILE] [--minutes N] [--no-load] [--data-root DIR]
       [--spec FILE] [--keep] [--verbose-agents]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from _soak import (  # noqa: E402
    TARGETS,
    classify,
    client_figures,
    etcd_figures,
    etcd_metrics,
    figures,
    fs_type,
    log_sizes,
    new_lines,
    rounded,
    service_pids,
    vip_holders,
)
from corral.lab.chaosrun import status_converged  # noqa: E402
from corral.lab.client import load  # noqa: E402
from corral.lab.lab import Lab, LabError  # noqa: E402
from corral.lab.readout import (  # noqa: E402
    ERRORS,
    event_key,
    failcount,
    read_events,
    read_failcounts,
    start_client,
)
from corral.spec import load_spec_text  # noqa: E402


class Interrupted(Exception):
    """SIGTERM or SIGINT: the run ends, cleans up and reports."""


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


# --- the load ------------------------------------------------------------------------------


class Load:
    """``stress-ng --cpu 2`` and the fsync writer at nice 0, each in its own process group
    (SIGTERM, then SIGKILL, to that group only); :meth:`stop` is idempotent."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, data: Path, seconds: float) -> None:
        backstop = f"{seconds + 120:.0f}"  # ends by itself should this process be killed
        self._spawn("stress-ng", ["stress-ng", "--cpu", "2", "--timeout", f"{backstop}s"])
        fsync = [sys.executable, str(ROOT / "bench" / "_fsync.py"), str(data / "fsync.bin")]
        self._spawn("fsync", [*fsync, "--seconds", backstop, "--out", str(self.fsync_out)])

    @property
    def fsync_out(self) -> Path:
        return self.work / "fsync.json"

    def _spawn(self, name: str, argv: list[str]) -> None:
        nice = os.getpriority(os.PRIO_PROCESS, 0)  # nice 0 whatever this process runs at
        with open(self.work / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(
                ["nice", "-n", str(-nice), *argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def exited(self) -> list[str]:
        """``name (exit N)`` of every load process that has ended."""
        return [f"{n} (exit {p.returncode})" for n, p in self.procs.items() if p.poll() is not None]

    def nice(self) -> dict[str, int | None]:
        out: dict[str, int | None] = {}
        for name, proc in self.procs.items():
            try:
                out[name] = os.getpriority(os.PRIO_PROCESS, proc.pid)
            except OSError:
                out[name] = None
        return out

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


# --- the run -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    spec: Path
    minutes: float
    load: bool = True
    data_root: Path = Path("/var/tmp")
    interval: float = 0.05
    timeout: float = 0.5
    verbose: bool = False  # agents log every decision (-v): more evidence, more CPU
    log: Callable[[str], None] = field(default=print)


class Soak:
    """One run (see the module docstring): :meth:`setup`, :meth:`window`, :meth:`finish`;
    :meth:`teardown` in ``finally``."""

    def __init__(self, cfg: Config, work: Path, data: Path) -> None:
        self.cfg, self.work, self.data = cfg, work, data
        self.lab: Lab | None = None
        self.load = Load(work)
        self.client: subprocess.Popen[bytes] | None = None
        self.events: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.before: dict[str, Any] = {}
        self.loadavg: list[float] = []
        self.notes: list[str] = []
        self.vips: list[str] = []
        self.exclusive: set[str] = set()  # VIP and exclusive resources
        self.since = time.time()
        self.t0 = time.monotonic()
        self.result: dict[str, Any] = {"error": None, "data_fs": fs_type(data)}

    def say(self, text: str) -> None:
        self.cfg.log(f"[{time.monotonic() - self.t0:7.1f}s] {text}")

    def setup(self) -> None:
        self.say(f"lab up: {self.cfg.spec.name}, data dir {self.data} ({self.result['data_fs']})")
        if self.cfg.verbose:  # read by Lab._start_agent, here and in the fence agent's process
            os.environ["CORRAL_LAB_VERBOSE"] = "1"
        self.lab = Lab.up(self.cfg.spec, self.work / "lab", data_dir=self.data, timeout=90.0)
        spec = load_spec_text(self.lab.spec_file.read_text())
        for name, res in spec.resources.items():
            self.vips += [str(a.ip) for a in res.vip_set.addresses] if res.vip_set else []
            self.vips += [str(res.vip.address.ip)] if res.vip else []
            if res.vip or res.vip_set or res.mode != "active-active":
                self.exclusive.add(name)
        self._wait_settled(120.0)
        self._wait_quiet(5.0, 30.0)
        self.say("converged, event log quiet for 5 s")
        self.before = self._snapshot()
        self.since, self.t0 = time.time(), time.monotonic()
        self.result["started"] = time.strftime("%H:%M:%S", time.localtime(self.since))
        seconds = self.cfg.minutes * 60
        urls = [f"http://{v}:5000/" for v in self.vips]
        self.client = start_client(
            self.lab, urls, self.work / "load.json",
            interval=self.cfg.interval, timeout=self.cfg.timeout, duration=seconds,
        )  # fmt: skip
        if self.cfg.load:
            self.load.start(self.data, seconds)
        self.result["nice"] = self.load.nice()
        self.say(
            f"soak: {self.cfg.minutes:g} min, load {self.cfg.load}, nice {self.result['nice']}"
        )

    def _wait_settled(self, timeout: float) -> None:
        assert self.lab is not None
        deadline = time.monotonic() + timeout
        while True:
            holders = vip_holders(self.lab, self.vips)
            why = next((f"{v} held by {h}" for v, h in holders.items() if len(h) != 1), "")
            why = why or status_converged(self.lab)
            if not why:
                return
            if time.monotonic() > deadline:
                raise LabError(f"not converged after {timeout:g}s: {why}")
            time.sleep(1.0)

    def _wait_quiet(self, quiet: float, timeout: float) -> None:
        """Until the event log has had no new event for ``quiet`` seconds (startup's last
        events are not the soak's)."""
        assert self.lab is not None
        deadline, seen, last = time.monotonic() + timeout, None, time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - last < quiet:
            events = read_events(self.lab)
            newest = event_key(events[-1]) if events else None
            if newest != seen:
                seen, last = newest, time.monotonic()
            time.sleep(1.0)

    def _snapshot(self) -> dict[str, Any]:
        assert self.lab is not None
        return {
            "failcounts": read_failcounts(self.lab) or {},
            "pids": service_pids(self.lab),
            "agents": {n: r["agent_pid"] for n, r in self.lab.state()["nodes"].items()},
            "vips": vip_holders(self.lab, self.vips),
            "etcd": etcd_metrics(self.lab),
            "logs": log_sizes(self.lab),
        }

    def window(self) -> None:
        """Sample the load average every 5 s, read the event log every minute (the store
        keeps the last 1000 events), until the window ends."""
        assert self.lab is not None
        end = self.t0 + self.cfg.minutes * 60
        next_read = self.t0 + 60
        while time.monotonic() < end:
            time.sleep(min(5.0, max(0.0, end - time.monotonic())))
            self.loadavg.append(float(Path("/proc/loadavg").read_text().split()[0]))
            for gone in self.load.exited():
                if gone not in self.notes:
                    self.notes.append(gone)
                    self.say(f"load process ended early: {gone}")
            if time.monotonic() >= next_read:
                self._collect()
                next_read += 60
                self.say(f"load average {self.loadavg[-1]:.2f}, {len(self.events)} event(s)")

    def _collect(self) -> None:
        assert self.lab is not None
        for ev in read_events(self.lab):
            if float(ev.get("time") or 0) >= self.since:
                self.events[event_key(ev)] = ev

    def finish(self) -> None:
        assert self.lab is not None
        self.load.stop()
        if self.client is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.client.wait(timeout=self.cfg.timeout + 30)
        self._collect()
        after = self._snapshot()
        self.result.update(self._figures(after))
        self.say("soak done")

    def _figures(self, after: dict[str, Any]) -> dict[str, Any]:
        before = self.before
        events = classify(self.events.values(), self.since, self.exclusive)
        lines = new_lines(before["logs"])
        guard = [f"{Path(n).parent.name}: {x}" for n, ls in lines.items() for x in ls
                 if n.endswith("guard.log") and "lease deadline passed" in x]  # fmt: skip
        events["self_fences"] += guard
        added = {
            k: failcount(v) - failcount(before["failcounts"].get(k))
            for k, v in (after["failcounts"] or {}).items()
        }
        pids = before["pids"].keys() | after["pids"].keys()
        out: dict[str, Any] = {k: len(v) for k, v in events.items()}
        out["events"] = events
        out["failcounts_added"] = sum(n for n in added.values() if n > 0)
        out["failcounts_detail"] = {k: n for k, n in added.items() if n}
        out["agent_restarts"] = sum(
            1 for n, p in after["agents"].items() if before["agents"].get(n) != p
        )
        out["tracebacks"] = sum(1 for ls in lines.values() for x in ls if x.startswith("Traceback"))
        out["pids_changed"] = sorted(
            k for k in pids if before["pids"].get(k) != after["pids"].get(k)
        )
        out["vips_moved"] = sorted(
            v for v, h in after["vips"].items() if h != before["vips"].get(v)
        )
        out["etcd"] = {
            m: etcd_figures(before["etcd"].get(m, {}), page) for m, page in after["etcd"].items()
        }
        out.update(self._machine_figures())
        return out

    def _machine_figures(self) -> dict[str, Any]:
        out: dict[str, Any] = {"notes": self.notes}
        path = self.work / "load.json"
        records = load(path)[0] if path.exists() else []
        out["per_vip"] = client_figures(records)
        out["requests"] = len(records)
        out["requests_failed"] = sum(1 for r in records if not r.ok)
        out["loadavg_1m_median"] = rounded(
            statistics.median(self.loadavg) if self.loadavg else None
        )
        out["loadavg_1m_max"] = max(self.loadavg, default=None)
        with contextlib.suppress(OSError, ValueError):
            out["fsync"] = json.loads(self.load.fsync_out.read_text())
        return out

    def teardown(self) -> None:
        """Whatever happened: the load and the client ended, the lab down (logs kept)."""
        self.load.stop()
        if self.client is not None and self.client.poll() is None:
            self.client.terminate()  # it writes its records then
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.client.wait(timeout=30)
        if self.lab is not None:
            with contextlib.suppress(Exception):
                self.lab.down(force=True)


def run(cfg: Config, keep: bool = False) -> dict[str, Any]:
    """One soak run; its result (see :func:`figures`). Never raises for a failed run: the
    error is in ``error``, the cleanup done."""
    work = Path(tempfile.mkdtemp(prefix="crlsoak-"))
    cfg.data_root.mkdir(parents=True, exist_ok=True)
    data = Path(tempfile.mkdtemp(prefix="crlsoak-data-", dir=cfg.data_root))
    soak = Soak(cfg, work, data)
    old = {s: signal.signal(s, _interrupt) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        soak.setup()
        soak.window()
        soak.finish()
    except Exception as exc:  # reported after the cleanup, never raised
        soak.result["error"] = f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, (*ERRORS, Interrupted)):  # a bug of the bench: keep its trace
            soak.result["traceback"] = traceback.format_exc()
        soak.say(f"run failed: {soak.result['error'].splitlines()[0]}")
    finally:
        for s in old:  # the cleanup is not interrupted half-way
            signal.signal(s, signal.SIG_IGN)
        soak.teardown()
        for s, handler in old.items():
            signal.signal(s, handler)
    missed = soak.result["error"] or any(figures(soak.result).get(f"soak.{t}") for t in TARGETS)
    if keep or missed:
        soak.result["kept"] = [str(work), str(data)]
    else:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(data, ignore_errors=True)
    return soak.result


# --- report ----------------------------------------------------------------------------------


def report(cfg: Config, result: dict[str, Any], console: Console) -> None:
    flat = figures(result)
    title = f"corral soak: {cfg.minutes:g} min, " + (
        "stress-ng --cpu 2 + fsync writer" if cfg.load else "no load"
    )
    table = Table(title=f"{title} (targets 0: reported, not asserted)")
    for col in ("figure", "value", "target"):
        table.add_column(col)
    for name, value in flat.items():
        short = name.removeprefix("soak.")
        target = "0" if short.split(".")[0] in TARGETS else ""
        table.add_row(short, "-" if value is None else str(value), target)
    if flat:  # none when the run failed before its end
        console.print(table)
    for vip, fig in result.get("per_vip", {}).items():
        errors = f" {fig['errors']}" if fig["errors"] else ""
        lat = fig["latency_ms"]
        console.print(
            f"  {vip}: {fig['requests']} requests, {fig['failed']} failed{errors}, latency "
            f"p50/p99/max {lat['p50']}/{lat['p99']}/{lat['max']} ms",
            highlight=False,
            soft_wrap=True,
        )
    console.print(
        f"  load started {result.get('started')}; data dir filesystem {result.get('data_fs')}; "
        f"nice {result.get('nice')}",
        highlight=False,
    )
    for category, lines in result.get("events", {}).items():
        for line in lines[:40]:
            console.print(f"  [{category}] {line}", highlight=False, markup=False, soft_wrap=True)
        if len(lines) > 40:
            console.print(f"  [{category}] ... {len(lines) - 40} more")
    for key in ("failcounts_detail", "pids_changed", "vips_moved", "notes"):
        if result.get(key):
            console.print(f"  {key}: {result[key]}", highlight=False, markup=False)
    if result.get("error"):
        console.print(f"  RUN FAILED: {result['error']}", highlight=False, markup=False)
    if result.get("kept"):
        console.print(f"  kept (agent logs): {' '.join(result['kept'])}", highlight=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 minutes")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--minutes", type=float)
    parser.add_argument("--no-load", action="store_true", help="no stress-ng, no fsync writer")
    parser.add_argument("--data-root", type=Path, default=Path("/var/tmp"))
    parser.add_argument("--spec", type=Path, default=ROOT / "examples" / "openstack.yaml")
    parser.add_argument("--keep", action="store_true", help="keep the work dirs (logs)")
    parser.add_argument("--verbose-agents", action="store_true", help="agents with -v (CPU)")
    args = parser.parse_args()
    missing = [t for t in ("haproxy", "stress-ng", "curl") if shutil.which(t) is None]
    if os.geteuid() != 0 or missing:
        print(f"bench/soak.py needs root (network namespaces); missing: {missing or 'nothing'}")
        return 1
    minutes = args.minutes if args.minutes is not None else 3.0 if args.quick else 30.0
    console = Console()
    cfg = Config(
        args.spec, minutes, load=not args.no_load, data_root=args.data_root,
        verbose=args.verbose_agents,
        log=lambda line: console.print(line, highlight=False, markup=False, soft_wrap=True),
    )  # fmt: skip
    if fs_type(cfg.data_root) == "tmpfs":
        console.print(f"warning: {cfg.data_root} is a tmpfs: fsync costs nothing there")
    result = run(cfg, keep=args.keep)
    report(cfg, result, console)
    if args.json:
        doc = {**figures(result), "detail": result}
        args.json.write_text(json.dumps(doc, indent=2, default=str))
        console.print(f"wrote {args.json}")
    return 1 if result.get("error") else 0


if __name__ == "__main__":
    sys.exit(main())
