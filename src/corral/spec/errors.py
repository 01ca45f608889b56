"""Spec errors that name the file, line, column and field path of every problem."""

from __future__ import annotations

from dataclasses import dataclass

from corral.spec.yamlpos import Path


def format_path(path: Path) -> str:
    """``("resources", "k", "health", 0, "interval")`` -> ``resources.k.health[0].interval``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out or "(top level)"


def _where(file: str, line: int, column: int) -> str:
    return f"{file}:{line}:{column}" if line else file


def _quoted(line: int, source: str) -> str:
    """``source`` (the text of ``line``) as shown under a message: ``    12 | text``."""
    return f"\n    {line:>4} | {source}" if source else ""


@dataclass(frozen=True)
class SpecNote:
    """A second place that explains an issue (where an unclosed ``[`` opened), in the
    issue's file. ``source`` is the text of that line (shown under the note)."""

    message: str
    line: int
    column: int
    source: str = ""


@dataclass(frozen=True)
class SpecIssue:
    """One problem in a spec. ``line``/``column`` are 1-based; 0 when unknown. ``source``:
    the text of ``line`` when it helps to show it (YAML syntax errors); ``notes``: other
    places that explain the problem, each shown on its own lines below it."""

    message: str
    path: Path = ()
    line: int = 0
    column: int = 0
    file: str = "<spec>"
    source: str = ""
    notes: tuple[SpecNote, ...] = ()

    def __str__(self) -> str:
        out = self._head() + _quoted(self.line, self.source)
        for note in self.notes:
            out += f"\n  {_where(self.file, note.line, note.column)}: {note.message}"
            out += _quoted(note.line, note.source)
        return out

    def _head(self) -> str:
        field = f" {format_path(self.path)}:" if self.path else ""
        return f"{_where(self.file, self.line, self.column)}:{field} {self.message}"

    def one_line(self) -> str:
        """The issue on one line, notes after ``;`` without the lines' text (for events)."""
        notes = [f"{_where(self.file, n.line, n.column)}: {n.message}" for n in self.notes]
        return "; ".join([self._head(), *notes])


class SpecError(Exception):
    """A spec was refused. ``issues`` holds every problem found, in file order."""

    def __init__(self, issues: list[SpecIssue]) -> None:
        self.issues = sorted(issues, key=lambda i: (i.line, i.column))
        count = len(self.issues)
        head = f"spec refused: {count} problem{'s' if count != 1 else ''}"
        super().__init__("\n".join([head, *(f"  {i}" for i in self.issues)]))
