"""Systemic failures (corral.core.systemic), table-tested on the pure judgement: the share and
its edge, the window and its edge, later failures that make earlier ones systemic, a resource
on one node at a time (its first node's failures stay counted; a chain keeps it where it
runs), episodes that start and end, and the sliding window held to its definition."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from corral.core.systemic import (
    Episode,
    Failure,
    Policy,
    end_text,
    judge,
    judge_all,
    needed,
    policy_of,
    scope,
    start_text,
    transitions,
)
from corral.spec import load_spec_text

MULTI = Policy(share=0.5, window=60.0)
SINGLE = Policy(share=0.5, window=60.0, single=True)


def fails(*pairs: tuple[str, float]) -> list[Failure]:
    return [Failure(at, node) for node, at in pairs]


def new(failures: list[Failure], size: int, policy: Policy, now: float = 100.0) -> set[str]:
    """The failures newly judged systemic, as ``node@time``."""
    verdict = judge(failures, size, policy, now)
    return {f"{node}@{at:g}" for node, at in verdict.new}


def test_needed_is_more_than_the_share_and_at_least_two() -> None:
    rows = {
        (1, 0.5): None,  # one node failing alone is that node's failure
        (2, 0.5): 2,
        (3, 0.5): 2,
        (4, 0.5): 3,  # half is not more than half
        (5, 0.5): 3,
        (10, 0.5): 6,
        (3, 0.1): 2,  # never fewer than two
        (3, 0.9): 3,
        (5, 0.6): 4,
        (0, 0.5): None,
        (100, 0.29): 30,  # 0.29 * 100 is just under 29 in floating point
    }
    assert {key: needed(*key) for key in rows} == rows


def test_two_of_three_nodes_within_the_window_are_systemic_one_is_not() -> None:
    assert new(fails(("n1", 10), ("n2", 20)), 3, MULTI) == {"n1@10", "n2@20"}
    assert new(fails(("n1", 10), ("n1", 20), ("n1", 30)), 3, MULTI) == set()


def test_the_share_edge_half_of_four_is_not_most() -> None:
    two = fails(("n1", 10), ("n2", 11))
    assert new(two, 4, MULTI) == set()
    assert new([*two, Failure(12, "n3")], 4, MULTI) == {"n1@10", "n2@11", "n3@12"}
    assert new(two, 4, Policy(share=0.4, window=60)) == {"n1@10", "n2@11"}  # 2 > 1.6


def test_the_window_includes_both_ends_and_nothing_beyond() -> None:
    assert new(fails(("n1", 10), ("n2", 70)), 3, MULTI) == {"n1@10", "n2@70"}
    assert new(fails(("n1", 10), ("n2", 70.001)), 3, MULTI) == set()
    assert new(fails(("n1", 10), ("n2", 70)), 3, Policy(window=59.999)) == set()


def test_a_later_failure_makes_the_first_nodes_systemic_but_not_an_older_one() -> None:
    """Several nodes at once: the first to fail is not more to blame than the others."""
    listed = fails(("n1", 0), ("n1", 45), ("n2", 100))
    assert new(listed, 3, MULTI, now=100) == {"n1@45", "n2@100"}


def test_failures_judged_before_stay_and_are_not_new() -> None:
    marked = [Failure(10, "n1", True), Failure(20, "n2", True), Failure(25, "n2")]
    verdict = judge(marked, 3, MULTI, 30)
    assert verdict.new == {("n2", 25)}
    # the nodes gone: nothing new, the marks hold and so does the episode
    gone = judge(marked, 1, MULTI, 30)
    assert gone.new == set() and gone.episode == Episode(10, ("n1", "n2"), 1)
    # the rule turned off (window 0): nothing new, and the episode is over (said once)
    off = judge(marked, 3, Policy(window=0), 30)
    assert off.new == set() and off.episode is None


def test_two_failures_at_one_time_on_one_node_are_judged_alike() -> None:
    listed = [Failure(10, "n1", True), Failure(10, "n1"), Failure(12, "n2", True)]
    assert judge(listed, 3, MULTI, 20).new == {("n1", 10)}


def test_one_node_at_a_time_its_first_node_counts_the_next_is_systemic() -> None:
    """Failing on its first node moves it (counted); failing again on the node it moved to
    within the window is systemic: 2 of 3 nodes tried."""
    first = fails(("n1", 0), ("n1", 1), ("n1", 2))
    assert new(first, 3, SINGLE, now=2) == set()
    assert new([*first, Failure(10, "n2")], 3, SINGLE, now=10) == {"n2@10"}
    # a multi-node resource would make n1's failures systemic too (its ban would go)
    assert new([*first, Failure(10, "n2")], 3, MULTI, now=10) == {
        "n1@0",
        "n1@1",
        "n1@2",
        "n2@10",
    }


def test_one_node_at_a_time_the_chain_keeps_it_where_it_runs_until_a_quiet_window() -> None:
    listed = fails(("n1", 0), ("n2", 10), ("n2", 40), ("n2", 100), ("n2", 160), ("n2", 221))
    assert new(listed, 3, SINGLE, now=221) == {"n2@10", "n2@40", "n2@100", "n2@160"}
    # n2 failing alone after n1 left the window, without the chain: counted
    alone = fails(("n1", 0), ("n2", 61))
    assert new(alone, 3, SINGLE, now=61) == set()


def test_one_node_at_a_time_on_five_nodes_three_must_be_tried() -> None:
    two = fails(("n1", 0), ("n2", 10))
    assert new(two, 5, SINGLE, now=10) == set()
    assert new([*two, Failure(20, "n3")], 5, SINGLE, now=20) == {"n3@20"}


def test_an_episode_is_open_until_a_window_passes_after_its_last_failure() -> None:
    listed = [Failure(0, "n3"), *fails(("n1", 100), ("n2", 105), ("n1", 130))]
    open_at = judge(listed, 3, MULTI, 190).episode
    assert open_at == Episode(100, ("n1", "n2"), 3)  # n3's failure is too old to belong
    assert judge(listed, 3, MULTI, 190.001).episode is None
    # a gap of more than a window between systemic failures starts a new episode
    later = [*listed, *fails(("n2", 300), ("n3", 301))]
    assert judge(later, 3, MULTI, 310).episode == Episode(300, ("n2", "n3"), 3)


def test_an_episode_of_a_single_resource_names_the_nodes_it_was_tried_on() -> None:
    listed = fails(("n1", 0), ("n1", 2), ("n2", 10))
    assert judge(listed, 3, SINGLE, 20).episode == Episode(10, ("n1", "n2"), 3)


def test_transitions_start_once_and_end_once() -> None:
    ep = Episode(10, ("n1", "n2"), 3)
    assert transitions({"web": ep}, {}) == ({"web": ep}, [])
    assert transitions({"web": ep}, {"web": ep}) == ({}, [])
    assert transitions({}, {"web": ep, "gone": ep}) == ({}, ["gone", "web"])


def test_the_events_say_what_happened_and_what_follows() -> None:
    ep = Episode(1_700_000_000, ("n1", "n2"), 3)
    assert start_text("web", ep, MULTI) == (
        "resource web failed on 2 of 3 nodes (n1, n2) within 1m: a systemic failure "
        "(overload or a dependency down); not counted per node, no ban"
    )
    assert start_text("db", ep, SINGLE).endswith("; it stays where it runs, restarted in place")
    assert end_text("web", ep, MULTI) == (
        "resource web: the systemic failure since 2023-11-14 22:13:20 UTC is over (not failing "
        "on most of its nodes for 1m); failures count per node again"
    )
    assert "not in the spec" in end_text("web", ep, None)


SPEC = load_spec_text(
    """
