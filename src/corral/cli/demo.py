"""``corral demo``: the example control plane and its embedded store, on this machine.

For now (the agent is not built yet) it validates and prints the spec, starts the spec's
embedded etcd members on loopback, shows the store working (a compare-and-swap, a lease, a
watch), kills one member to show the store keep serving and the supervisor restart it, and
stops everything. Every process it starts is recorded in ``<run-dir>/pids`` so that
``corral demo-down`` can clean up after an interrupted demo.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import time
from dataclasses import replace
from pathlib import Path

import click
from rich.console import Console

from corral.aio import wait_until
from corral.cli.render import print_summary
from corral.spec import SpecError, load_spec
from corral.store import Compare, EmbeddedEtcd, EtcdStore, Put
from corral.store.embedded import MemberConfig, members_from_spec
from corral.store.lab import free_ports

DEFAULT_RUN_DIR = Path("/tmp/corral-demo")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as etcd binds
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _loopback_members(spec_members: dict[str, MemberConfig]) -> dict[str, MemberConfig]:
    """The spec's members on 127.0.0.1; on free ports when the spec's are taken here."""
    ports = [
        int(url.rsplit(":", 1)[1])
        for m in spec_members.values()
        for url in (m.client_url, m.peer_url)
    ]
    if all(_port_free(p) for p in ports):
        return spec_members
    fresh = iter(free_ports(len(ports)))
    urls = {
        n: (f"http://127.0.0.1:{next(fresh)}", f"http://127.0.0.1:{next(fresh)}")
        for n in spec_members
    }
    peers = {n: peer for n, (_, peer) in urls.items()}
    return {
        n: replace(m, client_url=urls[n][0], peer_url=urls[n][1], initial_cluster=peers)
        for n, m in spec_members.items()
    }


async def _tour(console: Console, members: list[EmbeddedEtcd], run_dir: Path) -> None:
    pidfile = run_dir / "pids"
    start = time.monotonic()
    for m in members:
        await m.start(wait=False)
    pidfile.write_text("".join(f"{m.pid}\n" for m in members))
    for m in members:
        await m.wait_healthy(30)
        m.supervise()
    console.print(
        f"[green]etcd healthy[/green] after {time.monotonic() - start:.1f} s: "
        + ", ".join(f"{m.config.name} {m.config.client_url}" for m in members)
    )
    store = EtcdStore([m.config.client_url for m in members], timeout=5.0, attempt_timeout=0.5)
    try:
        key = b"/corral/demo/controller"
        won = await store.txn([Compare.missing(key)], [Put(key, b"ctl1")])
        lost = await store.txn([Compare.missing(key)], [Put(key, b"ctl2")])
        console.print(
            f"controller election by compare-and-swap: ctl1 won={won.succeeded}, "
            f"ctl2 won={lost.succeeded} (the key is taken)"
        )
        lease = await store.grant(1)
        await store.put(b"/corral/demo/nodes/ctl1", b"up", lease=lease.id)

        async def node_key_gone() -> bool:
            return await store.get(b"/corral/demo/nodes/ctl1") is None

        took = await wait_until(node_key_gone, 10, what="lease expiry")
        console.print(f"a node key on a 1 s lease, no keepalive: gone after {took:.2f} s")
        victim = next(m for m in members if m.config.client_url == store.endpoint)
        old_pid = victim.pid
        victim.kill()
        t0 = time.monotonic()
        await store.put(b"/corral/demo/after-kill", b"ok")
        console.print(
            f"killed -9 etcd member {victim.config.name} (pid {old_pid}), the one "
            f"the client used: next write served by {store.endpoint} after "
            f"{time.monotonic() - t0:.2f} s"
        )

        async def restarted() -> bool:
            return victim.running and victim.pid != old_pid and await victim.healthy()

        await wait_until(restarted, 20, 0.1, what=f"restart of {victim.config.name}")
        pidfile.write_text("".join(f"{m.pid}\n" for m in members))
        console.print(
            f"supervisor restarted {victim.config.name} (pid {victim.pid}); "
            f"healthy again after {time.monotonic() - t0:.2f} s"
        )
    finally:
        await store.close()
        for m in members:
            await m.stop()
        pidfile.unlink(missing_ok=True)
    console.print("etcd members stopped.")


@click.command()
@click.argument("spec_file", type=click.Path(dir_okay=False), default="examples/openstack.yaml")
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_RUN_DIR,
    show_default=True,
)
def demo(spec_file: str, run_dir: Path) -> None:
    """Validate SPEC_FILE, then run and exercise its embedded etcd on loopback."""
    console = Console(highlight=False)
    try:
        spec = load_spec(spec_file)
    except SpecError as exc:
        for issue in exc.issues:
            click.echo(str(issue), err=True)
        raise SystemExit(1) from None
    print_summary(spec, console)
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    configs = _loopback_members(members_from_spec(spec, run_dir / "etcd", host_of={}))
    console.rule("embedded store")
    members = [EmbeddedEtcd(c) for c in configs.values()]
    asyncio.run(_tour(console, members, run_dir))
    console.print(
        "Next: corral simulate examples/openstack.yaml --state "
        "examples/openstack-state.yaml --fail-node ctl1"
    )


@click.command(name="demo-down")
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_RUN_DIR,
    show_default=True,
)
def demo_down(run_dir: Path) -> None:
    """Stop what an interrupted demo left running (only the processes it recorded)."""
    pidfile = run_dir / "pids"
    stopped = 0
    if pidfile.exists():
        for line in pidfile.read_text().split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(line), signal.SIGKILL)
                stopped += 1
    shutil.rmtree(run_dir, ignore_errors=True)
    click.echo(f"demo: stopped {stopped} process(es), removed {run_dir}")
