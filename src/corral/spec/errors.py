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


@dataclass(frozen=True)
class SpecIssue:
    """One problem in a spec. ``line``/``column`` are 1-based; 0 when unknown."""

    message: str
    path: Path = ()
    line: int = 0
    column: int = 0
    file: str = "<spec>"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        field = f" {format_path(self.path)}:" if self.path else ""
        return f"{where}:{field} {self.message}"


class SpecError(Exception):
    """A spec was refused. ``issues`` holds every problem found, in file order."""

    def __init__(self, issues: list[SpecIssue]) -> None:
        self.issues = sorted(issues, key=lambda i: (i.line, i.column))
        count = len(self.issues)
        head = f"spec refused: {count} problem{'s' if count != 1 else ''}"
        super().__init__("\n".join([head, *(f"  {i}" for i in self.issues)]))
