"""The CLI's identity and the audit of its changes (:mod:`corral.auth.audit`).

Who the CLI is (:func:`whoami`): the etcd user of ``CORRAL_ETCD_USER`` (password auth), else
the CN of the client certificate the CLI presents to etcd (:func:`corral.cli.cluster.tls_for`:
``CORRAL_ETCD_CERT``, the spec's, the node's own), else
``local:<unix user>``, unauthenticated. Its role: :func:`corral.auth.identity.role_of`, a
person's from their ``auth/users/`` record.

:func:`run_audited` runs one change command's store work and writes its one audit event.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import click

from corral.auth.audit import audited
from corral.auth.identity import Identity, Via, cert_cn, local, role_of
from corral.auth.users import read_role
from corral.cli.cluster import open_store
from corral.spec import Spec
from corral.store import EtcdStore, Keys, PermissionDenied, Store, StoreError
from corral.store.tls import TlsFiles

T = TypeVar("T")


def claimed_name(tls: TlsFiles | None = None) -> tuple[str, Via] | None:
    """The name the CLI's credentials carry, and how they prove it (None: no credentials);
    ``tls``: the files it presents (default: ``CORRAL_ETCD_CERT`` alone)."""
    user = os.environ.get("CORRAL_ETCD_USER")
    if user:
        return user, "password"
    cert = tls.cert if tls is not None else os.environ.get("CORRAL_ETCD_CERT")
    if cert:
        try:
            return cert_cn(Path(cert).read_bytes()), "cert"
        except (OSError, ValueError) as exc:
            raise click.ClickException(f"CORRAL_ETCD_CERT {cert}: {exc}") from None
    return None


async def whoami(store: Store, keys: Keys) -> Identity:
    """The CLI's identity (the module docstring); a store that cannot say a person's role
    leaves it unknown (None) rather than failing the command."""
    tls = store.tls if isinstance(store, EtcdStore) else None
    claimed = claimed_name(tls)
    if claimed is None:
        return local(getpass.getuser())
    name, via = claimed
    role = role_of(name, {})
    if role is None:
        try:
            role = await read_role(store, keys, name)
        except StoreError:
            role = None
    return Identity(name, role, via)


def run_audited(
    spec: Spec,
    etcd: str | None,
    action: str,
    work: Callable[[Store, str], Awaitable[T]],
    resource: str = "",
) -> T:
    """Open the store, run ``work`` on it (with the CLI's identity's name) and audit it (one
    event); a refusal by etcd's RBAC exits with a message that says so."""

    async def main() -> T:
        store = open_store(spec, etcd)
        keys = Keys(spec.cluster)
        try:
            me = await whoami(store, keys)
            return await audited(
                store,
                keys,
                me,
                action,
                lambda: work(store, me.name),
                wall=time.time,
                warn=lambda text: click.echo(f"warning: {text}", err=True),
                resource=resource,
            )
        finally:
            await store.close()

    try:
        return asyncio.run(main())
    except PermissionDenied as exc:
        raise click.ClickException(f"refused: {exc}") from None
