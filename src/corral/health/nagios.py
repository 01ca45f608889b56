"""The same checks for Nagios, Icinga and Sensu (``corral check``): one run, plugin output.

Contract: :func:`check_once` runs one check and returns ``(exit_code, line)`` following the
Nagios plugin guidelines (also Sensu's check protocol): exit 0 OK, 1 WARNING, 2 CRITICAL,
3 UNKNOWN, and one line ``STATUS - detail | time=<s>s;;;0;<timeout>``. A timeout is CRITICAL
(as with the stock plugins' ``-t``). When an exec check's output already starts with the same
status word (``TCP OK - ...``), it is kept as it is instead of being prefixed twice.
:func:`check_all` does the same for several checks, reporting the worst.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence

from corral.core.health import CheckOutcome, CheckStatus
from corral.core.node import NodeContext
from corral.health.checks import Checker
from corral.spec import HealthCheck

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
EXIT_CODES: dict[CheckStatus, int] = {
    "ok": OK,
    "warning": WARNING,
    "critical": CRITICAL,
    "unknown": UNKNOWN,
    "timeout": CRITICAL,
}
WORDS = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
# Worst first when several checks are summed up: a failure outranks an unknown, which
# outranks a warning (corral counts unknown as failing and warning as passing).
_SEVERITY = {CRITICAL: 3, UNKNOWN: 2, WARNING: 1, OK: 0}
_STATUS_WORD = re.compile(r"^(?:[A-Za-z0-9_]+ )?(OK|WARNING|CRITICAL|UNKNOWN)\b")


def _parts(outcome: CheckOutcome, check: HealthCheck) -> tuple[int, str, str]:
    """Exit code, status text and performance data of one outcome of ``check``."""
    code = EXIT_CODES[outcome.status]
    word = WORDS[code]
    # One line, and no "|": Nagios would read what follows it as performance data.
    detail = " ".join(outcome.detail.replace("|", "/").split())
    match = _STATUS_WORD.match(detail)
    text = detail if match and match.group(1) == word else f"{word} - {detail}"
    return code, text, f"time={outcome.duration:.6f}s;;;0;{check.timeout:g}"


def plugin_line(outcome: CheckOutcome, check: HealthCheck) -> tuple[int, str]:
    """The exit code and output line for one outcome of ``check``."""
    code, text, perf = _parts(outcome, check)
    return code, f"{text} | {perf}"


async def check_once(
    check: HealthCheck, node: NodeContext, checker: Checker | None = None
) -> tuple[int, str]:
    """Run ``check`` once against ``node``; ``(exit code, output line)`` for Nagios/Sensu.

    Never raises for a failing target. ``checker`` is closed only when this call made it."""
    if checker is not None:
        return plugin_line(await checker.run(check, node), check)
    async with Checker() as own:
        return plugin_line(await own.run(check, node), check)


async def check_all(checks: Sequence[HealthCheck], node: NodeContext) -> tuple[int, str]:
    """Run every check at once; the worst exit code, and one line that names every check that
    is not OK (or says that all are). No checks at all is UNKNOWN: nothing was verified."""
    if not checks:
        return UNKNOWN, "UNKNOWN - no health checks to run"
    async with Checker() as checker:
        outcomes = await asyncio.gather(*(checker.run(c, node) for c in checks))
    if len(checks) == 1:
        return plugin_line(outcomes[0], checks[0])
    parts = [_parts(o, c) for o, c in zip(outcomes, checks, strict=True)]
    worst = max((code for code, _, _ in parts), key=_SEVERITY.__getitem__)
    bad = [f"check {i + 1}: {text}" for i, (code, text, _) in enumerate(parts) if code != OK]
    summary = "; ".join(bad) if bad else f"all {len(parts)} checks OK"
    perf = " ".join(f"check{i + 1}_{p}" for i, (_, _, p) in enumerate(parts))
    return worst, f"{WORDS[worst]} - {summary} | {perf}"
