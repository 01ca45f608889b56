"""Commands that talk to a running cluster through its store: ``agent``, ``status``,
``events``, ``spec push``. They work from any node (or any machine that reaches etcd)."""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import importlib
import json
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table

from corral.agent.handover import HANDOVER_MAX
from corral.agent.notify import Notifier, journal_fields, stop_agent, systemd_notify
from corral.auth.read import read_public
from corral.pki import (
    NodeIdentity,
    PkiError,
    api_identity,
    bundle_identity,
    client_files,
    expiry_note,
    node_identity,
)
from corral.pki.identity import ROOT
from corral.priority import raise_process
from corral.records.view import SCHEMAS, cluster_view, events_of, maintenance_lines, members_of
from corral.spec import Spec, SpecError, load_spec
from corral.store import EmbeddedEtcd, EtcdStore, Keys, KeyValue
from corral.store.embedded import members_from_spec
from corral.store.tls import TlsFiles

if TYPE_CHECKING:
    from corral.agent.lock import AgentLock
    from corral.agent.node import Agent

ETCD_HELP = (
    "etcd endpoints, comma-separated (default: from the spec; env CORRAL_ETCD); TLS files: env "
    "CORRAL_ETCD_CA/CERT/KEY, else the spec's store.*.tls, else the node's own in "
    "$CORRAL_STATE_DIR/tls (default /var/lib/corral/tls); etcd password auth: env "
    "CORRAL_ETCD_USER and CORRAL_ETCD_PASSWORD"
)
STATE_DIR = Path("/var/lib/corral")
AGENT_STORE = {"timeout": 2.0, "attempt_timeout": 0.5}  # seconds: a call, one try
CERT_CHECK_INTERVAL = 86400.0  # seconds between the agent's checks of its node certificate


def tls_for(spec: Spec | None, state_dir: Path | None = None) -> TlsFiles | None:
    """The TLS files the CLI presents to etcd (:func:`corral.pki.client_files`): one place for
    every command; a usage error that names what is missing."""
    if state_dir is None:
        state_dir = Path(os.environ.get("CORRAL_STATE_DIR") or STATE_DIR)
    try:
        return client_files(spec, state_dir, os.environ)
    except PkiError as exc:
        raise click.ClickException(str(exc)) from None


def open_store(
    spec: Spec | None,
    option: str | None,
    *,
    node: str | None = None,
    identity: TlsFiles | None = None,
    timeout: float = 3.0,
    **settings: Any,
) -> EtcdStore:
    """An :class:`EtcdStore` on :func:`endpoints_for` presenting ``identity`` (default:
    :func:`tls_for`'s; etcd password auth from ``CORRAL_ETCD_USER``/``CORRAL_ETCD_PASSWORD``
    unless an identity is given); a usage error when an endpoint's scheme disagrees with TLS."""
    tls = identity if identity is not None else tls_for(spec)
    user, password = os.environ.get("CORRAL_ETCD_USER"), os.environ.get("CORRAL_ETCD_PASSWORD")
    if (user is None) != (password is None):
        raise click.UsageError("set both CORRAL_ETCD_USER and CORRAL_ETCD_PASSWORD, or neither")
    if user is not None and identity is None:
        settings.update(username=user, password=password)
    try:
        endpoints = endpoints_for(spec, option, node)
        return EtcdStore(endpoints, timeout=timeout, tls=tls, **settings)
    except ValueError as exc:  # an endpoint's scheme disagrees with the TLS settings
        raise click.UsageError(str(exc)) from None


def endpoints_for(spec: Spec | None, option: str | None, node: str | None = None) -> list[str]:
    """The etcd endpoints: ``--etcd``, else ``CORRAL_ETCD``, else the spec's. With the
    embedded store, ``node``'s own member comes first: an agent talks to the member on its own
    node, so a dead or cut-off peer member never stands between it and its lease (and a node
    whose own member is cut off is cut off itself)."""
    text = option or os.environ.get("CORRAL_ETCD")
    if text:
        return [e.strip() for e in text.split(",") if e.strip()]
    if spec is None:
        raise click.UsageError("no etcd endpoints: give --etcd or --spec")
    if spec.store.etcd is not None:
        return list(spec.store.etcd.endpoints)
    assert spec.store.embedded is not None
    port = spec.store.embedded.client_port
    core = spec.core_nodes()
    if node in core:
        core = [node, *(n for n in core if n != node)]
    scheme = "https" if spec.store_tls is not None else "http"
    return [f"{scheme}://{spec.nodes[n].address}:{port}" for n in core]


