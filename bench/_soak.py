"""The soak benchmark's figures (pure) and what it reads from the lab (``bench/soak.py``).

Pure: :func:`classify` (events by category), :func:`client_figures` (per VIP),
:func:`parse_metrics` and :func:`etcd_figures` (etcd's ``/metrics``), :func:`figures` (the
flat ``soak.<figure>`` names of a result). Readers (no writes, no signals): the filesystem type
of a path, service pid files, VIP holders, etcd's metric pages, the agent and guard logs.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from corral.lab import chaosreport, gateway, netns
from corral.lab.chaosresult import wall_text
from corral.lab.client import Record
from corral.lab.lab import Lab

WAL_FSYNC = "etcd_disk_wal_fsync_duration_seconds"
LEADER_CHANGES = "etcd_server_leader_changes_seen_total"
CATEGORIES = ("failovers", "fences", "self_fences", "restarts", "lease_lost",
              "failed_operations", "unhealthy_events", "other")  # fmt: skip
TARGETS = ("failovers", "fences", "self_fences", "restarts", "failcounts_added", "agent_restarts",
           "tracebacks", "pids_changed", "vips_moved", "requests_failed")  # fmt: skip


# --- pure ----------------------------------------------------------------------------------


def classify(
    events: Iterable[dict[str, Any]], since: float, exclusive: set[str]
) -> dict[str, list[str]]:
    """Events stamped at or after ``since`` (wall clock), as text lines by category (see the
    module docstring; ``exclusive``: VIP and exclusive resources), oldest first."""
    out: dict[str, list[str]] = {c: [] for c in CATEGORIES}
    for ev in sorted(events, key=lambda e: float(e.get("time") or 0)):
        t = float(ev.get("time") or 0)
        if t < since:
            continue
        kind, res, reason = (
            str(ev.get("kind")),
            str(ev.get("resource") or ""),
            str(ev.get("reason")),
        )
        if kind == "fence":
            category = "fences"
        elif "self-fence" in reason:
            category = "self_fences"
        elif kind in ("start", "promote"):
            category = "failovers" if res in exclusive else "restarts"
        elif kind == "lease":
            category = "lease_lost"
        elif kind == "failed":
            category = "failed_operations"
        elif kind == "health" and not reason.endswith(" is healthy"):
            category = "unhealthy_events"
        else:
            category = "other"
        out[category].append(f"{wall_text(t)} {ev.get('node')} {kind}: {reason}"[:300])
    return out


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def client_figures(records: Iterable[Record]) -> dict[str, dict[str, Any]]:
    """Per VIP: requests, failed, error kinds, latency p50/p99/max of the successful ones (ms),
    the longest outage (s)."""
    by_vip: dict[str, list[Record]] = {}
    for r in records:
        by_vip.setdefault(r.url.split("//", 1)[1].split(":", 1)[0], []).append(r)
    out = {}
    for vip, rs in sorted(by_vip.items()):
        ok = [r.latency * 1000 for r in rs if r.ok]
        outs = chaosreport.outages((r.sent, r.ok) for r in rs)
        out[vip] = {
            "requests": len(rs),
            "failed": sum(1 for r in rs if not r.ok),
            "errors": dict(Counter(r.error or "?" for r in rs if not r.ok)),
            "latency_ms": {
                "p50": rounded(percentile(ok, 0.5)),
                "p99": rounded(percentile(ok, 0.99)),
                "max": rounded(max(ok, default=None)),
            },
            "longest_outage_s": round(max((b - a for a, b in outs), default=0.0), 3),
        }
    return out


def parse_metrics(text: str) -> dict[str, float]:
    """WAL fsync and leader change samples of a Prometheus text page (``name{labels}`` ->
    value)."""
    out = {}
    for line in text.splitlines():
        if line.startswith((WAL_FSYNC, LEADER_CHANGES)):
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[name] = float(value)
    return out


def etcd_figures(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """One member's WAL fsync latency (mean; p99 as the upper bound of its histogram bucket,
    ms) and leader changes between two metric pages."""

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    count = delta(f"{WAL_FSYNC}_count")
    buckets = sorted(
        (float(key.split('le="', 1)[1].split('"', 1)[0]), delta(key))
        for key in after
        if key.startswith(f"{WAL_FSYNC}_bucket") and 'le="+Inf"' not in key
    )
    bound = next((le for le, n in buckets if count and n >= 0.99 * count), None)
    return {
        "leader_changes": delta(LEADER_CHANGES),
        "wal_fsyncs": count,
        "wal_fsync_mean_ms": rounded(delta(f"{WAL_FSYNC}_sum") / count * 1000) if count else None,
        "wal_fsync_p99_ms": None if bound is None else bound * 1000,
    }


def rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def figures(result: dict[str, Any]) -> dict[str, Any]:
    """The flat figures under stable names (``soak.<figure>``) of a run's result."""
    out: dict[str, Any] = {}
    for name in (*CATEGORIES, "failcounts_added", "agent_restarts", "tracebacks",
                 "requests", "requests_failed", "loadavg_1m_median", "loadavg_1m_max"):  # fmt: skip
        if name in result:
            out[f"soak.{name}"] = result[name]
    for name in ("pids_changed", "vips_moved"):
        if name in result:
            out[f"soak.{name}"] = len(result[name])
    for vip, fig in result.get("per_vip", {}).items():
        out[f"soak.requests.{vip}"] = fig["requests"]
        out[f"soak.requests_failed.{vip}"] = fig["failed"]
        out[f"soak.latency_p99_ms.{vip}"] = fig["latency_ms"]["p99"]
        out[f"soak.longest_outage_s.{vip}"] = fig["longest_outage_s"]
    fsync = result.get("fsync") or {}
    if fsync:
        out["soak.fsync.writes_per_s"] = fsync["writes_per_s"]
        out["soak.fsync.p99_ms"] = fsync["fsync_ms"]["p99"]
    etcd = list(result.get("etcd", {}).values())
    for name in ("leader_changes", "wal_fsync_mean_ms", "wal_fsync_p99_ms"):
        values = [m[name] for m in etcd if m.get(name) is not None]
        if values:
            out[f"soak.etcd.{name}"] = max(values)  # the worst member
    return out


