"""The parsers of Galera's state files, on files our own real servers left
(tests/galera/fixtures, captured by capture_fixtures.py) and on hostile text."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.core.galera.files import (
    GaleraFileError,
    marked_safe_to_bootstrap,
    node_state,
    parse_grastate,
    parse_gvwstate,
    parse_recovered,
)
from corral.core.galera.state import NodeState, Position

FIXTURES = Path(__file__).with_name("fixtures")
NODES = ("db1", "db2", "db3")


def _text(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


def scenario(name: str) -> dict[str, NodeState]:
    """Each node's report in a captured scenario, as the driver's inspect() builds it."""
    reports = {}
    for node in NODES:
        where = FIXTURES / name / node
        reports[node] = node_state(
            node,
            grastate=_text(where / "grastate.dat"),
            gvwstate=_text(where / "gvwstate.dat"),
            recover_log=_text(where / "recover.log"),
        )
    return reports


def test_a_formed_cluster_while_it_runs_saves_no_position_and_one_shared_view() -> None:
    reports = scenario("formed")
    uuids = {r.grastate.position.uuid for r in reports.values() if r.grastate}
    assert len(uuids) == 1
    for report in reports.values():
        assert report.grastate is not None and report.grastate.position.seqno == -1
        assert not report.grastate.safe_to_bootstrap
        assert report.view is not None and len(report.view.members) == 3
    assert len({r.view.view_id for r in reports.values() if r.view}) == 1
    # each node saved its own identity, a member of the view
    mine = {r.view.my_uuid for r in reports.values() if r.view}
    assert len(mine) == 3
    assert all(r.view.my_uuid in r.view.members for r in reports.values() if r.view)


def test_a_clean_stop_saves_positions_and_marks_only_the_last_one_safe() -> None:
    reports = scenario("clean-stop")
    seqnos = {n: r.grastate.position.seqno for n, r in reports.items() if r.grastate}
    safe = [n for n, r in reports.items() if r.grastate and r.grastate.safe_to_bootstrap]
    assert all(s >= 0 for s in seqnos.values())
    assert safe == [max(seqnos, key=lambda n: seqnos[n])]  # stopped last, most advanced
    assert all(r.view is None for r in reports.values())  # a clean stop removes gvwstate
    assert all(r.recovered is None for r in reports.values())  # nothing to recover


def test_after_kill9_of_all_the_positions_come_from_recovery_and_agree() -> None:
    reports = scenario("kill9-all")
    for report in reports.values():
        assert report.grastate is not None and report.grastate.position.seqno == -1
        assert not report.grastate.safe_to_bootstrap
        assert report.recovered is not None and report.recovered.seqno > 0
        assert report.recovered.uuid == report.grastate.position.uuid
    assert len({r.recovered for r in reports.values()}) == 1
    assert len({r.view.view_id for r in reports.values() if r.view}) == 1


def test_one_node_dead_earlier_is_behind_and_kept_an_older_view() -> None:
    reports = scenario("one-dead-earlier")
    recovered = {n: r.recovered for n, r in reports.items()}
    assert all(p is not None for p in recovered.values())
    seq = {n: p.seqno for n, p in recovered.items() if p is not None}
    assert seq["db3"] < min(seq["db1"], seq["db2"])  # it missed the later writes
    assert all(not r.grastate.safe_to_bootstrap for r in reports.values() if r.grastate)
    views = {n: r.view for n, r in reports.items() if r.view}
    assert views["db1"].view_id == views["db2"].view_id != views["db3"].view_id
    assert len(views["db1"].members) == 2 and len(views["db3"].members) == 3


GRASTATE = """# GALERA saved state
version: 2.1
uuid:    9acf4d34-acdb-11e6-bcc3-d3e36276629f
seqno:   15
safe_to_bootstrap: 1
"""


def test_grastate_of_an_older_provider_without_safe_to_bootstrap_is_not_safe() -> None:
    text = GRASTATE.replace("safe_to_bootstrap: 1\n", "")
    assert parse_grastate(text).safe_to_bootstrap is False
    assert parse_grastate(GRASTATE).position == Position("9acf4d34-acdb-11e6-bcc3-d3e36276629f", 15)


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        (GRASTATE.replace("seqno:   15", "seqno:   x"), "grastate.dat:4", "seqno 'x'"),
        (GRASTATE.replace("seqno:   15", "seqno:   -2"), "grastate.dat:4", "out of range"),
        (GRASTATE.replace("9acf4d34-", "zz"), "grastate.dat:3", "not a UUID"),
        (GRASTATE.replace("uuid", "uid"), "grastate.dat", "no 'uuid' line"),
        (GRASTATE.replace("safe_to_bootstrap: 1", "safe_to_bootstrap: yes"), ":5", "not 0 or 1"),
        (GRASTATE + "seqno: 16\n", "grastate.dat:6", "'seqno' given twice"),
        (GRASTATE + "garbage\n", "grastate.dat:6", "expected 'key: value'"),
        ("", "grastate.dat", "no 'uuid' line"),
    ],
)
def test_a_malformed_grastate_is_refused_naming_the_line(
    text: str, where: str, problem: str
) -> None:
    with pytest.raises(GaleraFileError) as caught:
        parse_grastate(text)
    assert where in str(caught.value) and problem in str(caught.value)


def test_malformed_gvwstate_and_recovery_logs_are_refused_naming_the_problem() -> None:
    view = (FIXTURES / "formed" / "db1" / "gvwstate.dat").read_text()
    cases = [
        (view.replace("view_id: 3 ", "view_id: "), "is not '<type> <uuid> <seq>'"),
        ("\n".join(line for line in view.splitlines() if "member" not in line), "without members"),
        (view.replace("my_uuid", "your_uuid"), "no 'my_uuid' line"),
        (view + "my_uuid: " + view.split()[1] + "\n", "'my_uuid' given twice"),
    ]
    for text, problem in cases:
        with pytest.raises(GaleraFileError, match=problem):
            parse_gvwstate(text)
    log = (FIXTURES / "kill9-all" / "db1" / "recover.log").read_text()
    without = "\n".join(line for line in log.splitlines() if "Recovered position" not in line)
    with pytest.raises(GaleraFileError, match="no 'WSREP: Recovered position' line"):
        parse_recovered(without)
    with pytest.raises(GaleraFileError, match="seqno"):
        parse_recovered(re.sub(r"(Recovered position: \S+):(\d+)", r"\1:x\2", log))


def test_a_recovered_position_with_a_gtid_suffix_is_read() -> None:
    line = "2026-12-03 1 [Note] WSREP: Recovered position: 9acf4d34-acdb-11e6-bcc3-d3e36276629f:42,0-1-42"
    assert parse_recovered(line) == Position("9acf4d34-acdb-11e6-bcc3-d3e36276629f", 42)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_no_text_crashes_a_parser(text: str) -> None:
    for parse in (parse_grastate, parse_gvwstate, parse_recovered):
        try:
            parse(text)
        except GaleraFileError as exc:
            assert exc.source and exc.problem


_LINES = sorted(
    {
        line
        for path in FIXTURES.rglob("*")
        if path.is_file() and path.suffix == ".dat"
        for line in path.read_text().splitlines()
    }
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(_LINES),
            st.sampled_from(_LINES).map(lambda line: line[: len(line) // 2]),
            st.text(max_size=40),
        ),
        max_size=12,
    )
)
def test_real_lines_shuffled_cut_and_mixed_with_noise_give_a_record_or_a_clear_error(
    lines: list[str],
) -> None:
    text = "\n".join(lines)
    for parse in (parse_grastate, parse_gvwstate):
        try:
            parse(text)
        except GaleraFileError as exc:
            assert exc.line >= 0 and exc.problem


def test_marking_a_grastate_safe_changes_that_line_only() -> None:
    text = (FIXTURES / "kill9-all" / "db1" / "grastate.dat").read_text()
    marked = marked_safe_to_bootstrap(text)
    assert parse_grastate(marked).safe_to_bootstrap
    assert parse_grastate(marked).position == parse_grastate(text).position
    assert [line for line in marked.splitlines() if "safe_to_bootstrap" not in line] == [
        line for line in text.splitlines() if "safe_to_bootstrap" not in line
    ]
    older = text.replace("safe_to_bootstrap: 0\n", "")  # a provider that wrote no such line
    assert parse_grastate(marked_safe_to_bootstrap(older)).safe_to_bootstrap
    with pytest.raises(GaleraFileError, match="seqno"):
        marked_safe_to_bootstrap(text.replace("seqno:   -1", "seqno: ?"))
