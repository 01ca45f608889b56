"""The transcripts bite: remove a safety check from the controller and one of them fails.

Each mutation monkeypatches one guard out of the controller and replays every controller
transcript; at least one must then differ (and the named transcript that proves the guard
must be among them). A transcript suite that still passed would prove nothing about it.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

import corral.agent.controller as shell
import corral.core.controller as core
import corral.core.systemic as systemic
from corral.core.controller import HolderGuard
from corral.sim.datadriven import run_file
from corral.store import Compare, Keys
from tests.controller.harness import World
from tests.controller.test_transcripts import FILES


def failing() -> set[str]:
    """The transcripts that no longer match (never rewritten here)."""
    out = set()
    for path in FILES:
        world = World()
        try:
            if run_file(path, world.execute, update=False):
                out.add(path.stem)
        finally:
            world.close()
    return out


def test_the_transcripts_pass_unmutated() -> None:
    assert failing() == set()


def test_without_the_fencing_token_a_deposed_controller_writes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def always_true(keys: Keys, token: int) -> Compare:
        return Compare(keys.controller, "create_revision", ">", -1)

    monkeypatch.setattr(shell, "token_compare", always_true)
    assert "deposed-mid-step" in failing()


def test_without_the_holder_guard_a_second_holder_is_assigned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def none(keys: Keys, guards: Iterable[HolderGuard]) -> list[Compare]:
        return []

    monkeypatch.setattr(shell, "holder_compares", none)
    assert "holder-appears-mid-step" in failing()


def test_without_the_retry_window_a_failed_fence_is_retried_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(core, "fence_recent", lambda failed_at, now: False)
    assert "fence-retry-monotonic" in failing()


def test_without_the_plausibility_check_a_cut_off_agent_fences(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(core, "plausible", lambda dead, nodes, me: True)
    assert "no-fence-implausible" in failing()


def test_without_the_systemic_rule_failures_on_most_nodes_ban(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(systemic, "needed", lambda size, share: None)
    assert {"systemic-active-active", "systemic-exclusive"} <= failing()


def test_without_the_compare_and_swap_the_controller_undoes_a_new_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def always(key: bytes, mod_revision: int) -> Compare:
        return Compare(key, "mod_revision", ">", -1)

    monkeypatch.setattr(Compare, "unchanged_since", staticmethod(always))
    assert "systemic-active-active" in failing()
