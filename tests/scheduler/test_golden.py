"""Golden scheduler cases (see golden.py). ``pytest tests/scheduler --update`` rewrites them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.scheduler.golden import CASES, run_case

CASE_DIRS = sorted(p for p in CASES.iterdir() if (p / "input.yaml").exists())


def test_there_are_enough_cases() -> None:
    assert len(CASE_DIRS) >= 40


@pytest.mark.parametrize("case_dir", CASE_DIRS, ids=[p.name for p in CASE_DIRS])
def test_golden(case_dir: Path, request: pytest.FixtureRequest) -> None:
    text, _spec, again = run_case(case_dir)
    expected_file = case_dir / "expected.txt"
    if request.config.getoption("--update"):
        expected_file.write_text(text)
    assert expected_file.exists(), f"no expectation yet: run pytest {case_dir} --update"
    assert text == expected_file.read_text(), "plan changed: review, then rerun with --update"
    assert not again.actions, "the plan applied to its own result must be empty"
