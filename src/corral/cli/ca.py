"""``corral ca``: the cluster's CA (``init``), operators' certificates (``issue``), and the
expiry of the CA and of certificates (``show``). See :mod:`corral.pki`."""

from __future__ import annotations

import time
from pathlib import Path

import click

from corral.cli.cluster import STATE_DIR
from corral.pki import (
    PkiError,
    bundle_identity,
    expiry_note,
    init_bundle,
    load_bundle,
    read_cert,
    validity_of,
)
from corral.pki.ca import CA_CERT
from corral.pki.files import TLS_DIR
from corral.pki.identity import ROLES
from corral.spec.store import DEFAULT_BUNDLE

BUNDLE_HELP = "The CA bundle directory (ca.crt, ca.key)."


@click.group("ca")
def ca_group() -> None:
    """The cluster's certificate authority (etcd over TLS with client certificates)."""


@ca_group.command("init")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_BUNDLE,
              show_default=True, help="Directory for the bundle (created mode 0700).")  # fmt: skip
@click.option("--cluster", default="corral", show_default=True, help="Recorded in the CA's name.")
def init_cmd(out: Path, cluster: str) -> None:
    """Make the cluster's CA. Copy the directory to every controller (same path, mode 0700):
    each agent issues its own node certificate from it."""
    try:
        out = out.absolute()
        authority = init_bundle(out, cluster, time.time())
    except (PkiError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"CA written to {out} (expires {authority.cert.not_valid_after_utc:%Y-%m-%d})")
    click.echo(f"copy {out} to every controller; set store.embedded.tls: {{bundle: {out}}}")


@ca_group.command("issue")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True,
              help="Recorded in the certificate (OU), mapped to etcd roles by RBAC.")  # fmt: skip
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory for NAME.crt, NAME.key and ca.crt (mode 0700).")  # fmt: skip
@click.option("--bundle", type=click.Path(file_okay=False, path_type=Path),
              default=DEFAULT_BUNDLE, show_default=True, help=BUNDLE_HELP)  # fmt: skip
def issue_cmd(name: str, role: str, out: Path, bundle: Path) -> None:
    """An operator's certificate (CN NAME, the etcd user name); ``root`` is etcd's root user."""
    try:
        files = bundle_identity(bundle, name, role, out, time.time())
    except (PkiError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"issued {name} ({role}): {files.cert}")
    click.echo(
        f"use it: export CORRAL_ETCD_CA={files.ca} CORRAL_ETCD_CERT={files.cert} "
        f"CORRAL_ETCD_KEY={files.key}"
    )


@ca_group.command("show")
@click.option("--bundle", type=click.Path(file_okay=False, path_type=Path),
              default=DEFAULT_BUNDLE, show_default=True, help=BUNDLE_HELP)  # fmt: skip
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path),
              default=STATE_DIR, show_default=True,
              help="Where this node's certificate is.")  # fmt: skip
@click.option("--cert", "certs", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Also show this certificate (repeatable).")  # fmt: skip
def show_cmd(bundle: Path, state_dir: Path, certs: tuple[Path, ...]) -> None:
    """The CA's and the node certificate's expiry (and any --cert's). Exit status 1 when one
    has expired or cannot be read, a warning when one expires within 30 days."""
    now = time.time()
    failed = False
    try:
        load_bundle(bundle, now)
    except PkiError as exc:
        click.echo(f"error: {exc}", err=True)
        failed = True
    shown = [bundle / CA_CERT, *certs]
    node_cert = state_dir / TLS_DIR / "node.crt"
    if node_cert.exists():
        shown.insert(1, node_cert)
    for path in shown:
        failed = _show(path, now) or failed
    if failed:
        raise SystemExit(1)


def _show(path: Path, now: float) -> bool:
    """One line about the certificate at ``path``; True when it expired or cannot be read."""
    try:
        cert = read_cert(path)
    except PkiError as exc:
        click.echo(f"error: {exc}", err=True)
        return True
    validity = validity_of(cert)
    subject = cert.subject.rfc4514_string()
    warn, line = expiry_note(f"{path} ({subject})", validity, now)
    end = f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    click.echo(f"{'WARNING: ' if warn else ''}{line}, on {end}")
    return validity.days_left(now) <= 0
