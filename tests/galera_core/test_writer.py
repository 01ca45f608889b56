"""The one writer (:func:`corral.core.galera.writer.choose_writer`): examples of each rule, and
properties over random histories of readiness (never flaps, always a ready node)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from corral.core.galera.writer import WriterChoice, choose_writer

NODES = ("ctl1", "ctl2", "ctl3")


def test_the_first_ready_node_becomes_the_writer() -> None:
    got = choose_writer(None, NODES, {"ctl3", "ctl2"})
    assert got == WriterChoice("ctl2", True, "ctl2 becomes the writer: there was no writer")


def test_it_stays_while_ready_and_does_not_move_back() -> None:
    assert choose_writer("ctl3", NODES, set(NODES)) == WriterChoice(
        "ctl3", False, "ctl3 stays the writer (ready)"
    )
    lost = choose_writer("ctl1", NODES, {"ctl2", "ctl3"})
    assert lost == WriterChoice("ctl2", True, "ctl2 becomes the writer: ctl1 is not ready")
    assert choose_writer("ctl2", NODES, set(NODES)).node == "ctl2"  # ctl1 is back: no move


def test_a_planned_stop_moves_it_before_the_stop() -> None:
    got = choose_writer("ctl1", NODES, set(NODES), stopping={"ctl1"})
    assert got == WriterChoice("ctl2", True, "ctl2 becomes the writer: ctl1 is stopping")
    alone = choose_writer("ctl1", NODES, {"ctl1"}, stopping={"ctl1"})
    assert alone == WriterChoice(
        "ctl1", False, "ctl1 is stopping but no other node is ready: it stays"
    )
    only_stopping = choose_writer("ctl1", NODES, {"ctl3"}, stopping={"ctl3"})
    assert only_stopping.node == "ctl3" and only_stopping.changed


def test_no_ready_node_leaves_the_record_alone() -> None:
    got = choose_writer("ctl2", NODES, set())
    assert got == WriterChoice(
        "ctl2", False, "no node is ready: writes fail until one is; the record keeps ctl2"
    )
    assert choose_writer(None, NODES, set()) == WriterChoice(
        None, False, "no node is ready: writes fail until one is"
    )


def test_nodes_outside_the_resource_are_never_chosen() -> None:
    assert choose_writer(None, NODES, {"lb9"}).node is None


steps = st.lists(
    st.tuples(st.frozensets(st.sampled_from(NODES)), st.frozensets(st.sampled_from(NODES))),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(steps)
def test_a_history_of_readiness(history: list[tuple[frozenset[str], frozenset[str]]]) -> None:
    writer: str | None = None
    for ready, stopping in history:
        got = choose_writer(writer, NODES, ready, stopping)
        assert got.changed == (got.node != writer)
        if ready:  # a writer is always a ready node when one exists
            assert got.node in ready
            if ready - stopping:
                assert got.node not in stopping
        if writer in ready and writer not in stopping:  # never changes while it stays ready
            assert got.node == writer
        if got.changed:  # it moved only because the old one was lost or stopping
            assert writer is None or writer not in ready or writer in stopping
        writer = got.node
        # choosing again changes nothing, whatever the order of the sets
        assert choose_writer(writer, NODES, set(reversed(sorted(ready))), stopping).node == writer
