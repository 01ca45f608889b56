"""Commands for a real host: ``install-unit`` (the systemd unit of ``corral agent``).

The unit is package data (``corral/data/corral.service``); its ``ExecStart=`` is written for
this installation and node. An installed unit that differs from what would be written (the
operator edited it, or another corral version wrote it) is kept unless ``--force``: local
changes belong in a drop-in (``systemctl edit corral``), which this never touches.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import click

UNIT = "corral.service"
UNIT_DIR = Path("/etc/systemd/system")
SPEC = Path("/etc/corral/spec.yaml")
STATE = Path("/var/lib/corral")


def shipped_unit() -> str:
    return (resources.files("corral") / "data" / UNIT).read_text()


def corral_command() -> list[str]:
    """How this installation runs corral: its ``corral`` script beside the interpreter, else
    the interpreter with ``-m corral.cli.main`` (a source checkout)."""
    script = Path(sys.executable).parent / "corral"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "corral.cli.main"]


def render_unit(
    command: list[str], node: str, spec: Path, state_dir: Path, etcd: str | None = None
) -> str:
    """The shipped unit with ``ExecStart=`` for ``command`` (``%`` escaped for systemd, except
    in ``node``, where ``%l``, the short host name, is meant)."""
    args = [*command, "agent", "--spec", str(spec), "--node", node]
    args += ["--state-dir", str(state_dir), *(["--etcd", etcd] if etcd else [])]
    quoted = [shlex.quote(a).replace("%", "%%") if a != node else shlex.quote(a) for a in args]
    lines = [
        f"ExecStart={' '.join(quoted)}" if line.startswith("ExecStart=") else line
        for line in shipped_unit().splitlines()
    ]
    if state_dir != STATE:
        lines = [
            f"Environment=CORRAL_STATE_DIR={state_dir}"
            if line.startswith("Environment=CORRAL_STATE_DIR=")
            else line
            for line in lines
        ]
    return "\n".join(lines) + "\n"


def install(path: Path, text: str, force: bool) -> str:
    """Write ``text`` to ``path`` unless a different unit is there (``force`` overwrites);
    what was done, in words. Raises ``click.ClickException`` on a refusal."""
    try:
        current = path.read_text()
    except FileNotFoundError:
        current = None
    if current == text:
        return f"{path}: already installed, unchanged"
    if current is not None and not force:
        raise click.ClickException(
            f"{path} exists and differs from the unit this corral writes: keep local changes "
            f"in a drop-in (systemctl edit corral); --force replaces it"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(text)
    tmp.chmod(0o644)
    tmp.replace(path)
    return f"{path}: {'replaced' if current is not None else 'written'}"


def systemd_running() -> bool:
    return Path("/run/systemd/system").is_dir() and shutil.which("systemctl") is not None


@click.command("install-unit")
@click.option("--node", default="%l", show_default=True,
              help="This node's name in the spec (%l: the short host name).")  # fmt: skip
@click.option("--spec", "spec_file", type=click.Path(dir_okay=False, path_type=Path),
              default=SPEC, show_default=True)  # fmt: skip
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=STATE,
              show_default=True)  # fmt: skip
@click.option("--etcd", help="External etcd endpoints (default: the spec's store).")
@click.option("--unit-dir", type=click.Path(file_okay=False, path_type=Path), default=UNIT_DIR,
              show_default=True)  # fmt: skip
@click.option("--force", is_flag=True, help="Replace a unit that differs from this one.")
@click.option("--no-reload", is_flag=True, help="Do not run systemctl daemon-reload.")
def install_unit(
    node: str, spec_file: Path, state_dir: Path, etcd: str | None, unit_dir: Path,
    force: bool, no_reload: bool,
) -> None:  # fmt: skip
    """Write the systemd unit of `corral agent` (then: systemctl enable --now corral)."""
    text = render_unit(corral_command(), node, spec_file.absolute(), state_dir.absolute(), etcd)
    click.echo(install(unit_dir / UNIT, text, force))
    if no_reload:
        return
    if not systemd_running():
        click.echo("systemd is not running here: no daemon-reload")
        return
    done = subprocess.run(["systemctl", "daemon-reload"], capture_output=True, text=True)
    if done.returncode != 0:
        raise click.ClickException(f"systemctl daemon-reload failed: {done.stderr.strip()}")
    click.echo("systemctl daemon-reload: done; start it with: systemctl enable --now corral")
