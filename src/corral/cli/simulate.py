"""``corral simulate`` and ``corral explain``: the scheduler, offline, on a state file."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, replace

import click

from corral.cli.cluster import spec_pair
from corral.core.scheduler import (
    FailCount,
    Instance,
    NodeStatus,
    Snapshot,
    apply_plan,
    explain,
    load_state_text,
    render_plan,
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


def inject(
    spec: Spec,
    snap: Snapshot,
    *,
    fail_nodes: tuple[str, ...] = (),
    fail_resources: tuple[str, ...] = (),
    maintenance: tuple[str, ...] = (),
    standby: tuple[str, ...] = (),
) -> Snapshot:
    """``snap`` with the faults and admin changes of the command line applied."""
    nodes = dict(snap.nodes)
    for name in (*fail_nodes, *standby):
        if name not in spec.nodes:
            raise click.BadParameter(f"unknown node {name!r}")
    for name in fail_nodes:
        nodes[name] = replace(snap.node(name), state="unclean")
    for name in standby:
        nodes[name] = replace(nodes.get(name, NodeStatus()), standby=True)
    instances = list(snap.instances)
    failures = dict(snap.failures)
    for text in fail_resources:
        res, node = spec_pair(spec, text, "--fail-resource")
        instances = [
            replace(i, health="unhealthy") if (i.resource, i.node) == (res, node) else i
            for i in instances
        ]
        if not any((i.resource, i.node) == (res, node) for i in instances):
            instances.append(Instance(res, node, health="unhealthy"))
        old = failures.get((res, node))
        failures[(res, node)] = FailCount((old.count if old else 0) + 1, snap.now)
    maint = snap.maintenance
    for text in maintenance:
        if text == "cluster":
            maint = replace(maint, cluster=True)
        elif text.startswith("node:"):
            maint = replace(maint, nodes=maint.nodes | {text[5:]})
        elif "@" in text:
            maint = replace(
                maint, instances=maint.instances | {spec_pair(spec, text, "--maintenance")}
            )
        elif text in spec.resources:
            maint = replace(maint, resources=maint.resources | {text})
        else:
            raise click.BadParameter(
                f"{text!r}: use cluster, node:NODE, RESOURCE or RESOURCE@NODE",
                param_hint="--maintenance",
            )
    return replace(
        snap, nodes=nodes, instances=tuple(instances), failures=failures, maintenance=maint
    )


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
    snap = inject(
        spec,
        snap,
        fail_nodes=fail_node,
        fail_resources=fail_resource,
        maintenance=maintenance,
        standby=standby,
    )
    plan = schedule(spec, snap)
    text = render_plan(spec, snap, plan, apply_plan(snap, plan))
    if as_json:
        body = {"schema": SCHEMAS["simulate"], "actions": [asdict(a) for a in plan.actions],
                "notes": list(plan.notes), "text": text}  # fmt: skip
        click.echo(json.dumps(body, indent=2))
        return
    click.echo(text, nl=False)


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
