"""Reading the scenario files of tests/rabbit_core/data (YAML, written for these tests).

A file: ``nodes``, ``records``, ``gone``, ``force_boot_after``, ``forget_fenced_after`` and
``steps``; a step may override any of them and gives ``reports``, ``now``, ``claimed`` (the
claim in the store), ``expect`` (node -> ``"<action> [node...] [until N] [reset] [regrow]"``)
and ``claims`` (the node the plan claims, or null; absent: not checked).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from corral.core.rabbit import (
    Cluster,
    Decision,
    ForceBootClaim,
    NodeReport,
    Plan,
    Policy,
    RunRecord,
    decide,
)

DATA = Path(__file__).with_name("data")


def scenario_files() -> list[Path]:
    return sorted(DATA.glob("*.yaml"))


def _reports(raw: Mapping[str, Any]) -> dict[str, NodeReport]:
    return {
        node: NodeReport(
            node,
            r["state"],
            r.get("identity", ""),
            frozenset(r.get("members", ())),
            frozenset(r.get("running", ())),
            float(r.get("since", 0)),
        )
        for node, r in raw.items()
    }


def _records(raw: Mapping[str, Any]) -> dict[str, RunRecord]:
    return {
        node: RunRecord(node, r.get("identity", f"id-{node}"), frozenset(r["running"]), r["seq"])
        for node, r in raw.items()
    }


def step_inputs(doc: Mapping[str, Any], step: Mapping[str, Any]) -> tuple[Cluster, float, Policy]:
    """The cluster, ``now`` and policy of one step (the step's values over the file's)."""

    def get(name: str, default: Any) -> Any:
        return step.get(name, doc.get(name, default))

    claimed = get("claimed", None)
    cluster = Cluster(
        tuple(get("nodes", [])),
        _reports(step.get("reports", {})),
        _records(get("records", {})),
        dict(get("gone", {})),
        {n: 0.0 for n in get("gone", {})},
        ForceBootClaim(claimed["outage"], claimed["node"], 0.0, "claimed before")
        if claimed
        else None,
    )
    policy = Policy(float(get("force_boot_after", 120)), get("forget_fenced_after", None))
    return cluster, float(step.get("now", 0)), policy


def describe(decision: Decision) -> str:
    """A decision in the expectation syntax."""
    words: list[str] = [decision.action]
    if decision.peer is not None:
        words.append(decision.peer)
    elif decision.action == "wait":
        words.extend(decision.waiting_for)
    if decision.until is not None:
        words.append(f"until {decision.until:g}")
    words += [w for w, on in (("reset", decision.reset), ("regrow", decision.regrow)) if on]
    return " ".join(words)


def matches(expected: str, decision: Decision) -> bool:
    """``decision`` says ``expected`` (a bare ``wait`` matches any wait)."""
    if expected == "wait":
        return decision.action == "wait"
    return describe(decision) == expected


def run_file(path: Path) -> Iterator[tuple[str, Plan, list[str]]]:
    """(step name, plan, mismatches) for every step of ``path``."""
    doc = yaml.safe_load(path.read_text())
    for step in doc["steps"]:
        cluster, now, policy = step_inputs(doc, step)
        plan = decide(cluster, now, policy)
        wrong = []
        for node, expected in step["expect"].items():
            got = plan.decisions.get(node)
            if got is None or not matches(str(expected), got):
                wrong.append(f"{node}: expected {expected!r}, got {got and describe(got)!r}")
        extra = set(plan.decisions) - set(step["expect"])
        wrong += [f"{node}: an unexpected decision" for node in sorted(extra)]
        if "claims" in step:
            got_claim = plan.claim.node if plan.claim is not None else None
            if got_claim != step["claims"]:
                wrong.append(f"claim: expected {step['claims']}, got {got_claim}")
        yield step["name"], plan, wrong