def spec_pair(spec: Spec, text: str, option: str | None = None) -> tuple[str, str]:
    """``RESOURCE@NODE`` with names from ``spec``, or a usage error that says how to write it
    (:func:`corral.actions.admin.pair`, the API's reading too)."""
    from corral.actions.admin import ActionError, pair

    try:
        return pair(spec, text)
    except ActionError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def spec_or_exit(path: str) -> Spec:
    try:
        return load_spec(path)
    except SpecError as exc:
        for issue in exc.issues:
            click.echo(str(issue), err=True)
        raise SystemExit(1) from None


@click.command()
@click.option("--spec", "spec_file", required=True, type=click.Path(dir_okay=False))
@click.option("--node", required=True, help="This node's name in the spec.")
@click.option("--etcd", help=ETCD_HELP)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("/var/lib/corral"),
    show_default=True,
)
@click.option(
    "--handover-window",
    type=click.FloatRange(min=0),
    default=HANDOVER_MAX,
    show_default=True,
    help="Seconds the lease guard keeps the node lease for the next agent after SIGTERM/SIGINT "
    "(a restart of corral moves nothing); 0: the lease runs out at once, as when a node leaves "
    "for good.",
)
@click.option("-v", "--verbose", is_flag=True)
def agent(
    spec_file: str, node: str, etcd: str | None, state_dir: Path, handover_window: float,
    verbose: bool,
) -> None:  # fmt: skip
    """Run the node agent (until SIGTERM/SIGINT; services keep running for the next agent).

    It runs at nice -10, its etcd member too (with I/O priority best-effort 0), and its lease
    guard at real-time priority, when it may (corral.priority); services at the normal one."""
    from corral.agent.node import Agent
    from corral.drivers import make_driver
    from corral.health.checks import run_check

    notifier = Notifier.from_environ(take=True)  # before anything inherits NOTIFY_SOCKET
    spec, spec_text, lock, tls = _agent_setup(spec_file, node, state_dir, verbose)

    async def main() -> None:
        member = await _embedded_member(spec, node, state_dir, tls) if etcd is None else None
        store = open_store(spec, etcd, node=node, identity=tls, **AGENT_STORE)
        the_agent = Agent(
            spec, node, store, state_dir=state_dir, driver_factory=make_driver,
            checker=run_check, spec_text=spec_text, guard=True, gossip=True, lock=lock,
            members=_member_urls(spec, tls) if etcd is None and spec.store.embedded else None,
            member_down_since=member.down_since if member is not None else None,
            handover=handover_window,
        )  # fmt: skip
        task = asyncio.create_task(the_agent.run())
        beside: list[asyncio.Task[Any]] = [
            asyncio.create_task(_renew_node_cert(spec, node, state_dir, tls))
        ]
        beside += _secure_store(spec, node, etcd, state_dir, spec_text, the_agent.events.event)
        beside += systemd_notify(the_agent, notifier)
        stop_api = _start_api(spec, node, the_agent, etcd, tls, state_dir)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop_agent, task, notifier)
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        finally:
            for side in beside:
                side.cancel()
            stop_api()
            await store.close()
            # an embedded member keeps serving when the agent stops (its supervisor ends with
            # the loop): the next agent adopts it, and the store does not lose a member
            del member

    asyncio.run(main())


def _agent_setup(
    spec_file: str, node: str, state_dir: Path, verbose: bool
) -> tuple[Spec, str, AgentLock, TlsFiles | None]:
    """Before the agent's loop: its process settings, the spec, the state dir's lock (before
    anything is started or adopted, the embedded store member included), its TLS identity."""
    from corral.agent.lock import AgentLock, AgentRunning

    _agent_process(verbose)
    spec = spec_or_exit(spec_file)
    if node not in spec.nodes:
        raise click.BadParameter(f"{node!r} is not a node of {spec_file}", param_hint="--node")
    journal_fields(spec, node, verbose)
    _private_state_dir(state_dir)
    spec_text = Path(spec_file).read_text()
    try:
        lock = AgentLock.acquire(state_dir)
    except AgentRunning as exc:
        raise click.ClickException(str(exc)) from None
    return spec, spec_text, lock, _node_tls(spec, node, state_dir)


