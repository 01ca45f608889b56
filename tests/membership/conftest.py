"""Options of the membership tests."""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-scenarios",
        action="store_true",
        default=False,
        help="rewrite tests/scenarios/*.txt transcripts with the actual outputs (review the diff)",
    )


@pytest.fixture
def update_scenarios(request: pytest.FixtureRequest) -> bool:
    """True when transcripts should be rewritten: ``--update-scenarios``, the suite-wide
    ``--update``, or ``CORRAL_UPDATE_SCENARIOS=1``."""
    return bool(
        request.config.getoption("--update-scenarios", default=False)
        or request.config.getoption("--update", default=False)
        or os.environ.get("CORRAL_UPDATE_SCENARIOS") == "1"
    )
