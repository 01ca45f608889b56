"""YAML to plain Python values, with the position of every value, refusing hostile input.

Why not ``yaml.safe_load``: it forgets positions, silently keeps the last of duplicate keys,
reads ``on``/``yes``/``no`` as booleans (YAML 1.1), and expands alias bombs. Here:

- positions: ``Positions`` maps a path (tuple of keys and indexes) to ``(line, column)``, both
  1-based, of the value (or, for keys, see ``key_positions``);
- keys are always the string as written; scalar *values* are resolved by YAML rules except that
  only ``true``/``false`` are booleans (``on``, ``yes``, ``no`` stay strings);
- duplicate keys, several documents, a non-mapping document, more than ``MAX_NODES`` values
  (after alias expansion), nesting deeper than ``MAX_DEPTH``, files over ``MAX_BYTES``, NUL
  bytes and invalid UTF-8 are refused with a :class:`YamlProblem` naming the line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

MAX_BYTES = 1 << 20  # 1 MiB: a spec for thousands of nodes fits in well under this
MAX_NODES = 200_000  # values after alias expansion; stops billion-laughs style bombs
MAX_DEPTH = 64  # nesting; PyYAML's composer (and ours) recurse: [[[[... would overflow the stack

Path = tuple[str | int, ...]


class YamlProblem(Exception):
    """Input that is not a usable YAML mapping; ``line``/``column`` are 1-based (0 = unknown).
    A syntax error also carries ``source`` (the text of ``line``) and, when the parser knows
    where the construct it gave up in began (an unclosed ``[``, ``{`` or quote, a block that a
    bad indent broke), ``opened``: (what, line, column, text of that line)."""

    def __init__(
        self,
        message: str,
        line: int = 0,
        column: int = 0,
        source: str = "",
        opened: tuple[str, int, int, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column
        self.source = source
        self.opened = opened


# PyYAML's context ("while parsing a flow sequence") -> what we tell the operator about the
# place it marks (where the construct began).
_OPENED = {
    "while parsing a flow sequence": "the list '[' that opened here is not closed",
    "while parsing a flow mapping": "the mapping '{' that opened here is not closed",
    "while scanning a quoted scalar": "the quoted string that opened here is not closed",
    "while parsing a block mapping": "the mapping this belongs in starts here (check the indent)",
    "while parsing a block collection": "the list this belongs in starts here (check the indent)",
}


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with a nesting limit: its composer recurses once per level, so
    a few hundred ``[`` would end in a RecursionError (found by fuzzing)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise YamlProblem(
                    f"nested more than {MAX_DEPTH} levels deep; refusing to read it",
                    mark.line + 1,
                    mark.column + 1,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _line_text(text: str, line: int) -> str:
    """The text of 1-based ``line`` (stripped of its end, cut to 120 characters), "" past the
    end."""
    lines = text.splitlines()
    return lines[line - 1].rstrip()[:120] if 0 < line <= len(lines) else ""


def syntax_problem(exc: yaml.MarkedYAMLError, text: str) -> YamlProblem:
    """A :class:`YamlProblem` for PyYAML's syntax error: where the parser gave up, and where
    the construct it was reading began when that is another place. PyYAML reports an unclosed
    ``[`` where it stopped (often the end of the file); the opening is what to fix."""
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
    opened = None
    start = exc.context_mark
    if start is not None and (start.line + 1, start.column + 1) == (line, col):
        start = None  # the same place: nothing more to say
    if exc.problem and exc.context and start is not None:
        what = _OPENED.get(exc.context, f"{exc.context} (started here)")
        at = start.line + 1
        opened = (what, at, start.column + 1, _line_text(text, at))
    message = f"YAML syntax: {exc.problem or exc.context}"
    if exc.problem and exc.problem.startswith("expected <block end>"):
        message = f"YAML syntax: bad indentation ({exc.problem})"
    if line > len(text.splitlines()):
        message += " (at the end of the file)"
    return YamlProblem(message, line, col, _line_text(text, line), opened)


@dataclass
class Positions:
    """Where each value of the document was written."""

    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def find(self, path: Path) -> tuple[int, int]:
        """Position of ``path``, or of its nearest written ancestor (a missing field is reported
        where its parent mapping starts)."""
        probe = tuple(path)
        while probe:
            if probe in self.keys:
                return self.keys[probe]
            if probe in self.values:
                return self.values[probe]
            probe = probe[:-1]
        return self.values.get((), (1, 1))


def load_yaml(text: str | bytes) -> tuple[dict[str, Any], Positions]:
    """Parse one YAML mapping document; see the module docstring for what is refused."""
    if isinstance(text, bytes):
        text = _decode(text)
    if len(text) > MAX_BYTES:
        raise YamlProblem(f"file is {len(text):,} characters; a spec may be at most {MAX_BYTES:,}")
    if "\x00" in text:
        raise YamlProblem(
            "contains NUL bytes (is this a binary file?)",
            text[: text.index("\x00")].count("\n") + 1,
        )
    try:
        documents = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        raise syntax_problem(exc, text) from None
    except yaml.YAMLError as exc:
        raise YamlProblem(f"YAML: {exc}") from None
    if not documents or documents[0] is None:
        raise YamlProblem("the file is empty; a spec is a mapping starting with 'cluster:'", 1, 1)
    if len(documents) > 1:
        second = documents[1]
        line = second.start_mark.line + 1 if second is not None else 0
        raise YamlProblem("a spec is one YAML document; found another one", line)
    root = documents[0]
    if not isinstance(root, yaml.MappingNode):
        raise YamlProblem(
            f"the top level must be a mapping (cluster:, nodes:, resources:, ...), "
            f"not a {_kind(root)}",
            root.start_mark.line + 1,
            root.start_mark.column + 1,
        )
    positions = Positions()
    budget = [MAX_NODES]
    value = _convert(root, (), positions, budget)
    assert isinstance(value, dict)
    return value, positions


def _decode(data: bytes) -> str:
    if len(data) > MAX_BYTES:
        raise YamlProblem(f"file is {len(data):,} bytes; a spec may be at most {MAX_BYTES:,}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise YamlProblem("not UTF-8 text (is this a binary file?)", line) from None


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.SequenceNode):
        return "list"
    if isinstance(node, yaml.MappingNode):
        return "mapping"
    return "scalar"


def _convert(node: yaml.Node, path: Path, pos: Positions, budget: list[int]) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise YamlProblem(
            f"more than {MAX_NODES:,} values (after expanding aliases); refusing to read it",
            node.start_mark.line + 1,
        )
    if len(path) > MAX_DEPTH:  # aliases nest too: a chain of them, or one inside itself
        raise YamlProblem(
            f"nested more than {MAX_DEPTH} levels deep (after expanding aliases); "
            "refusing to read it",
            node.start_mark.line + 1,
            node.start_mark.column + 1,
        )
    pos.values.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise YamlProblem(
                    "mapping keys must be plain names",
                    key_node.start_mark.line + 1,
                    key_node.start_mark.column + 1,
                )
            key = key_node.value
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise YamlProblem(
                    "merge keys (<<) are not supported; write the fields out",
                    key_node.start_mark.line + 1,
                    key_node.start_mark.column + 1,
                )
            if key in out:
                first = pos.keys[(*path, key)]
                raise YamlProblem(
                    f"duplicate key {key!r} (first written on line {first[0]})",
                    key_node.start_mark.line + 1,
                    key_node.start_mark.column + 1,
                )
            pos.keys[(*path, key)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            out[key] = _convert(value_node, (*path, key), pos, budget)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*path, i), pos, budget) for i, item in enumerate(node.value)]
    return _scalar(node)


def _scalar(node: yaml.Node) -> Any:
    tag, text = node.tag, node.value
    if tag == "tag:yaml.org,2002:null":
        return None
    if tag == "tag:yaml.org,2002:bool":
        lowered = text.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        return text  # on/off/yes/no stay strings: the YAML 1.1 boolean trap
    if tag == "tag:yaml.org,2002:int":
        try:
            return int(text.replace("_", ""), 0)
        except ValueError:
            return text
    if tag == "tag:yaml.org,2002:float":
        try:
            return float(text.replace("_", ""))
        except ValueError:
            return text
    return text
