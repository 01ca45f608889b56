"""Shared test options."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import pytest

from corral.net.pump import PUMP_THREAD_PREFIX


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update",
        action="store_true",
        default=False,
        help="rewrite golden expectations (scheduler cases) instead of comparing; review the diff",
    )
    parser.addoption(
        "--update-scenarios",
        action="store_true",
        default=False,
        help="rewrite scenario transcripts (tests/scenarios, tests/transcripts) with the actual "
        "outputs (review the diff)",
    )
    parser.addoption(
        "--update-transcripts",
        action="store_true",
        default=False,
        help="rewrite tests/transcripts/**/*.txt with the actual outputs (review the diff)",
    )


@pytest.fixture(autouse=True)
def _no_leaked_pump_threads() -> Iterator[None]:
    """A test that starts a threaded gossip transport must stop it: a pump thread left running
    keeps probing (and taking the GIL) through every later test of the session."""
    before = {t.ident for t in threading.enumerate()}
    yield
    deadline = time.monotonic() + 2.0
    while True:
        leaked = [
            t.name
            for t in threading.enumerate()
            if t.name.startswith(PUMP_THREAD_PREFIX) and t.ident not in before and t.is_alive()
        ]
        if not leaked:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"the test left gossip pump threads running: {leaked}")
        time.sleep(0.01)


@pytest.fixture
def update_scenarios(request: pytest.FixtureRequest) -> bool:
    """True when transcripts should be rewritten: ``--update-scenarios`` (or its other name
    ``--update-transcripts``), the suite-wide ``--update``, or ``CORRAL_UPDATE_SCENARIOS=1``."""
    return bool(
        request.config.getoption("--update-scenarios", default=False)
        or request.config.getoption("--update-transcripts", default=False)
        or request.config.getoption("--update", default=False)
        or os.environ.get("CORRAL_UPDATE_SCENARIOS") == "1"
    )
