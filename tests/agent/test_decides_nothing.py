"""The agent's shells decide nothing: the decisions are the cores' (``corral.core``).

What is checked here, on the source of every module under ``corral/agent/``:
- No clock is read but the injected ones: no call of ``time.time()``, ``time.monotonic()``,
  ``time.time_ns()``, ``time.perf_counter()``, ``datetime.now()`` or an event loop's
  ``time()``. (``time.time`` passed as a default, uncalled, is an injection; ``time.strftime``
  stamps the guard's log lines for people, and ``time.sleep`` waits.)
- No store record is parsed or branched on: no ``json`` parsing and no ``isinstance(x, dict)``
  (a record's content is read by the records module into typed values; what they mean is
  the cores' to say).
- ``agent/node.py`` stays well under 400 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

AGENT = Path(__file__).resolve().parents[2] / "src" / "corral" / "agent"
CLOCKS = {
    ("time", "time"),
    ("time", "monotonic"),
    ("time", "monotonic_ns"),
    ("time", "time_ns"),
    ("time", "perf_counter"),
    ("datetime", "now"),
    ("datetime", "utcnow"),
}
PARSERS = {("json", "loads"), ("json", "load")}


def calls(path: Path) -> list[tuple[int, str, str]]:
    """(line, object, attribute) of every ``obj.attr(...)`` call in ``path``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            name = owner.id if isinstance(owner, ast.Name) else ""
            if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Attribute):
                name = owner.func.attr  # asyncio.get_running_loop().time()
            out.append((node.lineno, name, node.func.attr))
    return out


def dict_checks(path: Path) -> list[int]:
    """Lines of ``isinstance(x, dict)`` (or a tuple/union naming ``dict``)."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call) or getattr(node.func, "id", "") != "isinstance":
            continue
        if any(isinstance(n, ast.Name) and n.id == "dict" for n in ast.walk(node.args[1])):
            lines.append(node.lineno)
    return lines


def test_no_agent_module_reads_a_clock_of_its_own() -> None:
    found = [
        f"{path.name}:{line} {owner}.{attr}()"
        for path in sorted(AGENT.glob("*.py"))
        for line, owner, attr in calls(path)
        if (owner, attr) in CLOCKS or (attr == "time" and owner.endswith("loop"))
    ]
    assert not found, "read the injected clock instead: " + ", ".join(found)


def test_no_agent_module_parses_or_branches_on_records() -> None:
    found = []
    for path in sorted(AGENT.glob("*.py")):
        found += [
            f"{path.name}:{line} {owner}.{attr}()"
            for line, owner, attr in calls(path)
            if (owner, attr) in PARSERS
        ]
        found += [f"{path.name}:{line} isinstance(..., dict)" for line in dict_checks(path)]
    assert not found, "parse in the records module, judge in a core: " + ", ".join(found)


def test_the_agent_shell_stays_small() -> None:
    lines = len((AGENT / "node.py").read_text().splitlines())
    assert lines < 400, f"agent/node.py has {lines} lines: move decisions to corral.core.agent"
