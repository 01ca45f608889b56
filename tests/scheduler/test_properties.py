"""Property tests on random specs and snapshots: safety, eligibility, determinism, idempotence."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from corral.core.scheduler import (
    Action,
    FailCount,
    Instance,
    Maintenance,
    NodeStatus,
    Plan,
    Snapshot,
    apply_plan,
    schedule,
)
from corral.core.scheduler.scores import Context
from corral.spec import Spec, SpecError, load_spec_text

ROLES = ["a", "b"]


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    n_nodes = draw(st.integers(1, 5))
    nodes = {}
    for i in range(n_nodes):
        roles = draw(st.lists(st.sampled_from(ROLES), unique=True, max_size=2))
        nodes[f"n{i}"] = {
            "address": f"198.18.0.{10 + i}",
            "roles": roles or ["a"],
            "kind": "core" if i == 0 else "remote",
        }
    resources: dict[str, Any] = {}
    order = []
    fencing = draw(st.booleans())
    for j in range(draw(st.integers(1, 6))):
        name = f"r{j}"
        kind = draw(st.sampled_from(["aa", "ap", "promo", "vip", "vipset", "counted"]))
        body: dict[str, Any] = {"process": f"/bin/{name}"}
        if kind == "ap":
            body["mode"] = "active-passive"
        elif kind == "promo":
            body.update(mode="promotable", promoted=draw(st.integers(1, 2)))
        elif kind == "vip":
            body = {"vip": f"198.18.0.{100 + j}/24"}
        elif kind == "vipset":
            body = {
                "vip-set": [f"198.18.1.{10 * j + k}/16" for k in range(draw(st.integers(1, 4)))]
            }
        elif kind == "counted":
            body.update(instances=draw(st.integers(1, 3)), max_per_node=draw(st.integers(1, 2)))
        if draw(st.booleans()):
            body["on"] = {"role": draw(st.sampled_from(ROLES))}
        if draw(st.booleans()):
            body["prefer"] = {f"n{draw(st.integers(0, n_nodes - 1))}": draw(st.integers(-50, 200))}
        if j and draw(st.integers(0, 3)) == 0:
            body["with"] = [f"r{draw(st.integers(0, j - 1))}"]
        elif j and draw(st.integers(0, 3)) == 0:
            body["apart"] = [f"r{draw(st.integers(0, j - 1))}"]
        body["failure"] = {"migration_threshold": draw(st.integers(1, 3)), "failure_timeout": 100}
        resources[name] = body
        if j and draw(st.integers(0, 2)) == 0:
            arrow = draw(st.sampled_from(["->", "~>"]))
            order.append(f"r{draw(st.integers(0, j - 1))} {arrow} {name}")
    doc = {"cluster": "prop", "nodes": nodes, "resources": resources, "order": order}
    if fencing:
        doc["fencing"] = {"power": {"agent": "fence_lab"}}
    import yaml

    try:
        return load_spec_text(yaml.safe_dump(doc))
    except SpecError:
        assume(False)
        raise


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Spec, Snapshot]:
    spec = draw(specs())
    names = list(spec.nodes)
    nodes = {
        n: NodeStatus(
            state=draw(st.sampled_from(["online", "online", "online", "unclean", "offline"])),
            standby=draw(st.integers(0, 5)) == 0,
            maintenance=draw(st.integers(0, 8)) == 0,
        )
        for n in names
    }
    instances = []
    failures = {}
    bans = set()
    for rname, res in spec.resources.items():
        items = [str(a.ip) for a in res.vip_set.addresses] if res.vip_set else [None]
        for node in names:
            for item in items:
                if draw(st.integers(0, 2)) == 0:
                    instances.append(
                        Instance(
                            rname,
                            node,
                            role=draw(st.sampled_from(["started", "promoted"]))
                            if res.mode == "promotable"
                            else "started",
                            health=draw(st.sampled_from(["healthy", "healthy", "unhealthy"])),
                            item=item,
                            score=draw(st.none() | st.integers(0, 20)),
                        )
                    )
            if draw(st.integers(0, 5)) == 0:
                failures[(rname, node)] = FailCount(
                    draw(st.integers(1, 4)), draw(st.floats(0, 200))
                )
            if draw(st.integers(0, 8)) == 0:
                bans.add((rname, node))
    maint = Maintenance(
        cluster=draw(st.integers(0, 20)) == 0,
        resources=frozenset(r for r in spec.resources if draw(st.integers(0, 10)) == 0),
        instances=frozenset(
            (i.resource, i.node) for i in instances if draw(st.integers(0, 10)) == 0
        ),
    )
    snap = Snapshot(
        now=150.0,
        quorum=draw(st.integers(0, 5)) != 0,
        nodes=nodes,
        instances=tuple(instances),
        failures=failures,
        maintenance=maint,
        bans=frozenset(bans),
        wait_for_all=frozenset(r for r in spec.resources if draw(st.integers(0, 4)) == 0),
    )
    return spec, snap


SETTINGS = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)


def _holders(spec: Spec, snap: Snapshot, name: str) -> dict[str | None, list[Instance]]:
    res = spec.resources[name]
    out: dict[str | None, list[Instance]] = {}
    for inst in snap.instances:
        if inst.resource != name or snap.node(inst.node).state == "offline":
            continue
        if res.mode == "promotable" and inst.role != "promoted":
            continue
        out.setdefault(inst.item if res.kind == "vip-set" else None, []).append(inst)
    return out


@SETTINGS
@given(scenarios())
def test_never_a_new_second_holder_of_an_exclusive_instance(
    scenario: tuple[Spec, Snapshot],
) -> None:
    spec, snap = scenario
    after = apply_plan(snap, schedule(spec, snap))
    for name, res in spec.resources.items():
        if not res.exclusive:
            continue
        limit = (res.promoted or 1) if res.mode == "promotable" else 1
        before = _holders(spec, snap, name)
        for item, holders in _holders(spec, after, name).items():
            old = {(i.node) for i in before.get(item, [])}
            new = [i for i in holders if i.node not in old]
            if new:  # anything newly started must not make a second holder
                assert len(holders) <= limit, (name, item, holders, before.get(item))


@SETTINGS
@given(scenarios())
def test_no_instance_where_it_may_not_run(scenario: tuple[Spec, Snapshot]) -> None:
    spec, snap = scenario
    ctx = Context(spec, snap)
    plan = schedule(spec, snap)
    for inst in plan.target():
        if ctx.frozen(inst.resource, inst.node):
            continue  # maintenance leaves instances exactly where they are
        status = snap.node(inst.node)
        assert status.state == "online" and not status.standby, inst
        assert (inst.resource, inst.node) not in snap.bans, inst
        if ctx.banned_by_failures(inst.resource, inst.node) is not None:
            # only the liveness rule places it where its failure policy bans it (when the
            # placement that keeps every failure ban found no node at all)
            reasons = plan.decisions[inst.resource].reasons
            assert any("(liveness rule)" in r for r in reasons), (inst, reasons)
        assert inst.node in ctx.static_nodes(inst.resource), inst


@SETTINGS
@given(scenarios(), st.randoms(use_true_random=False))
def test_deterministic(scenario: tuple[Spec, Snapshot], rnd: random.Random) -> None:
    spec, snap = scenario
    shuffled = list(snap.instances)
    rnd.shuffle(shuffled)
    first = schedule(spec, snap)
    second = schedule(spec, replace(snap, instances=tuple(shuffled)))
    assert first.actions == second.actions
    assert [d.target for d in first.decisions.values()] == [
        d.target for d in second.decisions.values()
    ]


@SETTINGS
@given(scenarios())
def test_idempotent(scenario: tuple[Spec, Snapshot]) -> None:
    """Scheduling the state a plan leads to asks for nothing more, with one designed
    exception: a VIP goes where what it goes with (HAProxy) serves now, so one whose home or
    share is on a node where the plan starts HAProxy starts or stays where HAProxy serves and
    moves there on the next plan (golden cases ``os-node-back-vip-goes-where-haproxy-serves``,
    ``lb-failback``, ``converges_in: 2``). Then the plan after that one is empty, and the
    second plan holds only moves of VIPs to nodes where the first started or restarted what
    they go with."""
    spec, snap = scenario
    plan = schedule(spec, snap)
    after = apply_plan(snap, plan)
    again = schedule(spec, after)
    if again.actions and all(_follows_its_partner(spec, plan, a) for a in again.actions):
        again = schedule(spec, apply_plan(after, again))
    assert not again.actions, [str(a) for a in again.actions]


def _follows_its_partner(spec: Spec, plan: Plan, action: Action) -> bool:
    """``action`` moves a VIP to a node where ``plan`` started or restarted a partner."""
    partners = spec.resources[action.resource].with_
    return (
        action.kind == "move"
        and action.item is not None
        and any(
            a.kind in ("start", "restart") and a.node == action.to and a.resource in partners
            for a in plan.actions
        )
    )


@pytest.mark.parametrize("quorum", [True, False])
def test_no_quorum_starts_nothing_exclusive(quorum: bool) -> None:
    spec = load_spec_text(
        "cluster: q\nnodes:\n  n1: {address: 198.18.0.1}\n  n2: {address: 198.18.0.2, kind: remote}\n"
        "resources:\n  ap: {process: /bin/ap, mode: active-passive}\n  aa: {process: /bin/aa}\n"
    )
    plan = schedule(spec, Snapshot(quorum=quorum))
    started = {(a.resource, a.node) for a in plan.actions if a.kind == "start"}
    assert ("aa", "n1") in started and ("aa", "n2") in started
    assert (("ap", "n1") in started) is quorum