cluster: t
nodes:
  n1: {address: 198.18.0.1, roles: [api]}
  n2: {address: 198.18.0.2, roles: [api]}
  n3: {address: 198.18.0.3, roles: [api]}
  n4: {address: 198.18.0.4, kind: remote}
defaults:
  failure: {systemic_window: 2m}
resources:
  web: {process: /bin/web, on: {role: api}}
  two: {process: /bin/two, instances: 2}
  db: {process: /bin/db, mode: active-passive, failure: {systemic_share: 0.7}}
  vips: {vip-set: [198.18.0.100/24, 198.18.0.101/24]}
"""
)


def test_scope_counts_the_online_nodes_it_may_run_on_capped_by_its_instances() -> None:
    online = ["n1", "n2", "n3", "n4"]
    assert scope(SPEC, "web", online) == (frozenset({"n1", "n2", "n3"}), 3)
    assert scope(SPEC, "web", ["n1", "n4"]) == (frozenset({"n1", "n2", "n3"}), 1)
    assert scope(SPEC, "two", online)[1] == 2
    assert scope(SPEC, "vips", online)[1] == 2  # one node per VIP
    assert scope(SPEC, "db", online)[1] == 4  # one at a time: every node it may be tried on


def test_the_policy_comes_from_the_resource_with_its_defaults() -> None:
    assert policy_of(SPEC.resources["web"]) == Policy(0.5, 120.0, single=False)
    assert policy_of(SPEC.resources["db"]) == Policy(0.7, 120.0, single=True)
    assert policy_of(SPEC.resources["vips"]).single is False


def test_judge_all_judges_within_scope_and_skips_what_left_the_spec() -> None:
    listed = {
        "web": fails(("n1", 10), ("n4", 11)),  # n4 may not run web: not a node of it
        "gone": fails(("n1", 10), ("n2", 11)),
        "two": fails(("n1", 10), ("n2", 11)),
    }
    verdicts = judge_all(SPEC, listed, ["n1", "n2", "n3", "n4"], now=20)
    assert set(verdicts) == {"web", "two"}
    assert verdicts["web"].new == set()
    assert verdicts["two"].new == {("n1", 10), ("n2", 11)}  # both of its two nodes


def in_some_window(listed: list[Failure], failure: Failure, count: int, window: float) -> bool:
    """The definition, by brute force: some window of ``window`` seconds holds ``failure``
    and failures on ``count`` distinct nodes."""
    for start in (f.at for f in listed):
        if start <= failure.at <= start + window:
            nodes = {f.node for f in listed if start <= f.at <= start + window}
            if len(nodes) >= count:
                return True
    return False


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["n1", "n2", "n3", "n4", "n5"]), st.integers(0, 300)),
        max_size=25,
    ),
    st.integers(2, 5),
    st.sampled_from([0.3, 0.5, 0.8]),
)
def test_the_sliding_window_agrees_with_the_definition(
    pairs: list[tuple[str, int]], size: int, share: float
) -> None:
    listed = [Failure(float(at), node) for node, at in pairs]
    count = needed(size, share)
    verdict = judge(listed, size, Policy(share, 60.0), now=0)
    want = set()
    if count is not None:
        want = {f.key for f in listed if in_some_window(listed, f, count, 60.0)}
    assert verdict.new == want
