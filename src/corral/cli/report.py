"""``corral report``: one archive to attach to a bug report, from any node (like Pacemaker's
``crm_report``).

Inside ``corral-report-<cluster>-<time>/``: ``README.txt`` (what is inside, the window, and a
note for everything that could not be had: a dead store, an unreachable node, a missing tool),
``spec.yaml``, ``status.json``, ``events.jsonl``, ``state.yaml`` (replayable with ``corral
simulate SPEC --state``), ``store.jsonl``, ``controller-inputs/<node>/`` (each reachable
node's plans in the window: the controller's), ``logs/<node>.*`` (every reachable agent's log
in the window, and this node's lease guard log) and ``versions.txt``.

Secrets: the store's ``secrets/`` keys are never read; every file is scrubbed of the values
of the spec's file secrets readable here and of the etcd password, and of the value of every
``key=value``/``key: value`` whose key names a secret (:func:`corral.drivers.secrets.redact`).
The archive is written mode 0600.
"""

from __future__ import annotations

import io
import os
import re
import socket
import tarfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from corral.cli.cluster import ETCD_HELP, STATE_DIR, spec_or_exit
from corral.cli.init import host_addresses
from corral.spec import Spec

if TYPE_CHECKING:  # the collectors import every driver: only when a report is made
    from corral.cli.collect import Bundle, Window

REMOTE = "ssh -o BatchMode=yes -o ConnectTimeout=5 root@{address}"
_RELATIVE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str, now: float) -> float:
    """``30m``/``2h``/``1d`` ago, or a local ``YYYY-MM-DD HH:MM[:SS]``."""
    if match := _RELATIVE.match(text.strip()):
        return now - int(match[1]) * _UNITS[match[2]]
    for form in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"):
        try:
            return time.mktime(time.strptime(text.strip(), form))
        except ValueError:
            continue
    raise click.BadParameter(f"{text!r}: write 30m, 2h, 1d (ago) or 'YYYY-MM-DD HH:MM[:SS]'")


def this_node(spec: Spec, option: str | None) -> str | None:
    if option is not None:
        if option not in spec.nodes:
            raise click.BadParameter(f"{option!r} is not in the spec", param_hint="--node")
        return option
    short = socket.gethostname().split(".")[0]  # what the unit's --node %l names it
    if short in spec.nodes:
        return short
    mine = set(host_addresses())
    return next((n for n, node in spec.nodes.items() if str(node.address) in mine), None)


def readme(spec: Spec, window: Window, bundle: Bundle, me: str | None) -> str:
    stamp = "%Y-%m-%d %H:%M:%S %Z"
    lines = [
        f"corral report of cluster {spec.cluster}, made on {me or 'a host outside the spec'}",
        f"window: {time.strftime(stamp, time.localtime(window.start))} .. "
        f"{time.strftime(stamp, time.localtime(window.end))}",
        "",
        "files:",
        *(f"  {name}" for name in sorted(bundle.files)),
        "",
        "notes (what could not be collected, and why):" if bundle.notes else "notes: none",
        *(f"  - {note}" for note in bundle.notes),
    ]
    return "\n".join(lines) + "\n"


def write_archive(path: Path, top: str, files: dict[str, str]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, text in sorted(files.items()):
            data = text.encode()
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mtime, info.mode = len(data), int(time.time()), 0o600
            tar.addfile(info, io.BytesIO(data))


@click.command("report")
@click.option("--spec", "spec_file", type=click.Path(dir_okay=False),
              default="/etc/corral/spec.yaml", show_default=True)  # fmt: skip
@click.option("--etcd", help=ETCD_HELP)
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path),
              default=STATE_DIR, show_default=True)  # fmt: skip
@click.option("--node", help="This host's node name (default: its short host name, else "
              "by its addresses).")  # fmt: skip
@click.option("--from", "since", default="1h", show_default=True,
              help="Start of the window: 30m, 2h, 1d (ago) or 'YYYY-MM-DD HH:MM'.")  # fmt: skip
@click.option("--to", "until", default=None, help="End of the window (default: now).")
@click.option("--remote", default=REMOTE, show_default=True,
              help="Command prefix that runs a command on another node ({node}, {address}); "
              "'' for this node's log only.")  # fmt: skip
@click.option("--log", "log_files", multiple=True, type=click.Path(path_type=Path),
              help="A log file of this node's agent to include (when it does not log to "
              "journald); repeat it.")  # fmt: skip
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The archive (default: ./corral-report-CLUSTER-TIME.tar.gz).")  # fmt: skip
def report(
    spec_file: str, etcd: str | None, state_dir: Path, node: str | None, since: str,
    until: str | None, remote: str, log_files: tuple[Path, ...], out: Path | None,
) -> None:  # fmt: skip
    """One tar.gz for a bug report: events, state, status, recent plans, every reachable
    agent's log in the window, the spec (secrets removed) and versions."""
    from corral.cli.collect import (
        Bundle,
        Window,
        collect_nodes,
        collect_store,
        collect_versions,
        secret_values,
    )
    from corral.drivers.secrets import redact

    spec = spec_or_exit(spec_file)
    now = time.time()
    window = Window(parse_time(since, now), parse_time(until, now) if until else now)
    me = this_node(spec, node)
    top = f"corral-report-{spec.cluster}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}"
    path = out or Path(f"{top}.tar.gz")
    if path.exists():
        raise click.ClickException(f"{path} exists: choose another --out")
    bundle = Bundle()
    bundle.add("spec.yaml", Path(spec_file).read_text())
    collect_versions(bundle)
    collect_store(spec, etcd, bundle, window)
    collect_nodes(spec, me, remote, state_dir, log_files, bundle, window)
    secrets = secret_values(spec, bundle)
    bundle.add("README.txt", readme(spec, window, bundle, me))
    files = {name: redact(text, secrets) for name, text in bundle.files.items()}
    try:
        write_archive(path, top, files)
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc}") from None
    click.echo(f"{path}: {len(files)} files, {len(bundle.notes)} note(s) (see README.txt)")
