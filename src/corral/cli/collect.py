"""What ``corral report`` collects (shell): each collector adds files to a :class:`Bundle`, or
a note saying what it could not have and why. A collector never raises for a dead store, an
unreachable node or a missing tool: the report is most wanted when something is broken.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel

from corral import __version__
from corral.cli.cluster import open_store, read_cluster
from corral.core.scheduler import dump_state_text
from corral.drivers.secrets import SecretError, read_secret_file
from corral.records import Event, snapshot_from_kvs
from corral.records.view import cluster_view
from corral.spec import Spec
from corral.spec.secrets import SecretRef
from corral.store.embedded import EmbeddedError, find_etcd

COMMAND_TIMEOUT = 10.0  # seconds for one version query or one node's log
STORE_TIMEOUT = 4.0  # seconds for the store, in all (one call: a quarter of it)
INPUTS_KEPT = 20  # controller inputs at most (the newest in the window)
LOG_BYTES = 20 * 1024 * 1024  # per node: a window of a busy agent's debug log, not a disk


@dataclass(frozen=True)
class Window:
    start: float  # unix time
    end: float

    def __contains__(self, when: float) -> bool:
        return self.start <= when <= self.end


@dataclass
class Bundle:
    files: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, text: str) -> None:
        self.files[name] = text

    def note(self, text: str) -> None:
        self.notes.append(text)


def secret_refs(value: object) -> Iterator[tuple[str, SecretRef]]:
    """Every secret reference in a spec model, with the field name that holds it."""
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            item = getattr(value, name)
            if isinstance(item, SecretRef):
                yield name, item
            else:
                yield from secret_refs(item)
    elif isinstance(value, dict):
        for name, item in value.items():
            if isinstance(item, SecretRef):
                yield str(name), item
            else:
                yield from secret_refs(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from secret_refs(item)


def secret_values(spec: Spec, bundle: Bundle) -> list[str]:
    """The values every file of the report is scrubbed of: the spec's file secrets readable
    here, and the etcd password of this environment. Exec secrets are not run (a report must
    not have side effects): a command that printed its secret into a log is not caught."""
    values = [os.environ.get("CORRAL_ETCD_PASSWORD", "")]
    execs = 0
    for name, ref in secret_refs(spec):
        if ref.exec is not None:
            execs += 1
        elif ref.file is not None and "{" not in ref.file:
            with contextlib.suppress(SecretError):  # not here, or not readable: none to scrub
                values.append(read_secret_file(ref.file, name))
    if execs:
        bundle.note(f"{execs} exec secret(s) were not run: a value printed by one is not masked")
    return [v for v in values if v]


def collect_store(spec: Spec, etcd: str | None, bundle: Bundle, window: Window) -> None:
    """status.json (as ``corral status --json``), events.jsonl (in the window), state.yaml
    (``corral state dump``) and store.jsonl (every public key)."""
    try:
        store = open_store(spec, etcd, timeout=STORE_TIMEOUT / 4, attempt_timeout=0.5)
        read = read_cluster(store, spec.cluster)
        keys, kvs = asyncio.run(asyncio.wait_for(read, STORE_TIMEOUT))
    except Exception as exc:  # the store's errors name the endpoints
        bundle.note(f"store unreachable, no events/state/status in this report: {exc}")
        return
    bundle.add("status.json", json.dumps(cluster_view(spec, keys, kvs), indent=2))
    events = [e for kv in kvs if kv.key.startswith(keys.event_prefix())
              if (e := Event.parse(kv.value)) is not None and e.time in window]  # fmt: skip
    bundle.add("events.jsonl", "".join(json.dumps(e.to_value()) + "\n" for e in events))
    snap = snapshot_from_kvs(spec, keys, kvs, now=time.time())
    bundle.add("state.yaml", dump_state_text(snap, header=f"state of {spec.cluster}"))
    rows = [{"key": kv.key.decode(errors="replace"), "value": kv.value.decode(errors="replace"),
             "mod_revision": kv.mod_revision} for kv in kvs]  # fmt: skip
    bundle.add("store.jsonl", "".join(json.dumps(r) + "\n" for r in rows))


def collect_inputs(state_dir: Path, node: str, bundle: Bundle, window: Window) -> None:
    """The newest controller inputs of this node written in the window (its plans)."""
    directory = state_dir / "controller-inputs"
    try:
        found = sorted(directory.glob("input-*.yaml"))
        inputs = [p for p in found if p.stat().st_mtime in window][-INPUTS_KEPT:]
        texts = {p.name: p.read_text(errors="replace") for p in inputs}
    except OSError as exc:
        bundle.note(f"{node}: controller inputs: cannot read {directory}: {exc}")
        return
    _add_inputs(node, texts, bundle)


def _add_inputs(node: str, texts: dict[str, str], bundle: Bundle) -> None:
    if not texts:
        bundle.note(f"{node}: no controller input in the window (not the controller then?)")
    for name, text in texts.items():
        bundle.add(f"controller-inputs/{node}/{name}", text)


MARK = "=== corral-report input"


def inputs_script(state_dir: Path) -> str:
    """A shell script that prints the newest controller inputs, each after a marker line with
    its name and mtime (run on another node through the remote command)."""
    directory = shlex.quote(str(state_dir / "controller-inputs"))
    return (f"cd {directory} 2>/dev/null || exit 0; for f in $(ls input-*.yaml 2>/dev/null | "
            f"tail -n {INPUTS_KEPT}); do echo \"{MARK} $f $(stat -c %Y $f)\"; cat \"$f\"; "
            "done")  # fmt: skip


def parse_inputs(text: str, window: Window) -> dict[str, str]:
    """What :func:`inputs_script` printed: name -> text, for the inputs written in the window."""
    out: dict[str, str] = {}
    for chunk in text.split(MARK + " ")[1:]:
        head, _, body = chunk.partition("\n")
        name, _, mtime = head.partition(" ")
        if mtime.strip().isdigit() and float(mtime) in window and name.startswith("input-"):
            out[name] = body
    return out


def run(argv: Sequence[str], timeout: float = COMMAND_TIMEOUT) -> tuple[bool, str]:
    """(exit status 0, output or the reason it failed): never raises."""
    try:
        done = subprocess.run(list(argv), capture_output=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    out = done.stdout[-LOG_BYTES:].decode(errors="replace")
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace").strip()[-2000:]
        return False, f"exit status {done.returncode}: {err}"
    return True, out


def collect_versions(bundle: Bundle) -> None:
    lines = [f"corral {__version__}", f"python {sys.version.split()[0]} ({sys.executable})"]
    lines.append(f"kernel {platform.release()} {platform.machine()}")
    try:
        etcd: str | None = find_etcd()
    except EmbeddedError:
        etcd = None
    for name, argv in (("etcd", [etcd, "--version"] if etcd else None),
                       ("haproxy", [shutil.which("haproxy"), "-v"])):  # fmt: skip
        ok, out = run([str(a) for a in argv]) if argv and argv[0] else (False, "not installed")
        lines.append(f"{name} {out.strip().splitlines()[0] if ok and out.strip() else out}")
    try:
        os_release = Path("/etc/os-release").read_text()
        lines += [line for line in os_release.splitlines() if line.startswith("PRETTY_NAME=")]
    except OSError:
        pass
    bundle.add("versions.txt", "\n".join(lines) + "\n")


def journal_command(window: Window) -> list[str]:
    return ["journalctl", "-u", "corral", "--no-pager", "-o", "short-iso-precise",
            "--since", f"@{int(window.start)}", "--until", f"@{int(window.end) + 1}"]  # fmt: skip


def collect_nodes(
    spec: Spec, me: str | None, remote: str, state_dir: Path, log_files: Sequence[Path],
    bundle: Bundle, window: Window,
) -> None:  # fmt: skip
    """Each node's agent log in the window and its controller inputs: this node's from
    journald (else ``log_files``) and its state dir, the others' through ``remote`` (a
    command prefix with ``{node}`` and ``{address}``, e.g. ``ssh root@{address}``, given one
    shell command line; their state dir at the same path; empty: this node only)."""
    command = journal_command(window)
    for node, spec_node in spec.nodes.items():
        if node == me:
            ok, out = run(command) if shutil.which("journalctl") else (False, "no journalctl")
            if ok and out.strip() and "-- No entries --" not in out:
                bundle.add(f"logs/{node}.journal.txt", out)
            else:
                bundle.note(f"{node} (this node): no journal of corral ({out.strip()[:200]})")
            for path in log_files:
                _add_log_file(path, node, bundle, window)
            if (state_dir / "guard.log").exists():  # what the lease guard did (rule 1)
                _add_log_file(state_dir / "guard.log", node, bundle, window)
            collect_inputs(state_dir, node, bundle, window)
        elif remote:
            prefix = shlex.split(remote.format(node=node, address=spec_node.address))
            ok, out = run([*prefix, shlex.join(command)])
            if not ok:
                bundle.note(f"{node}: not reached through {remote!r}: {out[:300]}")
                continue
            bundle.add(f"logs/{node}.journal.txt", out)
            ok, out = run([*prefix, inputs_script(state_dir)])
            if ok:
                _add_inputs(node, parse_inputs(out, window), bundle)
            else:
                bundle.note(f"{node}: controller inputs not collected: {out[:300]}")
    if me is None:
        bundle.note("this host is none of the spec's nodes: no local log or controller input")


def _add_log_file(path: Path, node: str, bundle: Bundle, window: Window) -> None:
    """The lines of ``path`` in the window (a line without a leading time follows the line
    before it: a traceback stays whole)."""
    try:
        text = path.read_bytes()[-LOG_BYTES:].decode(errors="replace")
    except OSError as exc:
        bundle.note(f"{node}: cannot read {path}: {exc}")
        return
    kept, keep = [], False
    for line in text.splitlines():
        stamp = _line_time(line)
        if stamp is not None:
            keep = stamp in window
        if keep:
            kept.append(line)
    bundle.add(f"logs/{node}.{path.name}", "\n".join(kept) + "\n")


def _line_time(line: str) -> float | None:
    """The time of a log line that starts with ``YYYY-MM-DD HH:MM:SS`` (the agent's format)."""
    try:
        return time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S"))
    except ValueError:
        return None
