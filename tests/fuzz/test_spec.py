"""Operator YAML: the spec and the state file (``corral simulate --state``). Whatever the
bytes, the only error is :class:`SpecError`, and each of its issues names a place."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from corral.core.scheduler import load_state_text
from corral.spec import SpecError, load_spec_text
from corral.spec.yamlpos import load_yaml
from tests.fuzz.budget import fuzz, mutated, tree_mutated

ROOT = Path(__file__).resolve().parents[2]
SPECS = [ROOT / "examples" / "openstack.yaml", *sorted((ROOT / "tests/scheduler/specs").glob("*"))]
SPEC_SEEDS = [p.read_bytes() for p in SPECS]
OPENSTACK = load_spec_text(SPEC_SEEDS[0])
STATE_SEEDS = [(ROOT / "examples" / "openstack-state.yaml").read_bytes()]


def refused_or_valid(load: object, data: bytes | str) -> None:
    try:
        with warnings.catch_warnings():
            # ipaddress warns when it is handed a bool: a value read as what it is not
            warnings.simplefilter("error", DeprecationWarning)
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
# Found by reasoning about the fuzz results (mutations do not nest 300 deep): RecursionError
@example(b"a: " + b"[" * 100_000)  # in PyYAML's composer
@example(b"a: &a [*a]\n")  # an alias inside itself, in our conversion
@example(b"".join(b"k%d: &a%d [[[[[[[[[[*a%d]]]]]]]]]]\n" % (i, i + 1, i) for i in range(90)))
def test_mutated_specs_are_valid_or_refused_with_places(data: bytes) -> None:
    refused_or_valid(load_spec, data)


@fuzz(150)
@given(st.one_of(mutated(STATE_SEEDS), line_edits(STATE_SEEDS)))
@example(b"nodes: {ctl1: [unclean\n")
@example(b"nodes: &a {ctl1: *a}\n")
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


# load_yaml, not yaml.safe_load: that reads the key `on:` as True
SPEC_DOCS = [load_yaml(seed)[0] for seed in SPEC_SEEDS]
STATE_DOCS = [load_yaml(seed)[0] for seed in STATE_SEEDS]


def _openstack_with(value: object, where: str) -> dict[str, Any]:
    doc = copy.deepcopy(SPEC_DOCS[0])
    if where == "node":
        doc["nodes"]["ctl1"]["address"] = value
    elif where == "vip-set":
        doc["resources"]["api-vips"]["vip-set"][0] = value
    elif where == "interval":
        doc["defaults"]["health"]["interval"] = value
    else:
        doc.setdefault("timing", {})[where] = value
    return doc


@fuzz(150)
@given(tree_mutated(SPEC_DOCS))
@example(_openstack_with(True, "node"))  # was accepted as the address 0.0.0.1
@example(_openstack_with(False, "vip-set"))  # was read as the VIP 0.0.0.0/32
@example(_openstack_with("9" * 400 + "s", "lease_ttl"))  # inf seconds: OverflowError escaped
@example(_openstack_with("9" * 400 + "s", "interval"))  # an infinite interval was accepted
@example(_openstack_with(10**400, "interval"))  # OverflowError (CORRAL_FUZZ=long found it)
@example(_openstack_with(-(10**400), "interval"))
def test_structurally_mutated_specs_are_valid_or_refused(doc: object) -> None:
    """Valid YAML of the wrong shape reaches pydantic and the cross-reference checks."""
    refused_or_valid(load_spec, yaml.safe_dump(doc))


@fuzz(150)
@given(tree_mutated(STATE_DOCS))
def test_structurally_mutated_state_files_are_read_or_refused(doc: object) -> None:
    refused_or_valid(load_state, yaml.safe_dump(doc))


def test_numbers_and_booleans_are_not_addresses() -> None:
    """Found by fuzzing: pydantic reads ``true`` as the address 0.0.0.1 and an integer as an
    IPv4 address; a node's address of ``true`` was accepted."""
    for value in (True, False, 3232235777, 1.5):
        for where in ("node", "vip-set"):
            try:
                load_spec_text(yaml.safe_dump(_openstack_with(value, where)), "f.yaml")
            except SpecError as exc:
                assert len(exc.issues) == 1
                assert f"an IP address is written as text (like 198.18.0.11), not {value!r}" in (
                    str(exc.issues[0])
                )
            else:
                raise AssertionError(f"{where} {value!r} accepted")


def test_durations_beyond_a_hundred_years_are_refused() -> None:
    """Found by fuzzing: 400 nines of seconds is an infinite float; as a lease TTL it
    escaped the loader as an OverflowError, as a check interval it was accepted."""
    for where in ("interval", "lease_ttl"):
        for value in ("9" * 400 + "s", "36501d", 1e308 * 10, 10**400, -(10**400)):
            try:
                load_spec_text(yaml.safe_dump(_openstack_with(value, where)), "f.yaml")
            except SpecError as exc:
                assert any(
                    w in str(exc) for w in ("too long (at most 36500d)", "invalid", "negative")
                )
            else:
                raise AssertionError(f"{where} {value!r} accepted")


def test_a_state_file_time_is_finite() -> None:
    """Found by fuzzing: ``now: 1.0e+400`` read as an infinite clock."""
    for text in ("now: 1.0e+400\n", "failures: {keystone@ctl1: {count: 1, last: -1.0e+400}}\n"):
        try:
            load_state_text(text, OPENSTACK, "f.yaml")
        except SpecError as exc:
            assert "finite number" in str(exc)
        else:
            raise AssertionError(f"accepted {text!r}")
