"""Hostile input is refused quickly, with a clear message, and never with a traceback."""

from __future__ import annotations

import os
import time
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from corral.spec import SpecError, load_spec, load_spec_text


def refused(text: str | bytes) -> SpecError:
    try:
        load_spec_text(text, "evil.yaml")
    except SpecError as exc:
        return exc
    raise AssertionError("hostile input was accepted")


def test_alias_bomb_is_refused_quickly() -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        prev, cur = chr(96 + i), chr(97 + i)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    start = time.monotonic()
    exc = refused("\n".join(lines))
    assert time.monotonic() - start < 5
    assert "after expanding aliases" in str(exc)


def test_huge_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with open(big, "wb") as handle:
        handle.truncate(50 * 1024 * 1024)
    start = time.monotonic()
    try:
        load_spec(big)
    except SpecError as exc:
        assert "52,428,800 bytes" in str(exc)
        assert str(exc.issues[0]).startswith(str(big))
    else:
        raise AssertionError("accepted")
    assert time.monotonic() - start < 1


def test_binary_garbage() -> None:
    exc = refused(os.urandom(4096) + b"\xff\xfe")
    assert "binary" in str(exc) or "YAML" in str(exc)


def test_nul_bytes() -> None:
    assert "NUL" in str(refused("cluster: c\nnodes: \x00\n"))


def test_non_mapping_documents() -> None:
    assert "must be a mapping" in str(refused("- a\n- b\n"))
    assert "must be a mapping" in str(refused("just a string\n"))
    assert "empty" in str(refused(""))
    assert "one YAML document" in str(refused("cluster: a\n---\ncluster: b\n"))


def test_missing_file(tmp_path: Path) -> None:
    try:
        load_spec(tmp_path / "nope.yaml")
    except SpecError as exc:
        assert "cannot read" in str(exc)
        assert "nope.yaml" in str(exc)
    else:
        raise AssertionError("accepted")


def test_wrong_types_everywhere() -> None:
    exc = refused("cluster: [1]\nnodes: 5\nresources: text\n")
    text = str(exc)
    assert "evil.yaml:1:" in text and "cluster" in text
    assert "evil.yaml:2:" in text and "nodes" in text
    assert "evil.yaml:3:" in text and "resources" in text


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=512), st.text(max_size=512)))
def test_random_input_only_ever_raises_spec_error(data: bytes | str) -> None:
    try:
        load_spec_text(data)
    except SpecError as exc:
        assert exc.issues
        assert all(isinstance(issue.message, str) and issue.message for issue in exc.issues)


YAMLISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.sampled_from(
                ["cluster", "nodes", "resources", "vip", "mode", "on", "health", "order", "n1"]
            ),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(YAMLISH)
def test_random_structures_only_ever_raise_spec_error(doc: object) -> None:
    import yaml

    try:
        load_spec_text(yaml.safe_dump(doc))
    except SpecError as exc:
        assert exc.issues
