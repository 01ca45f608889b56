"""The result of a chaos run (see :func:`corral.lab.chaosrun.run`): violations with their
evidence (agent log lines and corral's events around them), client figures per VIP.

The checker judged the run; corral's events are attached for the reader only.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from corral.lab import chaosreport
from corral.lab.checker import Violation
from corral.lab.client import load

if TYPE_CHECKING:
    from corral.lab.chaosrun import ChaosRun
    from corral.lab.lab import Lab


def wall_text(wall: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(wall)) + f".{int(wall % 1 * 1000):03d}"


def events_near(r: ChaosRun, wall: float, before: float = 3.0, after: float = 3.0) -> list[str]:
    """corral's events stamped within ``[wall - before, wall + after]``, as text lines."""
    near = sorted(
        (
            ev
            for ev in r.events.values()
            if wall - before <= float(ev.get("time") or 0) <= wall + after
        ),
        key=lambda ev: float(ev.get("time") or 0),
    )
    return [
        f"{wall_text(float(ev['time']))} {ev.get('node')} {ev.get('kind')}: {ev.get('reason')}"[
            :300
        ]
        for ev in near[:40]
    ]


def agent_logs(lab: Lab | None) -> dict[str, list[str]]:
    if lab is None:
        return {}
    out = {}
    with contextlib.suppress(Exception):
        for name in lab.state()["nodes"]:
            out[name] = lab.log_path(name).read_text(errors="replace").splitlines()
    return out


def assemble(
    r: ChaosRun, violations: list[Violation], logs: dict[str, list[str]]
) -> dict[str, Any]:
    """The result dict of :func:`run` from the run's records."""
    res = r.result
    res.update(steps=r.steps, timeline=r.timeline, convergence=r.convergence)
    res["final_convergence"] = r.final_convergence
    res["violations"] = [_violation(v, r, logs) for v in violations]
    res["counts"] = dict(Counter(v["category"] for v in res["violations"]))
    if r.checker is not None:
        res["tracebacks"] = dict(r.checker.tracebacks)
        res["checker"] = {"samples": r.checker.samples, "max_gap": round(r.checker.max_gap, 3)}
    res.update(_load_figures(r))
    return res


def _violation(v: Violation, r: ChaosRun, logs: dict[str, list[str]]) -> dict[str, Any]:
    d = v.as_dict(r.t0)
    wall = r.wall0 + (v.start - r.t0)
    d["wall"] = wall_text(wall)
    d["events"] = events_near(r, wall)
    d["during"] = chaosreport.during(v.start - r.t0, r.timeline)
    if not v.context:
        nodes = [n for n in logs if n == v.subject or f"{n}:" in v.detail] or list(logs)
        d["log"] = {n: chaosreport.log_excerpt(logs[n], wall, limit=15) for n in nodes}
    return d


def _load_figures(r: ChaosRun) -> dict[str, Any]:
    path = r.cfg.work / "load.json"
    if not path.exists():
        return {}
    records, meta = load(path)
    per_vip: dict[str, list[tuple[float, bool]]] = {}
    for rec in records:
        vip = rec.url.split("//", 1)[1].split(":", 1)[0]
        per_vip.setdefault(vip, []).append((rec.sent, rec.ok))
    outs = {vip: chaosreport.outages(s) for vip, s in per_vip.items()}
    sends = sorted(rec.sent for rec in records)
    timeout, interval = float(meta.get("timeout", 0.1)), float(meta.get("interval", 0.01))
    down = []
    for a, b in chaosreport.all_down(outs):
        if b - a < 0.2:
            continue
        errors = [rec.error for rec in records if a <= rec.sent <= b and not rec.ok]
        gap = chaosreport.send_gap(sends, a, b)
        down.append({
            "at": round(a - r.t0, 2),
            "duration": round(b - a, 2),
            "during": chaosreport.during(a - r.t0, r.timeline),
            "wall": wall_text(r.wall0 + a - r.t0),
            "events": events_near(r, r.wall0 + a - r.t0),
            "cause": chaosreport.cause_of(errors, gap, timeout, interval),
            "client_gap": round(gap, 3),
            "errors": dict(Counter(e or "?" for e in errors)),
        })  # fmt: skip
    return {
        "requests": len(records),
        "availability": {v: chaosreport.availability(s) for v, s in per_vip.items()},
        "longest_outage": {
            v: round(max((b - a for a, b in o), default=0.0), 2) for v, o in outs.items()
        },
        "all_vips_down": down,
    }
