"""A YAML syntax error names where the parser gave up *and* where the construct it was
reading opened: an unclosed ``[`` is reported at the end of the file by PyYAML, but what to
fix is the ``[``."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from corral.cli.main import cli
from corral.core.scheduler import load_state_text
from corral.spec import SpecError, load_spec_text

HEAD = "cluster: c\nnodes:\n  n1: {address: 198.18.0.1}\n"


def refused(text: str) -> str:
    try:
        load_spec_text(text, "s.yaml")
    except SpecError as exc:
        assert len(exc.issues) == 1
        return str(exc.issues[0])
    raise AssertionError("accepted")


def test_an_unclosed_list_names_its_opening_bracket() -> None:
    said = refused(HEAD + "resources:\n  web: {process: /bin/web, on: [n1, n2}\n")
    assert said.splitlines()[0].startswith("s.yaml:5:")
    assert "s.yaml:5:32: the list '[' that opened here is not closed" in said
    assert "   5 |   web: {process: /bin/web, on: [n1, n2}" in said


def test_an_unclosed_list_at_the_end_of_the_file() -> None:
    said = refused(HEAD + "order: [a -> b\n")
    lines = said.splitlines()
    assert lines[0] == (
        "s.yaml:5:1: YAML syntax: expected ',' or ']', but got '<stream end>' "
        "(at the end of the file)"
    )
    assert lines[1:] == [
        "  s.yaml:4:8: the list '[' that opened here is not closed",
        "       4 | order: [a -> b",
    ]


def test_an_unclosed_mapping_names_its_opening_brace() -> None:
    said = refused("cluster: c\nnodes:\n  n1: {address: 198.18.0.1\n  n2: {address: x}\n")
    assert said.splitlines()[:2] == [
        "s.yaml:4:5: YAML syntax: expected ',' or '}', but got ':'",
        "       4 |   n2: {address: x}",
    ]
    assert "s.yaml:3:7: the mapping '{' that opened here is not closed" in said
    assert "       3 |   n1: {address: 198.18.0.1" in said


def test_an_unclosed_quote_names_where_it_opened() -> None:
    said = refused(HEAD + 'resources:\n  web: {process: "/bin/web}\n  db: {process: /bin/db}\n')
    assert "(at the end of the file)" in said.splitlines()[0]
    assert "s.yaml:5:18: the quoted string that opened here is not closed" in said
    assert '       5 |   web: {process: "/bin/web}' in said


def test_a_bad_indent_names_the_block_it_broke() -> None:
    said = refused(HEAD + "resources:\n  web:\n    process: /bin/web\n   health: {tcp: 80}\n")
    assert said.splitlines()[:2] == [
        "s.yaml:7:4: YAML syntax: bad indentation (expected <block end>, but found "
        "'<block mapping start>')",
        "       7 |    health: {tcp: 80}",
    ]
    assert "s.yaml:5:3: the mapping this belongs in starts here (check the indent)" in said


def test_a_state_file_says_the_same() -> None:
    spec = load_spec_text(HEAD)
    try:
        load_state_text("bans: [web@n1\nnow: 3\n", spec, "st.yaml")
    except SpecError as exc:
        assert "st.yaml:1:7: the list '[' that opened here is not closed" in str(exc)
    else:
        raise AssertionError("accepted")


def test_validate_prints_both_places(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(HEAD + "order: [a -> b\n")
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 1
    assert f"{path}:4:8: the list '[' that opened here is not closed" in result.output
    assert "4 | order: [a -> b" in result.output


def test_one_line_form_for_events() -> None:
    try:
        load_spec_text(HEAD + "order: [a -> b\n", "store:spec")
    except SpecError as exc:
        assert exc.issues[0].one_line() == (
            "store:spec:5:1: YAML syntax: expected ',' or ']', but got '<stream end>' (at the end "
            "of the file); store:spec:4:8: the list '[' that opened here is not closed"
        )
    else:
        raise AssertionError("accepted")