# --- reading the lab -------------------------------------------------------------------------


def fs_type(path: Path) -> str:
    """The filesystem type of the mount holding ``path`` (``/proc/self/mounts``)."""
    best, kind = "", "?"
    target = str(path.resolve())
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        inside = len(parts) > 2 and (target + "/").startswith(parts[1].rstrip("/") + "/")
        if inside and len(parts[1]) >= len(best):
            best, kind = parts[1], parts[2]
    return kind


def service_pids(lab: Lab) -> dict[str, int]:
    """``<node>/<resource>`` -> pid, from every node's ``run/*.pid`` whose process lives (a
    power-off leaves its pid files behind)."""
    out = {}
    for node, rec in lab.state()["nodes"].items():
        for path in sorted(Path(rec["state_dir"]).glob("run/*.pid")):
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                pid = int(json.loads(path.read_text())["pid"])
                if Path(f"/proc/{pid}").exists():
                    out[f"{node}/{path.stem}"] = pid
    return out


def vip_holders(lab: Lab, vips: list[str]) -> dict[str, list[str]]:
    nodes = lab.status()["nodes"]
    return {
        vip: sorted(
            n for n, v in nodes.items() if any(a.split("/")[0] == vip for a in v["addresses"])
        )
        for vip in vips
    }


def etcd_metrics(lab: Lab) -> dict[str, dict[str, float]]:
    """Member client URL -> its :func:`parse_metrics` (a member that does not answer: {})."""
    out = {}
    tls = gateway.curl_tls(lab.state().get("tls", ()))
    for endpoint in lab.store_endpoints():
        argv = ["curl", "-s", "-m", "3", *tls, f"{endpoint}/metrics"]
        out[endpoint] = parse_metrics(netns.run(lab.exec_argv("client", argv), check=False))
    return out


def log_sizes(lab: Lab) -> dict[str, int]:
    """Byte size of every node's ``agent.log`` and ``guard.log``: where the run's lines start."""
    out = {}
    for rec in lab.state()["nodes"].values():
        for name in ("agent.log", "guard.log"):
            path = Path(rec["state_dir"]) / name
            out[str(path)] = path.stat().st_size if path.exists() else 0
    return out


def new_lines(offsets: dict[str, int]) -> dict[str, list[str]]:
    """The lines written to each log since ``offsets`` (see :func:`log_sizes`)."""
    out = {}
    for name, offset in offsets.items():
        with contextlib.suppress(OSError), open(name, "rb") as f:
            f.seek(offset)
            out[name] = f.read().decode(errors="replace").splitlines()
    return out
