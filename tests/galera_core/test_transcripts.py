"""Every bootstrap transcript (``cases/*.txt``) decides as written (see :mod:`.transcript`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.galera_core.transcript import CASES, run

FILES = sorted(CASES.glob("*.txt"))


def test_there_are_cases() -> None:
    assert len(FILES) >= 8


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_transcript(path: Path, update_scenarios: bool) -> None:
    text = path.read_text()
    got = run(text)
    if update_scenarios:
        path.write_text(got)
        return
    assert got == text, f"{path.name} decides otherwise (pytest --update-scenarios, then review)"
