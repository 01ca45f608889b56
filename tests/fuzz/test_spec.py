"""Operator YAML: the spec and the state file (``corral simulate --state``). Whatever the
bytes, the only error is :class:`SpecError`, and each of its issues names a place."""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from corral.core.scheduler import load_state_text
from corral.spec import SpecError, load_spec_text
from tests.fuzz.budget import fuzz, mutated

ROOT = Path(__file__).resolve().parents[2]
SPECS = [ROOT / "examples" / "openstack.yaml", *sorted((ROOT / "tests/scheduler/specs").glob("*"))]
SPEC_SEEDS = [p.read_bytes() for p in SPECS]
OPENSTACK = load_spec_text(SPEC_SEEDS[0])
STATE_SEEDS = [(ROOT / "examples" / "openstack-state.yaml").read_bytes()]


def refused_or_valid(load: object, data: bytes | str) -> None:
    try:
        load(data)  # type: ignore[operator]
    except SpecError as exc:
        assert exc.issues
        for issue in exc.issues:
            assert issue.message and str(issue).startswith("f.yaml")
            assert issue.line >= 0 and issue.column >= 0


def load_spec(data: bytes | str) -> None:
    load_spec_text(data, "f.yaml")


def load_state(data: bytes | str) -> None:
    load_state_text(data, OPENSTACK, "f.yaml")


# The mutation strategies are in budget.py; YAML is text, so also cut and splice lines.
@st.composite
def line_edits(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed with lines dropped, repeated, swapped or re-indented: the edits an operator
    makes by mistake."""
    lines = draw(st.sampled_from(seeds)).split(b"\n")
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["drop", "repeat", "swap", "indent", "dedent", "cut"]))
        if op == "drop":
            del lines[i]
        elif op == "repeat":
            lines.insert(i, lines[i])
        elif op == "swap" and i + 1 < len(lines):
            lines[i], lines[i + 1] = lines[i + 1], lines[i]
        elif op == "indent":
            lines[i] = b" " * draw(st.integers(1, 5)) + lines[i]
        elif op == "dedent":
            lines[i] = lines[i].lstrip()
        elif op == "cut":
            lines[i] = lines[i][: draw(st.integers(0, max(0, len(lines[i]) - 1)))]
        if not lines:
            lines = [b""]
    return b"\n".join(lines)


@fuzz(150)
@given(st.one_of(mutated(SPEC_SEEDS), line_edits(SPEC_SEEDS)))
@example(b"cluster: c\nnodes: [a, b\n")
@example(b'cluster: "c\n')
def test_mutated_specs_are_valid_or_refused_with_places(data: bytes) -> None:
    refused_or_valid(load_spec, data)


@fuzz(150)
@given(st.one_of(mutated(STATE_SEEDS), line_edits(STATE_SEEDS)))
@example(b"nodes: {ctl1: [unclean\n")
@example(b"   \n\t")
def test_mutated_state_files_are_read_or_refused_with_places(data: bytes) -> None:
    refused_or_valid(load_state, data)


@fuzz(100)
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300)))
def test_random_state_files_are_read_or_refused(data: bytes | str) -> None:
    refused_or_valid(load_state, data)


STATEISH = st.dictionaries(
    st.sampled_from(["now", "quorum", "nodes", "instances", "failures", "maintenance", "bans"])
    | st.sampled_from(["moves", "tickets", "wait_for_all", "x"]),
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats()
        | st.sampled_from(["ctl1", "keystone@ctl1", "api-vips[198.18.0.100]@ctl1", "unclean"]),
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(
                st.sampled_from(["ctl1", "keystone@ctl1", "state", "count", "role", "@", "["]),
                inner,
                max_size=3,
            )
        ),
        max_leaves=12,
    ),
    max_size=5,
)


@fuzz(150)
@given(STATEISH)
def test_state_files_of_any_shape_are_read_or_refused(doc: object) -> None:
    refused_or_valid(load_state, yaml.safe_dump(doc))
