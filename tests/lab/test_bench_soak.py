"""bench/soak.py's figures (pure) and its fsync writer: events by category from the settle
point on, client figures per VIP, etcd's WAL figures, the flat names."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from _fsync import write_loop
from _soak import classify, client_figures, etcd_figures, figures
from corral.lab.client import Record


def ev(t: float, kind: str, resource: str, reason: str) -> dict[str, object]:
    return {"time": t, "node": "ctl1", "kind": kind, "resource": resource, "reason": reason}


def test_events_after_the_settle_point_by_category() -> None:
    events = [
        ev(5.0, "start", "api-vips", "started api-vips[198.18.0.100]: assigned"),  # before
        ev(10.0, "start", "api-vips", "started api-vips[198.18.0.100]: assigned"),
        ev(11.0, "start", "keystone", "started keystone: restart: its health checks fail"),
        ev(12.0, "stop", "cinder-volume", "stopped cinder-volume: self-fence: node lease ..."),
        ev(13.0, "fence", "", "ctl2 fenced"),
        ev(14.0, "health", "nova-api", "nova-api is unhealthy: timeout"),
        ev(15.0, "health", "nova-api", "nova-api is healthy"),
    ]
    out = classify(events, 10.0, {"api-vips", "cinder-volume"})
    counts = {k: len(v) for k, v in out.items() if v}
    assert counts == {
        "failovers": 1,
        "restarts": 1,
        "self_fences": 1,
        "fences": 1,
        "unhealthy_events": 1,
        "other": 1,
    }
    assert "ctl1 start: started api-vips[198.18.0.100]" in out["failovers"][0]


def test_client_and_etcd_figures_under_stable_names() -> None:
    url = "http://198.18.0.100:5000/"
    records = [Record(i, url, float(i), 0.002, i != 3, error=None if i != 3 else "refused")
               for i in range(10)]  # fmt: skip
    per_vip = client_figures(records)
    assert per_vip["198.18.0.100"]["failed"] == 1
    assert per_vip["198.18.0.100"]["errors"] == {"refused": 1}
    assert per_vip["198.18.0.100"]["longest_outage_s"] == 1.0
    name = "etcd_disk_wal_fsync_duration_seconds"
    before = {f"{name}_count": 100.0, f"{name}_sum": 0.1, f'{name}_bucket{{le="0.002"}}': 100.0}
    after = {f"{name}_count": 300.0, f"{name}_sum": 0.5, f'{name}_bucket{{le="0.002"}}': 250.0}
    after[f'{name}_bucket{{le="0.004"}}'] = 300.0
    etcd = etcd_figures(before, after)
    assert etcd["wal_fsync_mean_ms"] == 2.0
    assert etcd["wal_fsync_p99_ms"] == 4.0
    flat = figures({"failovers": 0, "per_vip": per_vip, "vips_moved": [], "etcd": {"m": etcd}})
    assert flat["soak.failovers"] == 0
    assert flat["soak.vips_moved"] == 0
    assert flat["soak.requests_failed.198.18.0.100"] == 1
    assert flat["soak.etcd.wal_fsync_p99_ms"] == 4.0


def test_fsync_writer_is_bounded_and_removes_its_file(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    out = write_loop(path, 0.2, size=64 * 1024, block=4096)
    assert out["writes"] > 0 and out["fsync_ms"]["p99"] is not None
    assert not path.exists()
