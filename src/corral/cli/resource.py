"""``corral resource restart NAME [--rolling]``: restart a service through its agents.

Each node's agent gets a request (``requests/<node>/<resource>``); it drains the instance from
every HAProxy, stops it, starts it and deletes the request (see the agent's ``_requests``).
``--rolling`` goes node by node and waits, before the next node, until the restarted instance
is healthy again and every HAProxy has it back in rotation: at most one node's instance is out
at a time, so a client of an active-active service sees no error. Without ``--rolling`` every
node is asked at once.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import click

from corral.cli.cluster import ETCD_HELP, open_store, spec_or_exit
from corral.records import AssignRecord, LbRecord, RequestRecord, StatusRecord
from corral.spec import Spec
from corral.store import Keys, Store


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
    if name not in spec.resources:
        raise click.BadParameter(f"unknown resource {name!r}", param_hint="NAME")
    if spec.resources[name].kind not in ("process", "systemd", "ocf", "haproxy"):
        raise click.BadParameter(f"{name} is a {spec.resources[name].kind}: nothing to restart")

    async def run() -> None:
        store = open_store(spec, etcd)
        try:
            await _restart(spec, store, name, rolling, timeout)
        finally:
            await store.close()

    asyncio.run(run())


async def _restart(spec: Spec, store: Store, name: str, rolling: bool, timeout: float) -> None:
    keys = Keys(spec.cluster)
    kv = await store.get(keys.assign(name))
    assigned = AssignRecord.parse(kv.value) if kv else None
    nodes = sorted(set(assigned.nodes if assigned else []), key=list(spec.nodes).index)
    if not nodes:
        raise click.ClickException(f"{name} is not assigned anywhere: nothing to restart")
    batches = [[n] for n in nodes] if rolling else [nodes]
    for batch in batches:
        started = time.monotonic()
        for node in batch:
            request = RequestRecord(RequestRecord.RESTART, uuid.uuid4().hex)
            await store.put(keys.request(node, name), request.dump())
        for node in batch:
            await _wait_back(store, keys, name, node, started + timeout)
            click.echo(f"{name} on {node}: restarted, healthy and back in rotation")


async def _wait_back(store: Store, keys: Keys, name: str, node: str, deadline: float) -> None:
    """Until the request is done, the instance healthy and every HAProxy has it ready."""
    balanced = True
    while True:
        done = await store.get(keys.request(node, name)) is None
        status = await store.get(keys.status(node, name))
        reported = StatusRecord.parse(status.value) if status else None
        instances = reported.instances if reported else ()
        healthy = bool(instances) and instances[0].health == "healthy"
        lbs = await store.range(keys.prefix("lb"))
        states = []
        for kv in lbs.kvs:
            record = LbRecord.parse(kv.value)
            if record is not None and name in record.servers:
                states.append(record.servers[name].get(node))
        balanced = all(s == "ready" for s in states)
        if done and healthy and balanced:
            return
        if time.monotonic() > deadline:
            await store.delete(keys.request(node, name))  # not to run whenever it comes back
            what = (
                "the agent did not take the request"
                if not done
                else ("not healthy again" if not healthy else "not back in every load balancer")
            )
            raise click.ClickException(f"{name} on {node}: {what} in time; stopping here")
        await asyncio.sleep(0.05)