def _start_api(
    spec: Spec, node: str, the_agent: Agent, etcd: str | None, tls: TlsFiles | None,
    state_dir: Path,
) -> Callable[[], None]:  # fmt: skip
    """The HTTP API in its own thread (``api:`` in the spec), fed by the agent's snapshots,
    with store clients of its own (made in its thread, on first use): the node's identity
    for reads, ``api:<node>``'s (:func:`corral.pki.api_identity`) for the actions; returns
    what stops it. One that cannot listen is logged and left out: the agent runs on without
    it."""
    from corral.api import ApiServer, ApiStartError, Reader, Source, make_app

    if not spec.api.enabled:
        return lambda: None
    host = str(spec.api.address or spec.nodes[node].address)
    latest = the_agent.snapshots.latest
    try:  # renewed at each start, as the node certificate (same validity)
        writes = api_identity(spec, node, state_dir, time.time())
    except PkiError as exc:
        logging.getLogger(__name__).error("the API writes as the node: %s", exc)
        writes = None
    reader = Reader(
        latest, lambda: open_store(spec, etcd, node=node, identity=tls),
        (lambda: open_store(spec, etcd, node=node, identity=writes)) if writes else None,
    )  # fmt: skip
    served = tls if spec.api.tls else None  # HTTPS with the node's certificate (api.tls)
    server = ApiServer(make_app(Source(latest), reader), host, spec.api.port, reader.close, served)
    try:
        server.start()
    except ApiStartError as exc:
        logging.getLogger(__name__).error("%s; the agent runs without its API", exc)
        return lambda: None
    return server.stop


def _private_state_dir(state_dir: Path) -> None:
    """The state dir made or judged root's alone (corral.agent.statedir): a usage error when
    others may write it, a warning when it had to be tightened."""
    from corral.agent.statedir import UnsafeStateDir, check_state_dir

    try:
        tightened = check_state_dir(state_dir)
    except UnsafeStateDir as exc:
        raise click.ClickException(str(exc)) from None
    if tightened:
        logging.getLogger(__name__).warning("%s", tightened)


