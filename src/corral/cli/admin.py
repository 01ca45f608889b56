"""Administrative state: maintenance at every level, standby, bans, moves, failure cleanup.

Each command edits one record under ``admin/`` (:mod:`corral.records.admin`) with a
compare-and-swap loop (read, change, write if unchanged since the read), so two operators at
once never lose an edit. A record that does not read is edited as an empty one (as the
scheduler reads it). The scheduler and the agents read these records (safety rule 4 for
maintenance).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

import click

from corral.cli.cluster import ETCD_HELP, open_store, spec_or_exit, spec_pair
from corral.records import BansRecord, MaintenanceRecord, MovesRecord, StandbyRecord
from corral.spec import Spec
from corral.store import Compare, Keys, Put

R = TypeVar("R", MaintenanceRecord, StandbyRecord, BansRecord, MovesRecord)


async def _edit(spec: Spec, etcd: str | None, kind: type[R], change: Callable[[R], R]) -> R:
    store = open_store(spec, etcd)
    key = Keys(spec.cluster).admin(kind.NAME)
    try:
        for _ in range(20):
            kv = await store.get(key)
            old = kind.parse(kv.value) if kv is not None else None
            new = change(old or kind())
            guard = Compare.unchanged_since(key, kv.mod_revision) if kv else Compare.missing(key)
            if (await store.txn([guard], [Put(key, new.dump())])).succeeded:
                return new
        raise click.ClickException(f"admin/{kind.NAME} kept changing under us; try again")
    finally:
        await store.close()


def _toggle(items: tuple[str, ...], item: str, on: bool) -> tuple[str, ...]:
    rest = [i for i in items if i != item]
    return tuple(sorted([*rest, item]) if on else rest)


def _pair(spec: Spec, text: str) -> str:
    res, node = spec_pair(spec, text)
    return f"{res}@{node}"


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
    on = state == "on"
    if sum(bool(x) for x in (whole, node, resource, instance)) != 1:
        raise click.UsageError("name exactly one of --cluster, --node, --resource, --instance")
    if node is not None and node not in spec.nodes:
        raise click.BadParameter(f"unknown node {node!r}", param_hint="--node")
    if resource is not None and resource not in spec.resources:
        raise click.BadParameter(f"unknown resource {resource!r}", param_hint="--resource")
    target = _pair(spec, instance) if instance else None

    def change(value: MaintenanceRecord) -> MaintenanceRecord:
        if whole:
            value = replace(value, cluster=on)
        if node is not None:
            value = replace(value, nodes=_toggle(value.nodes, node, on))
        if resource is not None:
            value = replace(value, resources=_toggle(value.resources, resource, on))
        if target is not None:
            value = replace(value, instances=_toggle(value.instances, target, on))
        return value

    asyncio.run(_edit(spec, etcd, MaintenanceRecord, change))
    what = "cluster" if whole else node or resource or target
    click.echo(f"maintenance {state}: {what}")


@click.command()
@click.argument("state", type=click.Choice(["on", "off"]))
@click.argument("node")
@spec_option
@etcd_option
def standby(state: str, node: str, spec_file: str, etcd: str | None) -> None:
    """Drain NODE (standby on: its resources move away) or take it back."""
    spec = spec_or_exit(spec_file)
    if node not in spec.nodes:
        raise click.BadParameter(f"unknown node {node!r}", param_hint="NODE")
    asyncio.run(
        _edit(
            spec,
            etcd,
            StandbyRecord,
            lambda v: StandbyRecord(_toggle(v.nodes, node, state == "on")),
        )
    )
    click.echo(f"standby {state}: {node}")


@click.command()
@click.argument("instance", metavar="RES@NODE")
@click.option("--clear", is_flag=True, help="Lift the ban.")
@spec_option
@etcd_option
def ban(instance: str, clear: bool, spec_file: str, etcd: str | None) -> None:
    """Keep a resource off a node until the ban is cleared."""
    spec = spec_or_exit(spec_file)
    target = _pair(spec, instance)
    asyncio.run(
        _edit(
            spec,
            etcd,
            BansRecord,
            lambda v: BansRecord(_toggle(v.instances, target, not clear)),
        )
    )
    click.echo(f"ban {'cleared' if clear else 'set'}: {target}")


@click.command()
@click.argument("resource")
@click.argument("node", required=False)
@click.option("--clear", is_flag=True, help="Forget the move request.")
@spec_option
@etcd_option
def move(resource: str, node: str | None, clear: bool, spec_file: str, etcd: str | None) -> None:
    """Ask for RESOURCE to run on NODE (it stays there until --clear)."""
    spec = spec_or_exit(spec_file)
    if resource not in spec.resources:
        raise click.BadParameter(f"unknown resource {resource!r}", param_hint="RESOURCE")
    if not clear and (node is None or node not in spec.nodes):
        raise click.BadParameter(f"name a node of the spec, not {node!r}", param_hint="NODE")

    def change(value: MovesRecord) -> MovesRecord:
        entries = {r: n for r, n in value.entries.items() if r != resource}
        if not clear and node is not None:
            entries[resource] = node
        return MovesRecord(entries)

    asyncio.run(_edit(spec, etcd, MovesRecord, change))
    click.echo(f"move {'cleared' if clear else f'{resource} -> {node}'}")


@click.command()
@click.argument("instance", metavar="RES@NODE")
@spec_option
@etcd_option
def cleanup(instance: str, spec_file: str, etcd: str | None) -> None:
    """Forget the failures of a resource on a node (lifts a ban by the failure policy)."""
    spec = spec_or_exit(spec_file)
    res, node = spec_pair(spec, instance)

    async def forget() -> None:
        store = open_store(spec, etcd)
        try:
            await store.delete(Keys(spec.cluster).failcount(node, res))
        finally:
            await store.close()

    asyncio.run(forget())
    click.echo(f"failures forgotten: {instance}")


COMMANDS = (maintenance, standby, ban, move, cleanup)
