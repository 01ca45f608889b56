"""Systemic failures as the store records them (:mod:`corral.core.systemic` decides).

:func:`judge_failures` gathers every node's listed failures of each resource from the
``failcounts/`` records, has the core judge them, and returns the records rewritten with the
failures newly judged systemic moved out of their counts (the controller writes each with a
compare-and-swap) and the episodes open now. :func:`with_judged` is the records as the
scheduler must see them in the same step: a systemic failure never bans, not even for the
one step before its record is rewritten.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from corral.core.systemic import Episode, Failure, judge_all
from corral.records.agent import FailCountRecord
from corral.records.store import StoreRecords, states
from corral.spec import Spec


@dataclass(frozen=True)
class Judged:
    """``excused``: (node, resource) -> its failure record with the failures newly judged
    systemic moved out of ``count``; ``episodes``: resource -> its episode open now."""

    excused: dict[tuple[str, str], FailCountRecord]
    episodes: dict[str, Episode]


def judge_failures(spec: Spec, records: StoreRecords, now: float) -> Judged:
    """Judge every resource's listed failures at ``now`` (wall seconds), against its online
    nodes (:func:`corral.core.systemic.scope`)."""
    online = [n for n, state in states(spec, records).items() if state == "online"]
    listed: dict[str, list[Failure]] = {}
    for (node, res), record in records.failcounts.items():
        if record.recent:
            rows = listed.setdefault(res, [])
            rows += (Failure(r.at, node, r.systemic) for r in record.recent)
    verdicts = judge_all(spec, listed, online, now)
    excused: dict[tuple[str, str], FailCountRecord] = {}
    for res, verdict in verdicts.items():
        times: dict[str, set[float]] = {}
        for node, at in verdict.new:
            times.setdefault(node, set()).add(at)
        for node, ats in times.items():
            excused[(node, res)] = records.failcounts[(node, res)].excuse(ats)
    episodes = {r: v.episode for r, v in verdicts.items() if v.episode is not None}
    return Judged(excused, episodes)


def with_judged(records: StoreRecords, judged: Judged) -> StoreRecords:
    """``records`` with the failure records of ``judged`` in place of those read."""
    return replace(records, failcounts={**records.failcounts, **judged.excused})
