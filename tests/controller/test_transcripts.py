"""Controller transcripts: tests/transcripts/controller/*.txt, replayed in virtual time.

Each file drives real controllers on an in-memory store (:mod:`tests.controller.harness`);
outputs must match the transcript byte for byte. Rewrite them with
``pytest tests/controller --update-transcripts`` and review the diff.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.sim.datadriven import run_file
from tests.controller.harness import World

TRANSCRIPTS = Path(__file__).resolve().parents[1] / "transcripts" / "controller"
FILES = sorted(TRANSCRIPTS.glob("*.txt"))


def replay(path: Path, update: bool = False) -> list[str]:
    """The mismatches of one transcript on a fresh world."""
    world = World()
    try:
        return run_file(path, world.execute, update=update)
    finally:
        world.close()


def test_there_are_transcripts() -> None:
    assert len(FILES) >= 7


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_transcript(path: Path, update_scenarios: bool) -> None:
    mismatches = replay(path, update_scenarios)
    assert not mismatches, "\n\n".join(mismatches)
