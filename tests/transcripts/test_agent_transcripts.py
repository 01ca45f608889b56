"""The agent core's transcripts (``tests/transcripts/agent/*.txt``), in virtual time.

Each file is a scenario readable as documentation: the commands a node goes through and what
the core decided (:mod:`tests.transcripts.agent_node`). Rewrite them after a deliberate change
with ``pytest tests/transcripts --update-scenarios`` and review the diff.

The mutation check: with the self-fence effect removed from the core, at least one transcript
must fail (a transcript that would pass without rule 1 proves nothing about it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.core.agent.core import AgentCore
from corral.core.agent.effects import Stop
from corral.sim.datadriven import run_file
from tests.transcripts.agent_node import AgentNode

FILES = sorted((Path(__file__).parent / "agent").glob("*.txt"))


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_agent_transcript(path: Path, update_scenarios: bool) -> None:
    node = AgentNode()
    mismatches = run_file(path, node.execute, update_scenarios)
    assert not mismatches, "\n\n".join(mismatches)


def failing_transcripts() -> list[str]:
    failed = []
    for path in FILES:
        node = AgentNode()
        if run_file(path, node.execute, update=False):
            failed.append(path.stem)
    return failed


def test_removing_the_self_fence_fails_a_transcript(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_fence(self: AgentCore, now: float, running: object, keep: float) -> list[Stop]:
        return []

    monkeypatch.setattr(AgentCore, "self_fence", no_fence)
    assert failing_transcripts(), "no transcript notices an agent that never self-fences"


def test_starting_exclusive_without_a_fresh_lease_fails_a_transcript(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(AgentCore, "may_start", lambda self, key, now: None)
    assert failing_transcripts(), "no transcript notices an exclusive start without a lease"


def test_the_transcripts_pass_unmutated() -> None:
    assert not failing_transcripts()
