"""``corral simulate`` and ``corral explain``: the scheduler, offline, on a state file."""

from __future__ import annotations

import json
import sys

import click

from corral.actions import ActionError
from corral.actions.whatif import FIELDS, inject, what_if
from corral.core.scheduler import (
    Snapshot,
    explain,
    load_state_text,
    schedule,
)
from corral.records.view import SCHEMAS
from corral.spec import Spec, SpecError, SpecIssue, load_spec


def load_state(path: str, spec: Spec) -> Snapshot:
    """The state file at ``path`` (at most 1 MiB read), or SpecError naming the file."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(1 << 20)
    except OSError as exc:
        raise SpecError([SpecIssue(f"cannot read: {exc.strerror or exc}", file=path)]) from None
    return load_state_text(data, spec, path)


def _load(spec_file: str, state_file: str | None) -> tuple[Spec, Snapshot]:
    try:
        spec = load_spec(spec_file)
        snap = load_state(state_file, spec) if state_file else Snapshot()
    except SpecError as exc:
        for issue in exc.issues:
            click.echo(str(issue), err=True)
        sys.exit(1)
    return spec, snap


@click.command()
@click.argument("spec_file", type=click.Path(dir_okay=False))
@click.option(
    "--state",
    "state_file",
    type=click.Path(dir_okay=False),
    help="State file (default: nothing runs yet).",
)
@click.option("--fail-node", multiple=True, metavar="NODE", help="The node is lost (unclean).")
@click.option(
    "--fail-resource",
    multiple=True,
    metavar="RES@NODE",
    help="The instance fails its health check (one more failure).",
)
@click.option(
    "--maintenance",
    multiple=True,
    metavar="WHAT",
    help="cluster | node:NODE | RESOURCE | RESOURCE@NODE",
)
@click.option("--standby", multiple=True, metavar="NODE", help="Drain the node.")
@click.option("--json", "as_json", is_flag=True, help="The plan's actions and notes as JSON.")
def simulate(
    spec_file: str,
    state_file: str | None,
    fail_node: tuple[str, ...],
    fail_resource: tuple[str, ...],
    maintenance: tuple[str, ...],
    standby: tuple[str, ...],
    as_json: bool,
) -> None:
    """Show what the cluster would do: actions with reasons, and the state after them."""
    spec, snap = _load(spec_file, state_file)
    faults = {"fail_nodes": fail_node, "fail_resources": fail_resource,
              "maintenance": maintenance, "standby": standby}  # fmt: skip
    try:
        body = what_if(spec, inject(spec, snap, **faults))
    except ActionError as exc:
        raise click.BadParameter(str(exc), param_hint=FIELDS[exc.field][0]) from None
    click.echo(json.dumps(body, indent=2) if as_json else body["text"], nl=as_json)


@click.command(name="explain")
@click.argument("spec_file", type=click.Path(dir_okay=False))
@click.argument("resource")
@click.option("--state", "state_file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="As the API's /v1/explain answers.")
def explain_cmd(spec_file: str, resource: str, state_file: str | None, as_json: bool) -> None:
    """Why each instance of RESOURCE is where it is: reasons, blocks and every node's score."""
    spec, snap = _load(spec_file, state_file)
    if resource not in spec.resources:
        raise click.BadParameter(
            f"unknown resource {resource!r} (known: {', '.join(spec.resources)})",
            param_hint="RESOURCE",
        )
    text = explain(spec, snap, schedule(spec, snap), resource)
    if as_json:
        body = {"schema": SCHEMAS["explain"], "resource": resource, "explain": text}
        click.echo(json.dumps(body, indent=2))
        return
    click.echo(text, nl=False)
