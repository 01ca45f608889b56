"""Properties of :func:`corral.core.galera.bootstrap.decide` over random reports: the rules of
its docstring hold for every input, not only for the transcripts' cases."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from corral.core.galera.bootstrap import Bootstrap, Join, Refuse, Wait, decide, known_position
from corral.core.galera.state import NIL_UUID, GraState, NodeState, Position, SavedView

NODES = ("n1", "n2", "n3", "n4", "n5")
World = tuple[tuple[str, ...], dict[str, NodeState], dict[str, str], list[str], float]
"""expected nodes, reports, gone, primary, now"""


@st.composite
def states(draw: st.DrawFn, node: str) -> NodeState:
    uuid = draw(st.sampled_from(["aaaa", "aaaa", "aaaa", "bbbb", NIL_UUID]))
    seqno = draw(st.integers(-1, 6))
    grastate = draw(st.none() | st.just(GraState(Position(uuid, seqno), draw(st.booleans()))))
    recovered = draw(st.none() | st.builds(Position, st.just(uuid), st.integers(-1, 6)))
    view = draw(
        st.none()
        | st.builds(
            SavedView,
            st.just(node),
            st.sampled_from(["3 r 4", "3 r 5", "3 s 5"]),
            st.just(frozenset()),
        )
    )
    return NodeState(node, grastate, recovered, view, draw(st.booleans()) and draw(st.booleans()))


@st.composite
def worlds(
    draw: st.DrawFn,
) -> World:
    expected = NODES[: draw(st.integers(1, len(NODES)))]
    reporting = draw(st.lists(st.sampled_from(expected), unique=True))
    reports = {n: draw(states(n)) for n in reporting}
    gone = {n: "fenced" for n in draw(st.lists(st.sampled_from(expected), unique=True))}
    primary = draw(st.lists(st.sampled_from(expected), unique=True, max_size=2))
    now = draw(st.sampled_from([0.0, 59.0, 61.0, 1000.0]))
    return expected, reports, gone, primary, now


@settings(max_examples=200, deadline=None)
@given(worlds())
def test_the_rules_hold(world: World) -> None:
    expected, reports, gone, primary, now = world
    got = decide(expected, reports, gone, primary, 0.0, now, 60.0)
    assert got.reason
    live_primary = [n for n in primary if n not in gone]
    if live_primary:
        assert isinstance(got, Join)
        assert not set(got.order) & (set(gone) | set(got.primary))
        return
    assert not isinstance(got, Join)
    if not isinstance(got, Bootstrap):
        return
    # never a gone node, never past an unknown node, never from a minority
    assert got.node not in gone and got.node in expected
    for node in expected:
        if node not in gone:
            assert node in reports and not isinstance(known_position(reports[node]), str)
    present = [n for n in expected if n not in gone]
    assert 2 * len(present) > len(expected) or not got.partial
    assert got.partial == bool(set(gone) & set(expected))
    if got.partial:
        assert now >= 60.0
    assert sorted((got.node, *got.join_order)) == sorted(present)
    # the highest position of the one history
    positions = [known_position(reports[n]) for n in present]
    seqnos = [p[0].seqno for p in positions if not isinstance(p, str) and p[0] is not None]
    uuids = {p[0].uuid for p in positions if not isinstance(p, str) and p[0] is not None}
    assert len(uuids) <= 1
    if seqnos:
        assert got.position.seqno == max(seqnos)
    else:
        assert got.node == present[0] and got.position.uuid == NIL_UUID


@settings(max_examples=100, deadline=None)
@given(worlds())
def test_report_order_does_not_matter(world: World) -> None:
    expected, reports, gone, primary, now = world
    one = decide(expected, reports, gone, primary, 0.0, now)
    other = decide(
        expected,
        dict(reversed(list(reports.items()))),
        dict(reversed(list(gone.items()))),
        list(reversed(primary)),
        0.0,
        now,
    )
    assert one == other


def test_refuse_and_wait_are_the_other_outcomes() -> None:
    """A smoke check that both appear (the transcripts pin their reasons)."""
    lone = {"n1": NodeState("n1", GraState(Position("aaaa", 3), True), None, None, False)}
    assert isinstance(decide(("n1", "n2"), lone, {}, (), 0.0, 0.0), Wait)
    assert isinstance(decide(("n1", "n2"), lone, {"n2": "fenced"}, (), 0.0, 100.0), Refuse)
    assert decide((), lone, {}, (), 0.0, 0.0) == Refuse("the resource has no nodes")
