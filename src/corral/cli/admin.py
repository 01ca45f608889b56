"""Administrative state: maintenance at every level, standby, bans, moves, failure cleanup.

The commands are the CLI's face of :mod:`corral.actions` (the layer the HTTP API uses too):
each builds its action there and runs it under the CLI's identity with one audit event
(:mod:`corral.cli.audit`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from corral import actions
from corral.actions import Action, ActionError, ActionFailed
from corral.cli.audit import run_audited
from corral.cli.cluster import ETCD_HELP, spec_or_exit
from corral.spec import Spec


def run_action(
    spec: Spec, etcd: str | None, build: Callable[[], Action], hints: dict[str, str]
) -> Any:
    """Build the action (a usage error names the argument, through ``hints``: the action's
    field -> the CLI's parameter) and run it audited; a failure exits with its reason."""
    try:
        action = build()
    except ActionError as exc:
        raise click.BadParameter(str(exc), param_hint=hints.get(exc.field)) from None
    try:
        return run_audited(spec, etcd, action.said, action.work, action.resource)
    except ActionFailed as exc:
        raise click.ClickException(str(exc)) from None


spec_option = click.option("--spec", "spec_file", required=True, type=click.Path(dir_okay=False))
etcd_option = click.option("--etcd", help=ETCD_HELP)


@click.command()
@click.argument("state", type=click.Choice(["on", "off"]))
@click.option("--cluster", "whole", is_flag=True, help="The whole cluster.")
@click.option("--node", help="Everything on one node.")
@click.option("--resource", help="One resource everywhere.")
@click.option("--instance", metavar="RES@NODE", help="One resource on one node.")
@spec_option
@etcd_option
def maintenance(
    state: str,
    whole: bool,
    node: str | None,
    resource: str | None,
    instance: str | None,
    spec_file: str,
    etcd: str | None,
) -> None:
    """Put something in maintenance (nothing is started, stopped or moved there) or end it."""
    spec = spec_or_exit(spec_file)
    hints = {"node": "--node", "resource": "--resource", "instance": "--instance"}
    if sum(bool(x) for x in (whole, node, resource, instance)) != 1:
        raise click.UsageError("name exactly one of --cluster, --node, --resource, --instance")

    def build() -> Action:
        return actions.maintenance(
            spec, on_off(state), cluster=whole, node=node, resource=resource, instance=instance
        )

    run_action(spec, etcd, build, hints)
    click.echo(f"maintenance {state}: {'cluster' if whole else node or resource or instance}")


@click.command()
@click.argument("state", type=click.Choice(["on", "off"]))
@click.argument("node")
@spec_option
@etcd_option
def standby(state: str, node: str, spec_file: str, etcd: str | None) -> None:
    """Drain NODE (standby on: its resources move away) or take it back."""
    spec = spec_or_exit(spec_file)
    run_action(spec, etcd, lambda: actions.standby(spec, on_off(state), node), {"node": "NODE"})
    click.echo(f"standby {state}: {node}")


@click.command()
@click.argument("instance", metavar="RES@NODE")
@click.option("--clear", is_flag=True, help="Lift the ban.")
@spec_option
@etcd_option
def ban(instance: str, clear: bool, spec_file: str, etcd: str | None) -> None:
    """Keep a resource off a node until the ban is cleared."""
    spec = spec_or_exit(spec_file)
    hints = {"instance": "RES@NODE"}
    run_action(spec, etcd, lambda: actions.ban(spec, instance, clear), hints)
    click.echo(f"ban {'cleared' if clear else 'set'}: {instance}")


@click.command()
@click.argument("resource")
@click.argument("node", required=False)
@click.option("--clear", is_flag=True, help="Forget the move request.")
@spec_option
@etcd_option
def move(resource: str, node: str | None, clear: bool, spec_file: str, etcd: str | None) -> None:
    """Ask for RESOURCE to run on NODE (it stays there until --clear)."""
    spec = spec_or_exit(spec_file)
    hints = {"resource": "RESOURCE", "node": "NODE"}
    run_action(spec, etcd, lambda: actions.move(spec, resource, node, clear), hints)
    click.echo(f"move {f'{resource} cleared' if clear else f'{resource} -> {node}'}")


@click.command()
@click.argument("instance", metavar="RES@NODE")
@spec_option
@etcd_option
def cleanup(instance: str, spec_file: str, etcd: str | None) -> None:
    """Forget the failures of a resource on a node (lifts a ban by the failure policy)."""
    spec = spec_or_exit(spec_file)
    run_action(spec, etcd, lambda: actions.cleanup(spec, instance), {"instance": "RES@NODE"})
    click.echo(f"failures forgotten: {instance}")


def on_off(state: str) -> actions.admin.OnOff:
    return "on" if state == "on" else "off"


COMMANDS = (maintenance, standby, ban, move, cleanup)
