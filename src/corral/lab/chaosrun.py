"""Run a chaos schedule on a lab and judge it with the independent checker.

:func:`run` brings a lab up for a spec (``fence`` reboot/off/none), starts the checker and a
client load on every VIP, writes a sentinel ``admin/`` record, then runs the seeded schedule
(:mod:`corral.lab.chaos`) episode by episode: each step at its offset, then the episode's gap,
then a wait (at most ``converge_timeout``) until the cluster has converged: every powered node
online and every resource healthy where it is assigned (``corral status --json``) and, seen by
the checker, every VIP and every exclusive resource held exactly once. Not converging in time
is a violation; the run goes on. After the last episode everything is healed again (a safety
net: nothing should be left to heal), the final convergence is timed, the checker stopped,
the lab taken down (``down(force=True)`` in ``finally``, logs kept).

The result is a JSON-able dict (see :func:`run`); a failure of the harness itself is reported
in ``error``, never raised, so a bench goes on with its next run.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.lab import chaos, chaosreport, gateway
from corral.lab.checker import Checker, Topology, Violation
from corral.lab.lab import Lab
from corral.lab.readout import ERRORS, failcount, read_events, read_failcounts, start_client


@dataclass(frozen=True)
class RunConfig:
    spec: Path
    work: Path
    seed: int = 1
    minutes: float = 4.0
    fence: str = "reboot"  # reboot | off | none
    kinds: tuple[str, ...] = chaos.KINDS
    min_per_kind: int = 1
    converge_timeout: float = 30.0
    load: bool = True
    client_interval: float = 0.05
    max_seconds: float | None = None  # no new episode after this; None: 1.5 x minutes + 60 s
    verbose: bool = False  # agents log every decision (-v): more evidence, more CPU
    servers: str = "standin"  # galera/rabbitmq: standin | real | auto (corral.lab.servers)
    log: Callable[[str], None] = field(default=print)


def cluster_of(spec: Any) -> chaos.Cluster:
    """The generator's view of ``spec``: core nodes, active-passive and other process
    resources, and an active-active balanced one for the rolling restart."""
    exclusive = tuple(n for n, r in spec.resources.items() if r.mode == "active-passive")
    services = tuple(
        n
        for n, r in spec.resources.items()
        if r.mode == "active-active" and not (r.vip or r.vip_set or r.haproxy)
    )
    balanced = [n for n in services if spec.resources[n].balance is not None]
    return chaos.Cluster(tuple(spec.core_nodes()), exclusive, services, (balanced or services)[0])


def converged(lab: Lab, checker: Checker) -> str:
    """'' when converged (see the module docstring), else why not."""
    vips, excl = checker.snapshot()
    wrong = {k: sorted(v) for k, v in {**vips, **excl}.items() if len(v) != 1}
    if wrong:
        return f"holders {wrong}"
    return status_converged(lab)


def status_converged(lab: Lab) -> str:
    """'' when every powered node is online and every resource healthy where it is assigned
    (``corral status --json``), else why not."""
    try:
        view = lab.cluster_status(timeout=10)
    except (*ERRORS, subprocess.TimeoutExpired) as exc:
        return f"status: {exc}"
    powered = [n for n, rec in lab.state()["nodes"].items() if rec["powered"]]
    offline = [n for n in powered if view["nodes"].get(n) != "online"]
    if offline:
        return f"nodes not online: {offline}"
    for name, res in view["resources"].items():
        healthy = {i["node"] for i in res["running"] if i["health"] == "healthy"}
        bad = [f"{i['node']} {i['health']}" for i in res["running"] if i["health"] != "healthy"]
        missing = [n for n in res["assigned"] if n not in healthy]
        if bad or missing:
            return f"{name}: {', '.join(bad + [f'{n} missing' for n in missing])}"
    return ""


class ChaosRun:
    """One run (see the module docstring); :func:`run` is the entry point."""

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.lab: Lab | None = None
        self.checker: Checker | None = None
        self.client: subprocess.Popen[bytes] | None = None
        self.t0 = time.monotonic()
        self.wall0 = time.time()
        self.steps: list[dict[str, Any]] = []
        self.timeline: list[dict[str, Any]] = []
        self.extra: list[Violation] = []  # the runner's own findings (convergence)
        self.convergence: list[float] = []
        self.final_convergence: float | None = None
        self.events: dict[tuple[Any, ...], dict[str, Any]] = {}  # corral's own, for diagnosis
        self.failcounts: dict[str, Any] = {}
        self.last_heal = self.t0
        self.result: dict[str, Any] = {"seed": cfg.seed, "fence": cfg.fence, "error": None}

    def log(self, text: str) -> None:
        self.cfg.log(f"[{time.monotonic() - self.t0:7.1f}s] {text}")

    # --- setup ------------------------------------------------------------------------------

    def setup(self) -> list[chaos.Episode]:
        from corral.spec import load_spec_text

        if self.cfg.verbose:  # read by Lab._start_agent, here and in the fence agent's process
            os.environ["CORRAL_LAB_VERBOSE"] = "1"
        self.lab = Lab.up(
            self.cfg.spec,
            self.cfg.work / "lab",
            fence_action=self.cfg.fence,
            servers=self.cfg.servers,
            timeout=60.0 if self.cfg.servers == "standin" else 180.0,
        )
        spec = load_spec_text(self.lab.spec_file.read_text())
        rng = random.Random(self.cfg.seed)
        budget = self.cfg.minutes * 60
        schedule = chaos.generate(
            rng, cluster_of(spec), budget, kinds=self.cfg.kinds, min_per_kind=self.cfg.min_per_kind
        )
        self.result["mix"] = dict(chaos.mix(schedule))
        self.result["mix_line"] = chaos.format_mix(schedule)
        self.log(
            f"schedule (seed {self.cfg.seed}, fence {self.cfg.fence}): {chaos.format_mix(schedule)}"
        )
        self.result["bounds"] = chaosreport.failover_bounds(
            spec.effective_timing, spec.effective_gossip, len(spec.nodes)
        )
        topo = Topology.from_lab(self.lab)
        self.checker = Checker(topo)
        self.checker.start()
        self.t0, self.wall0 = time.monotonic(), time.time()
        self._wait_converged("lab up", 90.0)
        key = f"/corral/{spec.cluster}/admin/chaos-sentinel".encode()
        with self.checker.operator():
            seed = {"seed": self.cfg.seed}
            gateway.put(topo.client_ns or "", topo.endpoints, key, seed, tls=topo.tls)
        self.failcounts = read_failcounts(self.lab) or {}
        if self.cfg.load and topo.vips:
            self.client = start_client(
                self.lab,
                [f"http://{v}:5000/" for v in topo.vips],
                self.cfg.work / "load.json",
                interval=self.cfg.client_interval,
                timeout=0.2,
                duration=budget * 2 + 300,
            )
        return schedule

    # --- episodes ----------------------------------------------------------------------------

    def run_schedule(self, schedule: list[chaos.Episode]) -> None:
        limit = self.cfg.max_seconds
        hard_stop = self.t0 + (limit if limit is not None else self.cfg.minutes * 90 + 60)
        for i, ep in enumerate(schedule):
            if time.monotonic() > hard_stop:
                self.log(f"time is up: {len(schedule) - i} episode(s) not run")
                break
            self._episode(i, ep)
            self.result["episodes_run"] = i + 1
        self.result["episodes_planned"] = len(schedule)

    def _episode(self, index: int, ep: chaos.Episode) -> None:
        start = time.monotonic()
        targets: dict[str, str] = {}
        nodes: list[str] = []
        entry = {"index": index, "kind": ep.kind, "start": start - self.t0, "nodes": nodes}
        self.timeline.append(entry)
        try:
            for step in sorted(ep.steps, key=lambda s: s.offset):
                delay = start + step.offset - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                node = self._resolve(step.node, targets)
                if node and node not in nodes:
                    nodes.append(node)
                self._step(index, step, node)
        finally:
            for step in ep.steps:  # a heal that failed is tried once more: heal everything
                if step.heals and step.action != "corral":
                    with contextlib.suppress(*ERRORS):
                        self._call(step.action, self._resolve(step.node, targets), step.args)
        time.sleep(ep.gap)
        entry["end"] = time.monotonic() - self.t0
        took = self._wait_converged(f"episode {index} {ep.kind}", self.cfg.converge_timeout)
        if took is not None:
            self.convergence.append(round(took, 2))
        self._check_failcounts(index, ep, targets)
        self._collect_events()

    def _check_failcounts(self, index: int, ep: chaos.Episode, targets: dict[str, str]) -> None:
        """safety rule 7: a failure counts against a resource on a node only when one of its
        operations failed there. Failcounts that grew during an episode for anything but the
        (node, resource) a service kill or malfunction of the episode aimed at are reported."""
        assert self.lab is not None
        new = read_failcounts(self.lab)
        if new is None:
            return
        aimed = {
            f"{targets.get(s.node or '', s.node)}/{s.args[0]}"
            for s in ep.steps
            if s.action in ("kill_service", "malfunction")
        }
        for key, value in sorted(new.items()):
            count = failcount(value)
            before = failcount(self.failcounts.get(key))
            if count > before and key not in aimed:
                now = time.monotonic()
                nodes = ",".join(targets.get(n, n) for n in ep.nodes) or "-"
                detail = f"failcount {before} -> {count} in episode {index} {ep.kind} on {nodes}"
                self.extra.append(Violation("failcount-node-event", key, now, now, detail))
                self.log(f"RULE 7: {key} {detail}")
        self.failcounts = new

    def _collect_events(self) -> None:
        """corral's own event log (``corral events --json``), kept for the report only: the
        checker judges without it. Read after every episode (the store keeps 1000)."""
        assert self.lab is not None
        for ev in read_events(self.lab):
            self.events[(ev.get("time"), ev.get("node"), ev.get("kind"))] = ev

    def _resolve(self, target: str | None, cache: dict[str, str]) -> str | None:
        """A step's node: a name, or ``holder:<res>`` resolved once per episode from what
        the checker sees (the first node when nothing holds the resource)."""
        if target is None or not target.startswith("holder:"):
            return target
        if target not in cache:
            assert self.checker is not None and self.lab is not None
            held = sorted(self.checker.snapshot()[1].get(target.split(":", 1)[1], set()))
            cache[target] = held[0] if held else sorted(self.lab.state()["nodes"])[0]
        return cache[target]

    def _step(self, index: int, step: chaos.Step, node: str | None) -> None:
        t = time.monotonic()
        try:
            outcome = self._call(step.action, node, step.args)
        except ERRORS as exc:
            outcome = f"skipped: {str(exc).splitlines()[0][:160] if str(exc) else exc!r}"
        self.last_heal = time.monotonic()  # convergence is timed from an episode's last step
        text = f"{step.action} {node or ''} {' '.join(step.args)}".replace("  ", " ").strip()
        self.steps.append(
            {"t": round(t - self.t0, 2), "episode": index, "step": text, "outcome": outcome}
        )
        self.log(f"ep {index}: {text} -> {outcome}")

    def _call(self, action: str, node: str | None, args: tuple[str, ...]) -> str:
        assert self.lab is not None and self.checker is not None
        if action == "corral":
            return self._corral(args)
        assert node is not None
        if action == "kill_agent":
            pid = self.lab.node(node)["agent_pid"]
            if pid is not None:
                self.checker.expect_agent_death(int(pid))
        result = getattr(self.lab, action)(node, *args)
        return "ok" if result is None or isinstance(result, list) else f"ok ({result})"

    def _corral(self, args: tuple[str, ...]) -> str:
        assert self.lab is not None and self.checker is not None
        spec = str(self.lab.spec_file)
        argv = [sys.executable, "-m", "corral.cli.main", *args]
        argv += [spec] if args[:2] == ("spec", "push") else ["--spec", spec]
        with self.checker.operator():
            proc = subprocess.run(
                self.lab.exec_argv("client", argv), capture_output=True, text=True, timeout=120
            )
        if proc.returncode != 0:
            return f"exit {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-200:]}"
        return "ok"

    def _wait_converged(self, what: str, timeout: float) -> float | None:
        """Seconds from the last heal until converged; a violation after ``timeout``."""
        assert self.lab is not None and self.checker is not None
        deadline = time.monotonic() + timeout
        while True:
            why = converged(self.lab, self.checker)
            if not why:
                return time.monotonic() - self.last_heal
            if time.monotonic() > deadline:
                now = time.monotonic()
                self.extra.append(Violation("not-converged", what, now, now, why))
                self.log(f"NOT CONVERGED within {timeout:g}s after {what}: {why}")
                return None
            time.sleep(0.5)

    # --- end ---------------------------------------------------------------------------------

    def finish(self) -> None:
        """Heal everything (a safety net), time the final convergence, stop the checker."""
        assert self.lab is not None
        for node, rec in self.lab.state()["nodes"].items():
            for action in ("thaw", "heal_link", "heal_partition", "power_on"):
                with contextlib.suppress(*ERRORS):
                    if action != "power_on" or not rec["powered"]:
                        getattr(self.lab, action)(node)
        self.final_convergence = self._wait_converged("the last heal", self.cfg.converge_timeout)
        self._collect_events()
        if self.final_convergence is not None:
            self.final_convergence = round(self.final_convergence, 2)

    def stop(self) -> list[Violation]:
        found: list[Violation] = []
        if self.checker is not None:
            found = self.checker.stop()
        if self.client is not None and self.client.poll() is None:
            os.kill(self.client.pid, signal.SIGTERM)  # the client writes its records then
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.client.wait(timeout=60)
        return sorted([*found, *self.extra], key=lambda v: v.start)


def run(cfg: RunConfig) -> dict[str, Any]:
    """One chaos run (see the module docstring). The result: ``seed``, ``fence``, ``mix``,
    ``mix_line``, ``episodes_run``/``episodes_planned``, ``steps`` (each with its outcome),
    ``violations`` (each with ``at`` seconds after the start, ``wall`` time, ``duration``,
    ``detail``, ``category``, ``during`` and ``log`` lines), ``counts`` by category,
    ``tracebacks`` per node, ``availability``/``longest_outage`` per VIP, ``all_vips_down``,
    ``convergence`` (seconds per episode), ``final_convergence``, ``checker`` stats,
    ``bounds`` and ``error`` (None, or what broke the harness)."""
    cfg.work.mkdir(parents=True, exist_ok=True)
    r = ChaosRun(cfg)
    from corral.lab.chaosresult import agent_logs, assemble

    violations: list[Violation] = []
    try:
        schedule = r.setup()
        r.run_schedule(schedule)
        r.finish()
    except Exception as exc:  # reported, never raised: the bench goes on
        r.result["error"] = f"{exc!r}\n{traceback.format_exc()[-2000:]}"
        r.log(f"harness error: {exc!r}")
    finally:
        violations = r.stop()
        logs = agent_logs(r.lab)
        if r.lab is not None:
            with contextlib.suppress(Exception):
                r.lab.down(force=True)
    return assemble(r, violations, logs)


def dumps(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=2, default=str)
