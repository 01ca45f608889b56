"""``corral state dump``: the live cluster as a state file (what ``corral simulate --state``
and the golden cases read), so an incident becomes a replayable case with one command."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import click

from corral.cli.cluster import ETCD_HELP, open_store, read_cluster, spec_or_exit
from corral.core.scheduler import dump_state_text
from corral.records import snapshot_from_kvs
from corral.store import StoreError


@click.group("state")
def state_group() -> None:
    """The cluster's state as the scheduler sees it."""


@state_group.command("dump")
@click.option("--spec", "spec_file", required=True, type=click.Path(dir_okay=False))
@click.option("--etcd", help=ETCD_HELP)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here.")
def dump(spec_file: str, etcd: str | None, output: Path | None) -> None:
    """Write the live cluster as a state file (stdout, or --output). Replay it with
    ``corral simulate SPEC --state FILE``. Gossip's view (unclean nodes) and fences
    under way are the controller's memory, not the store's: the controller's own inputs are
    in ``<state dir>/controller-inputs/`` on its node."""
    spec = spec_or_exit(spec_file)
    try:
        keys, kvs = asyncio.run(read_cluster(open_store(spec, etcd), spec.cluster))
    except StoreError as exc:
        raise click.ClickException(f"cannot read the store: {exc}") from None
    snap = snapshot_from_kvs(spec, keys, kvs, now=time.time())
    header = f"corral state dump of {spec.cluster}, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}"
    text = dump_state_text(snap, header=header)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text)
        click.echo(f"wrote {output}", err=True)
