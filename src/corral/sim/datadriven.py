"""Data-driven test files in the style of etcd-io/raft's ``testdata/*.txt``.

A file is a sequence of blocks separated by blank lines. A block is optional ``#`` comment
lines, one command line, a ``----`` line, and the expected output (no blank lines inside)::

    # a crashed node is detected
    crash n3
    ----
    ok

:func:`run_file` executes every command in order and either compares outputs or, with
``update``, rewrites the file with the actual outputs (review the diff before committing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SEPARATOR = "----"


@dataclass(frozen=True, slots=True)
class Block:
    comments: tuple[str, ...]
    command: str
    expected: str
    line: int
    """1-based line number of the command (for failure messages)."""


def parse(text: str) -> list[Block]:
    """Split ``text`` into blocks; raises ``ValueError`` on a block without ``----``."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        comments: list[str] = []
        while i < len(lines) and (not lines[i].strip() or lines[i].startswith("#")):
            if lines[i].startswith("#"):
                comments.append(lines[i])
            i += 1
        if i >= len(lines):
            break
        command, line = lines[i], i + 1
        i += 1
        if i >= len(lines) or lines[i] != SEPARATOR:
            raise ValueError(f"line {line}: command {command!r} is not followed by {SEPARATOR}")
        i += 1
        out: list[str] = []
        while i < len(lines) and lines[i].strip():
            out.append(lines[i])
            i += 1
        blocks.append(Block(tuple(comments), command, "\n".join(out), line))
    return blocks


def render(blocks: list[tuple[Block, str]]) -> str:
    """The file text for ``blocks`` with the given outputs."""
    parts = []
    for block, output in blocks:
        head = "\n".join([*block.comments, block.command, SEPARATOR])
        parts.append(f"{head}\n{output}\n" if output else f"{head}\n")
    return "\n".join(parts)


def run_file(path: Path, execute: Callable[[str], str], update: bool) -> list[str]:
    """Run every block of ``path``; returns the mismatches (empty when all outputs match).

    An exception from ``execute`` is recorded as the block's output (``error: ...``) and the
    remaining blocks still run, so one broken expectation does not hide the rest.
    """
    blocks = parse(path.read_text())
    results: list[tuple[Block, str]] = []
    mismatches: list[str] = []
    for block in blocks:
        try:
            output = execute(block.command).rstrip("\n")
        except Exception as exc:  # the transcript shows it; the caller fails the test
            output = f"error: {type(exc).__name__}: {exc}"
            mismatches.append(f"{path.name}:{block.line}: {block.command}\n{output}")
        results.append((block, output))
        if output != block.expected and not update:
            mismatches.append(
                f"{path.name}:{block.line}: {block.command}\n"
                f"--- expected\n{block.expected}\n+++ actual\n{output}"
            )
    if update:
        path.write_text(render(results))
    return mismatches
