"""bench/failover_loopback.py: a run that fails is reported and the benchmark goes on (the
table and the JSON are still written, the failure named, the exit status 1)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import failover_loopback as bench

FIGURES = {
    "crash_to_healthy_s": 0.4,
    "http500_detected_s": 0.5,
    "hang_detected_s": 0.6,
    "two_holders_seen": 0.0,
    "ap_takeover_s": 2.0,
}
IDLE = {
    "agent_idle_cpu_pct": 0.5,
    "agent_idle_cpu_max_pct": 0.6,
    "agent_idle_main_thread_share": 0.5,
    "guard_idle_cpu_pct": 0.05,
    "agent_rss_mb": 60.0,
}


def test_a_failed_run_is_named_and_the_others_still_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ran = []

    def run(i: int, out: dict[str, float]) -> None:
        ran.append(i)
        if i == 1:  # the chaos report's failure: measured the crash, then a step timed out
            out["crash_to_healthy_s"] = 9.0
            raise TimeoutError("web on 3 nodes after the faults: not within 20 s")
        out.update(FIGURES, crash_to_healthy_s=0.4 + i)

    med, failures = bench.measure(3, run, lambda: IDLE)
    assert ran == [0, 1, 2]  # went on after the failure
    assert failures == [
        "run 2 of 3: TimeoutError: web on 3 nodes after the faults: not within 20 s"
    ]
    assert med["crash_to_healthy_s"] == 2.4  # median of 0.4, 9.0, 2.4: its partial counts
    assert med["hang_detected_s"] == 0.6 and med["agent_rss_mb"] == 60.0

    out = tmp_path / "out.json"
    assert bench.report(med, 3, failures, str(out)) == 1
    printed = capsys.readouterr().out
    assert "1 of 3 FAILED" in printed and "run 2 of 3: TimeoutError" in printed
    assert "idle agent" in printed
    written = json.loads(out.read_text())
    assert written["failures"] == failures and written["hang_detected_s"] == 0.6


def test_every_run_failing_still_writes_a_report(tmp_path: Path) -> None:
    def run(i: int, out: dict[str, float]) -> None:
        raise RuntimeError("the cluster did not come up")

    def idle() -> dict[str, float]:
        raise TimeoutError("a fresh cluster: not within 20 s")

    med, failures = bench.measure(1, run, idle)
    assert med == {} and len(failures) == 2
    out = tmp_path / "out.json"
    assert bench.report(med, 1, failures, str(out)) == 1
    assert json.loads(out.read_text()) == {"failures": failures}
