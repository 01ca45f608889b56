"""The command line both RabbitMQ benchmarks share: ``[--quick] [--json FILE]``, one table of
figures (with more columns of text by figure name when given: targets, what Pacemaker does),
and a failing run reported in one line (no traceback)."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from rich.console import Console
from rich.table import Table

Figures = dict[str, float]


def bench_main(
    doc: str,
    title: str,
    run: Callable[[bool], Awaitable[Figures]],
    extra: Callable[[Figures], list[tuple[str, str]]] = lambda _: [],
    columns: Mapping[str, Mapping[str, str]] | None = None,
) -> int:
    """``columns``: title -> figure name -> text, one more column each (blank where a figure
    has no text)."""
    columns = columns or {}
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    console = Console()
    try:
        figures: Figures = asyncio.run(_call(run, args.quick))
    except Exception as exc:  # a failing run is reported, no traceback
        console.print(f"[red]bench failed: {type(exc).__name__}: {exc}[/red]")
        return 1
    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for title in columns:
        table.add_column(title, overflow="fold")
    for name, value in figures.items():
        table.add_row(name, f"{value:.3f}", *(c.get(name, "") for c in columns.values()))
    for row in extra(figures):
        table.add_row(*row, *("" for _ in columns))
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    return 0


async def _call(run: Callable[[bool], Awaitable[Figures]], quick: bool) -> Figures:
    return await run(quick)
