"""``corral lab``: the network-namespace lab (up, status, down, exec, fault)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click

from corral.lab.lab import LAB_ROOT, Lab, LabError
from corral.lab.netns import NetnsError

ERRORS = (LabError, NetnsError, OSError)

DIR_HELP = f"The lab directory (default: {LAB_ROOT}/<cluster>, or the only lab there)."


def _lab_dir(lab_dir: Path | None) -> Path:
    if lab_dir is not None:
        return lab_dir
    labs = sorted(p.parent for p in LAB_ROOT.glob("*/lab.json"))
    if len(labs) == 1:
        return labs[0]
    if not labs:
        raise click.UsageError(f"no lab under {LAB_ROOT}; give --dir")
    raise click.UsageError(
        f"several labs under {LAB_ROOT}: give --dir ({', '.join(map(str, labs))})"
    )


def _fail(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc))


dir_option = click.option(
    "--dir", "lab_dir", type=click.Path(file_okay=False, path_type=Path), help=DIR_HELP
)

servers_option = click.option(
    "--servers",
    type=click.Choice(["auto", "real", "standin"]),
    default="auto",
    show_default=True,
    help="What galera and rabbitmq resources run: the real MariaDB Galera and RabbitMQ in the "
    "node namespaces when installed (auto; real: refuse without them), or HTTP stand-ins.",
)


@click.group(name="lab")
def lab_group() -> None:
    """Network-namespace lab: a namespace per node on a bridge, real agents, fault injection."""


@lab_group.command()
@click.argument("spec_file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--nodes", type=int, help="Use the first N nodes of the spec (default all).")
@dir_option
@click.option("--timeout", default=90.0, show_default=True, help="Seconds to wait for agents.")
@click.option(
    "--fence-action",
    type=click.Choice(["off", "reboot", "none"]),
    help="What fencing does to a lost node (default: the spec's fence device's action; "
    "none: no fencing).",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Put the nodes' state (etcd's data, agent state and logs) here, on a real disk, "
    "instead of in the lab directory.",
)
@click.option(
    "--tls/--plain",
    default=True,
    show_default=True,
    help="etcd over TLS with client certificates (a CA in the lab directory, node certificates "
    "issued by the agents, an admin identity for `corral lab exec`), or plain http.",
)
@servers_option
def up(
    spec_file: Path,
    nodes: int | None,
    lab_dir: Path | None,
    timeout: float,
    fence_action: str | None,
    data_dir: Path | None,
    tls: bool,
    servers: str,
) -> None:
    """Build the lab for SPEC_FILE (services rewritten to stand-ins, galera and rabbitmq real
    when installed) and start its agents."""
    try:
        lab = Lab.up(
            spec_file,
            lab_dir,
            nodes=nodes,
            timeout=timeout,
            fence_action=fence_action,
            data_dir=data_dir,
            tls=tls,
            servers=servers,
        )
    except ERRORS as exc:
        raise _fail(exc) from None
    state = lab.state()
    for note in state.get("notes", []):
        click.echo(f"note: {note}")
    click.echo(f"lab {state['id']} up in {lab.dir}: spec {lab.spec_file}")
    for name, n in state["nodes"].items():
        click.echo(f"  {name}: {n['address']} in {n['ns']}, agent pid {n['agent_pid']}")
    click.echo(f"  client: {', '.join(state['client']['addresses'])} in {state['client']['ns']}")
    click.echo(f"try: corral lab exec client -- corral status --spec {lab.spec_file}")


@lab_group.command()
@dir_option
@click.option("--json", "as_json", is_flag=True)
def status(lab_dir: Path | None, as_json: bool) -> None:
    """What the lab made: namespaces, power, link states, agent pids."""
    try:
        view = Lab(_lab_dir(lab_dir)).status()
    except ERRORS as exc:
        raise _fail(exc) from None
    if as_json:
        click.echo(json.dumps(view, indent=2))
        return
    click.echo(f"lab {view['id']} cluster {view['cluster']} in {view['dir']}")
    click.echo(f"  switch {view['switch']['namespace']} bridge {view['switch']['bridge']}")
    for name, n in view["nodes"].items():
        power = "on" if n["powered"] else "OFF"
        agent = f"agent {n['agent_pid']}" + ("" if n["agent_alive"] else " (dead)")
        netem = f" netem [{n['netem']}]" if n["netem"] else ""
        click.echo(
            f"  {name}: power {power}, link {n['link']}, switch port {n['switch_port']}, "
            f"{' '.join(n['addresses'])}, {agent}, {n['processes']} process(es){netem}"
        )


@lab_group.command()
@dir_option
@click.option("--force", is_flag=True, help="Also after a crash: find leftovers by name.")
def down(lab_dir: Path | None, force: bool) -> None:
    """Stop every process of the lab and delete its namespaces (idempotent)."""
    try:
        removed = Lab(_lab_dir(lab_dir)).down(force=force)
    except ERRORS as exc:
        raise _fail(exc) from None
    for line in removed:
        click.echo(f"removed {line}")
    if not removed:
        click.echo("nothing to remove")


@lab_group.command(name="exec", context_settings={"ignore_unknown_options": True})
@dir_option
@click.argument("node")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_cmd(lab_dir: Path | None, node: str, command: tuple[str, ...]) -> None:
    """Run COMMAND in NODE's namespace (or the client's: NODE = client)."""
    argv = list(command)
    if argv[0] == "corral":  # the corral of this interpreter, also outside a venv's PATH
        argv = [sys.executable, "-m", "corral.cli.main", *argv[1:]]
    try:
        full = Lab(_lab_dir(lab_dir)).exec_argv(node, argv)
    except ERRORS as exc:
        raise _fail(exc) from None
    sys.stdout.flush()
    raise SystemExit(subprocess.call(full, env=os.environ.copy()))


@lab_group.group()
def fault() -> None:
    """Inject a fault into one node."""


def _fault(lab_dir: Path | None, action: str, *args: str, **kwargs: float) -> object:
    try:
        lab = Lab(_lab_dir(lab_dir))
        return getattr(lab, action)(*args, **kwargs)
    except ERRORS as exc:
        raise _fail(exc) from None


def _simple(name: str, doc: str) -> None:
    @fault.command(name=name.replace("_", "-"), help=doc)
    @dir_option
    @click.argument("node")
    def command(lab_dir: Path | None, node: str) -> None:
        result = _fault(lab_dir, name, node)
        click.echo(f"{name.replace('_', '-')} {node}" + (f": {result}" if result else ""))


for _name, _doc in (
    ("power_off", "SIGKILL every process of NODE, its link down, its VIPs removed."),
    ("power_on", "Link up and NODE's agent started again."),
    ("cut_link", "NODE's switch port down (processes keep running)."),
    ("heal_link", "NODE's switch port up again."),
    ("partition", "Cut NODE off from the other nodes only (the client still reaches it)."),
    ("heal_partition", "End NODE's partition."),
    ("clear_netem", "Remove loss and delay from NODE's link."),
    ("kill_agent", "SIGKILL NODE's agent only (guard, etcd, services keep running)."),
    ("kill_etcd", "SIGKILL NODE's embedded etcd member (the agent restarts it)."),
    ("freeze", "SIGSTOP every process of NODE (a paused machine)."),
    ("thaw", "SIGCONT every process of NODE."),
):
    _simple(_name, _doc)


@fault.command()
@dir_option
@click.argument("node")
@click.option("--loss", type=float, default=0.0, help="Percent, each direction.")
@click.option("--delay", type=float, default=0.0, help="Seconds, each direction.")
def netem(lab_dir: Path | None, node: str, loss: float, delay: float) -> None:
    """Loss and delay on NODE's link."""
    _fault(lab_dir, "netem", node, loss=loss, delay=delay)
    click.echo(f"netem {node}: loss {loss:g}% delay {delay:g}s")


