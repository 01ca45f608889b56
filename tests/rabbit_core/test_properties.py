"""Properties of the RabbitMQ decisions over generated histories (hypothesis).

A history: run records, then a sequence of rounds, each with some nodes reporting (in any
state), some gone, and time moving on; the force-boot claim is written the way the records
shell writes it (only when no claim of that outage exists: compare absent). Whatever happens:

- at most one node force-boots per outage (DESIGN rule 6), and never another than the claim's;
- a node outside the last-running set never starts first while a member of that set may come
  back (is neither gone nor replaced);
- with spent claims trimmed between rounds and new run records written, still one
  force-booting node per outage, and a trimmed outage is never claimed again.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from corral.core.rabbit import (
    BrokerState,
    Cluster,
    ForceBootClaim,
    NodeReport,
    Policy,
    RunRecord,
    decide,
    replaced,
)
from corral.records.rabbit import RabbitKeys, RabbitState, spent_claims
from corral.store import Keys

NODES = ("a", "b", "c", "d", "e")
STATES: tuple[BrokerState, ...] = ("running", "starting", "paused", "stopped")
OUTAGE_STATES: tuple[BrokerState, ...] = ("stopped", "stopped", "stopped", "starting", "running")


@st.composite
def reports(draw: st.DrawFn, nodes: tuple[str, ...]) -> dict[str, NodeReport]:
    out = {}
    for node in draw(st.lists(st.sampled_from(nodes), unique=True)):
        state = draw(st.sampled_from(STATES))
        fresh = state != "running" and draw(st.booleans())
        members = (
            frozenset() if fresh else frozenset(draw(st.sets(st.sampled_from(nodes))) | {node})
        )
        running = frozenset(draw(st.sets(st.sampled_from(nodes))) | {node})
        out[node] = NodeReport(
            node,
            state,
            "" if fresh else draw(st.sampled_from([f"id-{node}", f"new-{node}"])),
            members,
            running if state == "running" else frozenset(),
            draw(st.floats(0, 500)),
        )
    return out


@st.composite
def records(draw: st.DrawFn, nodes: tuple[str, ...]) -> dict[str, RunRecord]:
    chosen = draw(st.lists(st.sampled_from(nodes), unique=True))
    seqs = draw(
        st.lists(st.integers(1, 100), min_size=len(chosen), max_size=len(chosen), unique=True)
    )
    return {
        n: RunRecord(n, f"id-{n}", frozenset(draw(st.sets(st.sampled_from(nodes))) | {n}), seq)
        for n, seq in zip(chosen, seqs, strict=True)
    }


@st.composite
def histories(
    draw: st.DrawFn,
) -> tuple[
    tuple[str, ...], dict[str, RunRecord], list[tuple[dict[str, NodeReport], dict[str, str], float]]
]:
    nodes = NODES[: draw(st.integers(1, 5))]
    recs = draw(records(nodes))
    rounds = []
    now = 0.0
    for _ in range(draw(st.integers(1, 6))):
        now += draw(st.floats(0, 400))
        gone = {
            n: draw(st.sampled_from(["fenced", "removed"]))
            for n in draw(st.sets(st.sampled_from(nodes)))
        }
        rounds.append((draw(reports(nodes)), gone, now))
    return nodes, recs, rounds


@settings(max_examples=150, deadline=None)
@given(histories())
def test_never_two_force_boots_in_one_outage(history) -> None:  # type: ignore[no-untyped-def]
    nodes, recs, rounds = history
    claims: dict[int, ForceBootClaim] = {}
    booted: dict[int, set[str]] = {}
    for reps, gone, now in rounds:
        plan = decide(
            Cluster(nodes, reps, recs, gone, claim=claims.get(_outage(recs))), now, Policy(100)
        )
        fb = [d.node for d in plan.decisions.values() if d.action == "force_boot"]
        assert len(fb) <= 1, plan
        if plan.claim is not None:
            assert plan.claim.outage not in claims, "a second claim for one outage"
            claims[plan.claim.outage] = plan.claim  # compare absent: it was
            assert fb == [plan.claim.node]
        if fb:
            assert plan.outage is not None and claims[plan.outage].node == fb[0]
            booted.setdefault(plan.outage, set()).update(fb)
    assert all(len(n) == 1 for n in booted.values()), booted


def _outage(recs: dict[str, RunRecord]) -> int:
    return max((r.seq for r in recs.values()), default=0)


@settings(max_examples=150, deadline=None)
@given(histories())
def test_never_start_first_outside_the_last_running_set(history) -> None:  # type: ignore[no-untyped-def]
    nodes, recs, rounds = history
    for reps, gone, now in rounds:
        cluster = Cluster(nodes, reps, recs, gone)
        plan = decide(cluster, now, Policy(100))
        if plan.outage is None or not recs:
            continue
        lrs = plan.last_running
        may_return = [n for n in lrs if n in nodes and n not in gone and not replaced(cluster, n)]
        for d in plan.decisions.values():
            if d.node not in lrs and may_return:
                assert d.action not in ("start_first", "force_boot"), (d, may_return)


@st.composite
def outages(
    draw: st.DrawFn,
) -> tuple[
    tuple[str, ...], dict[str, RunRecord], list[tuple[dict[str, NodeReport], dict[str, str], float]]
]:
    """Histories of an outage where force-boots come due: every node has data and a run
    record, the nodes that report are mostly stopped, the others often fenced."""
    nodes = NODES[: draw(st.integers(3, 5))]
    seqs = draw(st.permutations(range(1, len(nodes) + 1)))
    recs = {
        n: RunRecord(
            n, f"id-{n}", frozenset(draw(st.sets(st.sampled_from(nodes), min_size=2)) | {n}), seq
        )
        for n, seq in zip(nodes, seqs, strict=True)
    }
    rounds, now = [], 0.0
    for _ in range(draw(st.integers(2, 8))):
        now += draw(st.sampled_from((0.0, 60.0, 150.0)))  # Policy(100): due, or not yet
        out = {}
        for n in draw(st.sets(st.sampled_from(nodes), min_size=len(nodes) // 2)):
            state: BrokerState = draw(st.sampled_from(OUTAGE_STATES))
            up = frozenset({n}) if state == "running" else frozenset()
            out[n] = NodeReport(n, state, f"id-{n}", frozenset(nodes), up, 0.0)
        others = [n for n in nodes if n not in out]
        fenced = others if draw(st.booleans()) else draw(st.sets(st.sampled_from(nodes)))
        rounds.append((out, {n: "fenced" for n in fenced if n not in out}, now))
    return nodes, recs, rounds


@settings(max_examples=60, deadline=None)  # the suite's budget: fewer than its siblings'
@given(
    outages(), st.lists(st.tuples(st.integers(0, 4), st.integers(1, 30)), min_size=2, max_size=8)
)
def test_trimming_spent_claims_never_lets_an_outage_force_boot_twice(  # type: ignore[no-untyped-def]
    history, writes
) -> None:
    """With the controller's trim between rounds (:func:`corral.records.rabbit.spent_claims`)
    and new run records written now and then (a higher ``seq`` each: store revisions), every
    outage still has at most one force-booting node, and a trimmed outage is never claimed
    again (rule 6)."""
    nodes, recs, rounds = history
    recs = dict(recs)
    rkeys = RabbitKeys(Keys("c1"), "mq")
    claims: dict[int, ForceBootClaim] = {}
    trimmed: set[int] = set()
    booted: dict[int, set[str]] = {}
    for i, (reps, gone, now) in enumerate(rounds):
        plan = decide(
            Cluster(nodes, reps, recs, gone, claim=claims.get(_outage(recs))), now, Policy(100)
        )
        if plan.claim is not None:
            assert plan.claim.outage not in claims and plan.claim.outage not in trimmed
            claims[plan.claim.outage] = plan.claim
        for d in plan.decisions.values():
            if d.action == "force_boot":
                assert plan.outage is not None and plan.outage not in trimmed
                booted.setdefault(plan.outage, set()).add(d.node)
        if i < len(writes):  # a serving node writes its run record: a newer seq
            index, step = writes[i]
            node = nodes[index % len(nodes)]
            running = frozenset({node})
            recs[node] = RunRecord(node, f"id-{node}", running, _outage(recs) + step)
        by_key = {rkeys.claim(o): o for o in claims}
        for key in spent_claims(rkeys, RabbitState(records=recs, claims=dict(claims))):
            trimmed.add(by_key[key])
            del claims[by_key[key]]
        assert _outage(recs) not in trimmed  # the current outage's claim is never trimmed
    assert all(len(n) == 1 for n in booted.values()), booted
