"""Options of the controller transcripts."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def update_transcripts(request: pytest.FixtureRequest) -> bool:
    """True when transcripts should be rewritten: ``--update-transcripts``,
    ``--update-scenarios`` (when the membership tests registered it), the suite-wide
    ``--update``, or ``CORRAL_UPDATE_SCENARIOS=1``."""
    return bool(
        request.config.getoption("--update-transcripts", default=False)
        or request.config.getoption("--update-scenarios", default=False)
        or request.config.getoption("--update", default=False)
        or os.environ.get("CORRAL_UPDATE_SCENARIOS") == "1"
    )