def _agent_process(verbose: bool) -> None:
    """Logging, stack dumps on SIGUSR1, and the agent's scheduling weights."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(name)s %(message)s"
    )
    # pyroute2 sets its logger's level to NOTSET when imported: import it first, or with -v
    # every netlink message of the VIP driver is logged (seen drowning the agents' logs)
    importlib.import_module("pyroute2.config.log")
    for noisy in ("httpx", "httpcore", "grpc", "asyncio", "pyroute2"):  # they drown ours
        logging.getLogger(noisy).setLevel(logging.WARNING)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1` dumps the stacks
    for problem in raise_process():
        logging.getLogger(__name__).warning("priority not raised: %s", problem)


def _member_urls(spec: Spec, tls: TlsFiles | None) -> dict[str, str]:
    """The embedded store's voting members: name -> client URL (the proof rounds that keep
    exclusive instances while no member has a leader ask each of them)."""
    members = members_from_spec(spec, Path("/"), tls=tls)
    return {name: config.client_url for name, config in members.items()}


def _secure_store(
    spec: Spec, node: str, etcd: str | None, state_dir: Path, spec_text: str,
    event: Callable[[str, str], Awaitable[None]],
) -> list[asyncio.Task[list[str]]]:  # fmt: skip
    """With the spec's CA bundle here: etcd's ``root`` identity minted from it into
    ``<state-dir>/tls-root`` and :func:`corral.agent.rbac.secure_store` started beside the
    agent (its task; none without a bundle: the operator's own PKI, or no TLS)."""
    from corral.agent.rbac import secure_store

    found = spec.store_tls
    if found is None or found[1].bundle is None:
        return []
    try:
        root = bundle_identity(Path(found[1].bundle), ROOT, "admin", state_dir / "tls-root",
                               time.time())  # fmt: skip
    except PkiError as exc:  # the node identity came from this bundle: not expected
        logging.getLogger(__name__).error("etcd auth not ensured: %s", exc)
        return []
    ends = endpoints_for(spec, etcd, node)
    work = secure_store(ends, root, Keys(spec.cluster), spec.nodes, spec_text.encode(),
                        lambda text: event("auth", text))  # fmt: skip
    return [asyncio.create_task(work)]


def _node_tls(spec: Spec, node: str, state_dir: Path) -> TlsFiles | None:
    """The node's TLS identity (issued or renewed from the spec's bundle), logged with its
    expiry; a ClickException naming the spec field when it cannot be had."""
    try:
        found = node_identity(spec, node, state_dir, time.time())
    except PkiError as exc:
        raise click.ClickException(str(exc)) from None
    if found is None:
        return None
    _log_identity(found)
    return found.files


def _log_identity(found: NodeIdentity) -> None:
    log = logging.getLogger(__name__)
    if found.reissued:
        log.info("issued the node certificate %s from the cluster CA", found.files.cert)
    if found.validity is not None:
        warn, line = expiry_note(
            f"node certificate {found.files.cert}", found.validity, time.time()
        )
        (log.warning if warn else log.info)("%s", line)


async def _renew_node_cert(spec: Spec, node: str, state_dir: Path, tls: TlsFiles | None) -> None:
    """Daily: re-issue the node certificate (and the API's, ``api:<node>``) when a third of its
    validity is left (the store's next connections and etcd's next handshakes read the new
    files). Without TLS: nothing."""
    while tls is not None:
        await asyncio.sleep(CERT_CHECK_INTERVAL)
        try:
            found = await asyncio.to_thread(node_identity, spec, node, state_dir, time.time())
            await asyncio.to_thread(api_identity, spec, node, state_dir, time.time())
        except PkiError as exc:
            logging.getLogger(__name__).error("node certificate not renewed: %s", exc)
            continue
        if found is not None:
            _log_identity(found)


async def _embedded_member(
    spec: Spec, node: str, state_dir: Path, tls: TlsFiles | None
) -> EmbeddedEtcd | None:
    """Start (or adopt) this core node's etcd member when the spec embeds the store."""
    if spec.store.embedded is None or spec.nodes[node].kind != "core":
        return None
    member = EmbeddedEtcd(members_from_spec(spec, state_dir / "etcd", tls=tls)[node])
    if await member.healthy():
        logging.getLogger(__name__).info("adopting the etcd member already serving here")
        return None
    await member.start(wait=False)
    member.supervise()
    return member


async def read_cluster(store: EtcdStore, cluster: str) -> tuple[Keys, list[KeyValue]]:
    """Every key of ``cluster`` but the secrets (:func:`corral.auth.read_public`), in key
    order; closes ``store``."""
    try:
        keys = Keys(cluster)
        return keys, (await read_public(store, keys))[0]
    finally:
        await store.close()


def _render(view: dict[str, Any], console: Console) -> None:
    console.print(
        f"[bold]cluster {view['cluster']}[/bold]  controller: "
        f"{view['controller'] or '[red]none[/red]'}"
    )
    console.print(
        "nodes: "
        + ", ".join(
            f"{n} [{'green' if s == 'online' else 'red'}]{s}[/]"
            + (" [yellow]maintenance[/]" if view["node_maintenance"].get(n) else "")
            for n, s in view["nodes"].items()
        )
    )
    for line in maintenance_lines(view["maintenance"]):
        console.print(line, style="yellow", markup=False)
    console.print(_resource_table(view))
    for backend, servers in view.get("backends", {}).items():
        shown = []
        for server, by_lb in servers.items():
            states = set(by_lb.values())
            shown.append(
                f"{server} {states.pop()}"
                if len(states) == 1
                else f"{server} " + "/".join(f"{s}@{lb}" for lb, s in sorted(by_lb.items()))
            )
        console.print(f"haproxy {backend}: " + ", ".join(shown), markup=False)
    for skipped in view.get("skipped_records", []):
        console.print(f"unreadable record left out: {skipped}", markup=False)
    for event in view["last_events"][-3:]:
        stamp = time.strftime("%H:%M:%S", time.localtime(event.get("time", 0)))
        console.print(f"{stamp} {event.get('node')}: {event.get('reason')}", markup=False)


def _resource_table(view: dict[str, Any]) -> Table:
    """One row per resource of the status view: where it runs, its failures, maintenance."""
    table = Table(
        "resource",
        "mode",
        "assigned",
        "running (health)",
        "failures",
        box=None,
        header_style="bold",
    )
    for name, r in view["resources"].items():
        running = (
            ", ".join(
                f"{i['node']}"
                + (f" {i['item']}" if i.get("item") else f" {i['health']}")
                + (" promoted" if i["role"] == "promoted" else "")
                + (f" (maintenance: {i['maintenance']['level']})" if i.get("maintenance") else "")
                for i in r["running"]
            )
            or "-"
        )
        fails = ", ".join(f"{n}:{c}" for n, c in r["failcounts"].items() if c) or ""
        if r.get("systemic"):
            fails = ", ".join(filter(None, [fails, "systemic (not counted)"]))
        table.add_row(
            name + (" (maintenance)" if r.get("maintenance") else ""),
            r["mode"] if r["kind"] != "vip-set" else "vip-set",
            ", ".join(r["assigned"]) or "-",
            running,
            fails,
        )
    return table


@click.command()
@click.option("--spec", "spec_file", required=True, type=click.Path(dir_okay=False))
@click.option("--etcd", help=ETCD_HELP)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--watch", is_flag=True, help="Refresh every second until Ctrl-C.")
def status(spec_file: str, etcd: str | None, as_json: bool, watch: bool) -> None:
    """Nodes, resources, where each instance runs and its health, the last events."""
    spec = spec_or_exit(spec_file)
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, 140)  # a pipe or a log: one line per resource
    while True:
        try:
            keys, kvs = asyncio.run(read_cluster(open_store(spec, etcd), spec.cluster))
        except Exception as exc:  # the store's errors name the endpoints
            raise click.ClickException(f"cannot read the cluster state: {exc}") from None
        view = cluster_view(spec, keys, kvs)
        if as_json:
            click.echo(json.dumps(view, indent=2))
        else:
            if watch:
                console.clear()
            _render(view, console)
        if not watch:
            return
        time.sleep(1.0)


