"""Load a spec from a file or text: YAML with positions -> pydantic -> cross-reference checks.

Contract: :func:`load_spec` returns a valid :class:`Spec` or raises :class:`SpecError` holding
*every* problem found, each with file, line, column and field path. It never raises anything
else for bad input (hostile YAML, binary files, huge files, wrong types).

Problems come in two phases, like a compiler's: structural ones (wrong types, unknown fields,
bad values) are all reported together; cross-reference checks (unknown names, cycles, subnets)
run only on a structurally valid spec, and are then all reported together.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import ValidationError

from corral.spec.checks import check_spec
from corral.spec.errors import SpecError, SpecIssue, SpecNote
from corral.spec.model import Spec
from corral.spec.yamlpos import MAX_BYTES, Path, Positions, YamlProblem, load_yaml


def load_spec(path: str | os.PathLike[str]) -> Spec:
    """Read and validate the spec file at ``path``."""
    name = os.fspath(path)
    try:
        size = os.path.getsize(name)
        if size > MAX_BYTES:
            raise SpecError(
                [
                    SpecIssue(
                        f"file is {size:,} bytes; a spec may be at most {MAX_BYTES:,}", file=name
                    )
                ]
            )
        with open(name, "rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise SpecError([SpecIssue(f"cannot read: {exc.strerror or exc}", file=name)]) from None
    return load_spec_text(data, name)


def load_spec_text(text: str | bytes, file: str = "<spec>") -> Spec:
    """Validate spec ``text``; ``file`` is the name used in error messages."""
    try:
        raw, positions = load_yaml(text)
    except YamlProblem as exc:
        raise SpecError([yaml_issue(exc, file)]) from None
    try:
        spec = Spec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(pydantic_issues(exc, raw, positions, file)) from None
    problems = check_spec(spec)
    if problems:
        raise SpecError([issue_at(path, msg, positions, file) for path, msg in problems])
    return spec


def yaml_issue(exc: YamlProblem, file: str) -> SpecIssue:
    """The issue for a YAML that cannot be read (with where an unclosed construct opened)."""
    notes = () if exc.opened is None else (SpecNote(*exc.opened),)
    return SpecIssue(exc.message, (), exc.line, exc.column, file, exc.source, notes)


def issue_at(path: Path, message: str, positions: Positions, file: str) -> SpecIssue:
    line, column = positions.find(path)
    return SpecIssue(message, path, line, column, file)


def pydantic_issues(
    exc: ValidationError, raw: dict[str, Any], positions: Positions, file: str
) -> list[SpecIssue]:
    issues: list[SpecIssue] = []
    seen: set[tuple[Path, str]] = set()
    for error in exc.errors(include_url=False):
        path = _clean_loc(error["loc"])
        message = _message(error, path)
        path = _written_path(path, raw)
        if (path, message) in seen:
            continue
        seen.add((path, message))
        issues.append(issue_at(path, message, positions, file))
    return issues


_TYPE_TAGS = {"IPv4Interface", "IPv6Interface", "IPv4Address", "IPv6Address", "str", "int"}


def _clean_loc(loc: tuple[int | str, ...]) -> Path:
    """Drop pydantic's internal steps (union member names, validator tags) from a location
    and give fields their YAML names."""
    out: list[str | int] = []
    for part in loc:
        if isinstance(part, str) and ("[" in part or part in _TYPE_TAGS):
            continue
        out.append(
            {"with_": "with", "vip_set": "vip-set"}.get(part, part)
            if isinstance(part, str)
            else part
        )
    return tuple(out)


def _written_path(path: Path, raw: Any) -> Path:
    """``path`` as the operator wrote it: steps that exist only because a shorthand was expanded
    (``vip: X`` read as ``vip.address``, one health check read as a list) are dropped."""
    out: list[str | int] = []
    node = raw
    for part in path:
        if isinstance(node, dict) and isinstance(part, str):
            out.append(part)
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int):
            out.append(part)
            node = node[part] if 0 <= part < len(node) else None
        elif node is None:
            out.append(part)  # a missing field: name it
        # else: a shorthand step, skipped
    return tuple(out)


def _message(error: Any, path: Path) -> str:
    kind = error["type"]
    msg = str(error["msg"])
    if kind == "extra_forbidden":
        return f"unknown field {path[-1]!r}" if path else "unknown field"
    if kind == "missing":
        return f"missing required field {path[-1]!r}" if path else "missing required field"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    if kind == "literal_error":
        return f"got {error['input']!r}; {msg[0].lower() + msg[1:]}"
    if kind in ("ip_v4_interface", "ip_v6_interface", "ip_any_interface"):
        return f"{error['input']!r} is not an IP address with prefix (e.g. 198.18.0.100/24)"
    if kind in ("ip_v4_address", "ip_v6_address", "ip_any_address"):
        return f"{error['input']!r} is not an IP address"
    if kind == "string_pattern_mismatch" and path and path[0] == "cluster":
        return f"bad cluster name {error['input']!r}: lower-case letters, digits and '-'"
    if "input" in error and not isinstance(error["input"], dict | list):
        return f"{msg} (got {error['input']!r})"
    return msg
