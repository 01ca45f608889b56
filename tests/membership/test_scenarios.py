"""Data-driven scenarios: tests/scenarios/*.txt, in the style of etcd-io/raft's interaction tests.

Each file is replayed command by command on a fresh simulator; outputs must match the recorded
transcript byte for byte (the simulator is deterministic). Rewrite the transcripts with
``pytest tests/membership --update-scenarios`` and review the diff.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.sim.datadriven import run_file
from corral.sim.scenario import Scenario

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
FILES = sorted(SCENARIOS.glob("*.txt"))


def test_there_are_scenarios() -> None:
    assert len(FILES) >= 8


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_scenario(path: Path, update_scenarios: bool) -> None:
    mismatches = run_file(path, Scenario().execute, update=update_scenarios)
    assert not mismatches, "\n\n".join(mismatches)