@click.command()
@click.option("--spec", "spec_file", required=True, type=click.Path(dir_okay=False))
@click.option("--etcd", help=ETCD_HELP)
@click.option("-n", "--last", default=30, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def events(spec_file: str, etcd: str | None, last: int, as_json: bool) -> None:
    """The cluster's recent events, each with its reason."""
    spec = spec_or_exit(spec_file)
    keys, kvs = asyncio.run(read_cluster(open_store(spec, etcd), spec.cluster))
    for event in events_of(keys, kvs, last):
        if as_json:
            click.echo(json.dumps({"schema": SCHEMAS["event"], **event.to_value()}, sort_keys=True))
        else:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.time))
            click.echo(f"{stamp} {event.node} {event.kind}: {event.reason}")


@click.command()
@click.option("--spec", "spec_file", required=True, type=click.Path(dir_okay=False))
@click.option("--etcd", help=ETCD_HELP)
@click.option("--json", "as_json", is_flag=True)
def members(spec_file: str, etcd: str | None, as_json: bool) -> None:
    """Gossip members as every agent sees them: state, incarnation, last seen."""
    spec = spec_or_exit(spec_file)
    views = members_of(*asyncio.run(read_cluster(open_store(spec, etcd), spec.cluster)))
    if as_json:
        rows = {node: [r.to_value() for r in view] for node, view in views.items()}
        click.echo(json.dumps({"schema": SCHEMAS["members"], "members": rows}, indent=2))
        return
    if not views:
        click.echo("no agent has published a gossip view (are the agents running?)")
        return
    reporters = sorted(views)
    table = Table("member", *(f"seen by {r}" for r in reporters), box=None, header_style="bold")
    for name in spec.nodes:
        cells = []
        for r in reporters:
            row = next((m for m in views[r] if m.name == name), None)
            if row is None:
                cells.append("-")
            else:
                seen = row.last_seen
                ago = f", {seen:.1f}s ago" if seen is not None and seen > 0 else ""
                cells.append(f"{row.state} (inc {row.incarnation}{ago})")
        table.add_row(name, *cells)
    Console(highlight=False).print(table)


@click.command(name="push")
@click.argument("spec_file", type=click.Path(dir_okay=False))
@click.option("--etcd", help=ETCD_HELP)
def spec_push(spec_file: str, etcd: str | None) -> None:
    """Validate SPEC_FILE and make it the cluster's running spec (agents pick it up)."""
    from corral import actions
    from corral.cli.admin import run_action  # it builds on this module

    spec = spec_or_exit(spec_file)
    text = Path(spec_file).read_text()
    run_action(spec, etcd, lambda: actions.spec_push(spec, text, spec_file), {"spec": "SPEC_FILE"})
    click.echo(f"{spec_file}: pushed to cluster {spec.cluster}")


@click.group(name="spec")
def spec_group() -> None:
    """Manage the cluster's running spec."""


spec_group.add_command(spec_push)


@click.command()
@click.argument("spec_file", type=click.Path(dir_okay=False))
@click.argument("resource")
@click.option("--node", required=True, help="Whose {node.*} values fill the check templates.")
def check(spec_file: str, resource: str, node: str) -> None:
    """Run RESOURCE's health checks once, as a Nagios/Sensu plugin (exit 0/1/2/3)."""
    from corral.drivers.base import NodeContext
    from corral.health.nagios import check_all

    spec = spec_or_exit(spec_file)
    if resource not in spec.resources:
        raise click.BadParameter(f"unknown resource {resource!r}", param_hint="RESOURCE")
    if node not in spec.nodes:
        raise click.BadParameter(f"unknown node {node!r}", param_hint="--node")
    n = spec.nodes[node]
    ctx = NodeContext(node, str(n.address), dict(n.attrs))
    code, line = asyncio.run(check_all(spec.resources[resource].health, ctx))
    click.echo(line)
    raise SystemExit(code)
