"""``corral resource restart NAME [--rolling]``: restart a service through its agents (the
CLI's face of :func:`corral.actions.restart`, which the HTTP API runs too).

Each node's agent gets a request (``requests/<node>/<resource>``); it drains the instance from
every HAProxy, stops it, starts it and deletes the request (see the agent's ``_requests``).
``--rolling`` goes node by node and waits, before the next node, until the restarted instance
is healthy again and every HAProxy has it back in rotation: at most one node's instance is out
at a time, so a client of an active-active service sees no error. Without ``--rolling`` every
node is asked at once.
"""

from __future__ import annotations

import click

from corral import actions
from corral.actions import Action
from corral.cli.admin import run_action
from corral.cli.cluster import ETCD_HELP, spec_or_exit


@click.group("resource")
def resource_group() -> None:
    """Act on one resource across the cluster."""


@resource_group.command("restart")
@click.argument("name")
@click.option("--rolling", is_flag=True, help="One node at a time, each healthy before the next.")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds per node.")
@click.option("--spec", "spec_file", required=True, type=click.Path(dir_okay=False))
@click.option("--etcd", help=ETCD_HELP)
def restart(name: str, rolling: bool, timeout: float, spec_file: str, etcd: str | None) -> None:
    """Restart resource NAME where it runs (drained from the load balancers first)."""
    spec = spec_or_exit(spec_file)

    def build() -> Action:
        return actions.restart(spec, name, rolling, timeout, say=click.echo)

    run_action(spec, etcd, build, {"name": "NAME", "timeout": "--timeout"})
