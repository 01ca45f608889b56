"""The RabbitMQ decisions on scenario files (tests/rabbit_core/data), and their reasons."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.core.rabbit import Cluster, NodeReport, Policy, RunRecord, decide, erlang_nodes
from tests.rabbit_core.fixtures import DATA, run_file, scenario_files


@pytest.mark.parametrize("path", scenario_files(), ids=lambda p: p.stem)
def test_scenario(path: Path) -> None:
    failures = []
    for name, plan, wrong in run_file(path):
        failures += [f"{name}: {w}" for w in wrong]
        for decision in plan.decisions.values():  # rule 5: every decision says why
            assert decision.reason, f"{name}: {decision.node} has no reason"
    assert not failures, "\n".join(failures)


def test_every_scenario_of_the_brief_is_there() -> None:
    names = {p.stem for p in scenario_files()}
    assert {"formation", "wrong-order", "last-gone", "replaced", "partition"} <= names


def _stopped(node: str, since: float = 0.0) -> NodeReport:
    return NodeReport(node, "stopped", f"id-{node}", frozenset("abc"), since=since)


def test_the_wait_says_whom_it_waits_for_and_until_when() -> None:
    records = {"c": RunRecord("c", "id-c", frozenset("c"), 14)}
    reports = {"a": _stopped("a", 100), "b": _stopped("b", 105)}
    cluster = Cluster(("a", "b", "c"), reports, records, {"c": "fenced"})
    reason = decide(cluster, 101, Policy(force_boot_after=60)).decisions["a"].reason
    assert "c fenced" in reason and "160" in reason, reason


def test_a_minority_says_why_it_does_not_force_boot() -> None:
    records = {"c": RunRecord("c", "id-c", frozenset("c"), 14)}
    cluster = Cluster(
        ("a", "b", "c"), {"a": _stopped("a")}, records, {"c": "fenced", "b": "fenced"}
    )
    plan = decide(cluster, 10_000)
    assert plan.claim is None
    assert "minority never force-boots" in plan.decisions["a"].reason


def test_a_member_is_never_wiped_while_the_cluster_still_knows_it() -> None:
    """A stopped member with data rejoins with it (``start``), never ``reset``."""
    records = {"a": RunRecord("a", "id-a", frozenset("ab"), 3)}
    reports = {
        "a": NodeReport("a", "running", "id-a", frozenset("abc"), frozenset("ab")),
        "c": _stopped("c"),
    }
    plan = decide(Cluster(("a", "b", "c"), reports, records), 0)
    assert plan.decisions["c"].action == "start"
    assert not plan.decisions["c"].reset


def test_erlang_files_read_as_node_lists() -> None:
    assert (
        erlang_nodes((DATA / "cluster_nodes.config").read_text())
        == [["rabbit@a", "rabbit@b", "rabbit@c"]] * 2
    )
    assert erlang_nodes((DATA / "nodes_running_at_shutdown").read_text()) == [["rabbit@c"]]
    assert erlang_nodes("garbage") == []