@fault.command(name="kill-service")
@dir_option
@click.argument("node")
@click.argument("resource")
def kill_service(lab_dir: Path | None, node: str, resource: str) -> None:
    """SIGKILL RESOURCE's stand-in on NODE."""
    pid = _fault(lab_dir, "kill_service", node, resource)
    click.echo(f"killed {resource} on {node} (pid {pid})")


@fault.command()
@dir_option
@click.argument("node")
@click.argument("resource")
@click.argument("mode", type=click.Choice(["500", "hang", "ok"]))
def malfunction(lab_dir: Path | None, node: str, resource: str, mode: str) -> None:
    """RESOURCE on NODE answers 500, hangs (SIGSTOP), or is ok again (SIGCONT, 200)."""
    _fault(lab_dir, "malfunction", node, resource, mode)
    click.echo(f"{resource} on {node}: {mode}")


@lab_group.command()
@click.argument("spec_file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--minutes", type=float, default=4.0, show_default=True)
@click.option("--fence", type=click.Choice(["reboot", "off", "none"]), default="reboot")
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), help="Work dir.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path))
def chaos(
    spec_file: Path,
    seed: int,
    minutes: float,
    fence: str,
    work: Path | None,
    json_out: Path | None,
) -> None:
    """A seeded chaos run on a fresh lab of SPEC_FILE, judged by the independent checker
    (its own lab: brought up and taken down). Exit 1 when it found a violation."""
    import tempfile

    from corral.lab.chaosrun import RunConfig, dumps, run

    work = work or Path(tempfile.mkdtemp(prefix="crlchaos-", dir="/tmp"))
    result = run(
        RunConfig(
            spec_file, work, seed=seed, minutes=minutes, fence=fence, verbose=True, log=click.echo
        )
    )
    for v in result.get("violations", []):
        click.echo(
            f"[{v['category']}] t={v['at']}s ({v['wall']}) {v['kind']} {v['subject']} "
            f"{v['duration']}s: {v['detail'][:300]} ({v['during']})"
        )
    if json_out is not None:
        json_out.write_text(dumps(result))
    click.echo(f"counts {result.get('counts')}; logs in {work}")
    if result.get("error"):
        raise click.ClickException(str(result["error"]).splitlines()[0])
    if result.get("counts", {}).get("violation"):
        raise SystemExit(1)


if __name__ == "__main__":  # python -m corral.cli.lab (also before it is registered in main)
    lab_group(prog_name="corral lab")
