"""``corral alerts log`` (the last deliveries: status, tries, latency; every pending one) and
``corral alerts test SINK`` (a test alert through the real path, :mod:`corral.actions.alerts`,
run audited like every change command)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import click

from corral import actions
from corral.actions import Action
from corral.cli.admin import etcd_option, run_action, spec_option
from corral.cli.cluster import open_store, read_cluster, spec_or_exit
from corral.records.alerts import alert_rows
from corral.records.view import SCHEMAS


@click.group("alerts")
def alerts_group() -> None:
    """Alert deliveries (the spec's ``alerts:`` sinks)."""


@alerts_group.command("log")
@click.option("-n", "--last", default=30, show_default=True, help="Deliveries done to show.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@spec_option
@etcd_option
def log(last: int, as_json: bool, spec_file: str, etcd: str | None) -> None:
    """The last deliveries (delivered or failed) and every pending one."""
    spec = spec_or_exit(spec_file)
    try:
        keys, kvs = asyncio.run(read_cluster(open_store(spec, etcd), spec.cluster))
    except Exception as exc:  # the store's errors name the endpoints
        raise click.ClickException(f"cannot read the alerts: {exc}") from None
    rows = alert_rows(keys, kvs, last)
    if not rows:
        click.echo("no alert delivered yet" + ("" if spec.alerts else " (no alerts: in the spec)"))
    for row in rows:
        line = {"schema": SCHEMAS["alert"], **row}
        click.echo(json.dumps(line, sort_keys=True) if as_json else _line(row))


def _line(row: dict[str, Any]) -> str:
    about = "/".join(filter(None, [str(row["node"]), str(row["resource"])]))
    latency = row["latency"]
    took = f" latency {latency:.3f}s" if isinstance(latency, float) else ""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(row["at"] or 0)))
    error = f": {row['error']}" if row["error"] else ""
    return (
        f"{stamp} {row['sink']} {row['status']} {row['kind']} {about} "
        f"tries {row['tried']}{took} by {row['by']}{error}"
    )


@alerts_group.command("test")
@click.argument("sink")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for it.")
@spec_option
@etcd_option
def test(sink: str, timeout: float, spec_file: str, etcd: str | None) -> None:
    """Send a test alert to SINK (past its filters) and wait for its delivery."""
    spec = spec_or_exit(spec_file)

    def build() -> Action:
        return actions.alert_test(spec, sink, timeout)

    row = run_action(spec, etcd, build, {"sink": "SINK", "timeout": "--timeout"})
    if row.get("status") == "pending":
        raise click.ClickException(f"{sink}: not delivered within {timeout:g}s (still pending)")
    click.echo(_line(row))
    if row.get("status") != "delivered":
        raise SystemExit(1)
