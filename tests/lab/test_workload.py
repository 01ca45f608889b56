"""The demo's stateful figures (pure): writes acknowledged, failing, lost; the writer's name."""

from __future__ import annotations

from corral.cli.demo_state import writer
from corral.lab.workload import summarize_writes


def test_write_figures_count_only_acknowledged_rows() -> None:
    attempts = [(10.0, 0, True), (10.1, 1, True), (10.2, 2, False), (11.0, 3, False)]
    attempts += [(11.5, 4, True), (11.6, 5, True)]
    got = summarize_writes(attempts, 0.1, fault=10.15, present={0, 1, 4, 5, 2})
    assert got["acked"] == 4 and got["acked_after_fault"] == 2 and got["failed"] == 2
    assert got["failed_s"] == 1.3  # 10.1 -> 11.5, less one interval
    assert got["lost"] == []  # an unacknowledged row that made it is no loss
    lost = summarize_writes(attempts, 0.1, fault=10.15, present={0, 4})
    assert lost["lost"] == [1, 5]
    quiet = summarize_writes(attempts[:2], 0.1, fault=10.05, present={0, 1})
    assert quiet["failed"] == 0 and quiet["failed_s"] == 0.0


def test_the_writer_is_the_server_in_rotation() -> None:
    view = {"backends": {"galera": {"ctl1": {"ctl1": "maint", "ctl2": "maint"},
                                    "ctl2": {"ctl1": "ready", "ctl2": "ready"}}}}  # fmt: skip
    assert writer(view, "galera") == "ctl2"
    assert writer({}, "galera") == "none yet"
