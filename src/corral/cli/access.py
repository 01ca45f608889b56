"""``corral auth ...`` (etcd's RBAC for corral, people's roles) and ``corral tokens ...``
(API tokens). Every change is audited (:mod:`corral.cli.audit`).

``auth apply`` and ``auth user`` change etcd's users and roles: once auth is on, etcd lets
only its ``root`` user do that (``CORRAL_ETCD_USER=root`` with password auth, or the root
certificate). ``CORRAL_ETCD_ROOT_PASSWORD``, when set, is the password ``root`` gets when
``auth apply`` creates it (password auth; with certificates root needs none).
"""

from __future__ import annotations

import asyncio
import getpass
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click

from corral.auth import tokens as api_tokens
from corral.auth.etcdauth import (
    AuthError,
    EtcdAuth,
    User,
    add_user,
    desired_users,
    enable,
    ensure,
)
from corral.auth.identity import local
from corral.auth.roles import PEOPLE, Role, permissions, table_text
from corral.auth.users import UserRecord, read_people
from corral.cli.audit import claimed_name, run_audited, whoami
from corral.cli.cluster import ETCD_HELP, endpoints_for, open_store, spec_or_exit, tls_for
from corral.spec import Spec
from corral.store import Keys, PermissionDenied, Store
from corral.store.etcd import etcd_client

spec_option = click.option("--spec", "spec_file", required=True, type=click.Path(dir_okay=False))
etcd_option = click.option("--etcd", help=ETCD_HELP)
role_option = click.option("--role", type=click.Choice(PEOPLE), required=True)


async def _auth_client(spec: Spec, etcd: str | None) -> Any:
    """A connected aetcd client of the first endpoint that answers, presenting the CLI's
    certificate (:func:`tls_for`) or, without TLS, its password login, if any."""
    user, password = os.environ.get("CORRAL_ETCD_USER"), os.environ.get("CORRAL_ETCD_PASSWORD")
    tls = tls_for(spec)
    error: Exception = click.ClickException("no etcd endpoint")
    for endpoint in endpoints_for(spec, etcd):
        try:
            client = etcd_client(endpoint, tls=tls, username=user, password=password)
        except ValueError as exc:  # an endpoint's scheme disagrees with the TLS settings
            raise click.UsageError(str(exc)) from None
        try:
            await client.connect()
            return client
        except Exception as exc:
            error = exc
            await client.close()
    raise click.ClickException(f"cannot reach etcd's auth API: {error}")


async def _apply(
    spec: Spec, etcd: str | None, users: Iterable[User], seed: bytes | None
) -> list[str]:
    """``ensure`` for ``users``, auth left as it is (etcd's refusal as PermissionDenied)."""
    api = EtcdAuth(await _auth_client(spec, etcd))
    try:
        root_password = os.environ.get("CORRAL_ETCD_ROOT_PASSWORD")
        return await ensure(
            api, Keys(spec.cluster), users, spec_text=seed, root_password=root_password,
            enable_auth=False,
        )  # fmt: skip
    except AuthError as exc:
        raise _refusal(exc) from None
    finally:
        await api.close()


def _refusal(exc: AuthError) -> Exception:
    """etcd's refusal of an auth call as the store's (audited as refused), else an error."""
    text = str(exc)
    if "permission denied" in text or "user name is empty" in text:
        return PermissionDenied(text)
    return click.ClickException(text)


@click.group("auth")
def auth_group() -> None:
    """Who may do what in the cluster's store (etcd RBAC) and people's roles."""


@auth_group.command("roles")
@spec_option
def roles(spec_file: str) -> None:
    """Print every role's etcd permissions for the cluster of SPEC."""
    keys = Keys(spec_or_exit(spec_file).cluster)
    click.echo(table_text(keys, permissions(keys)), nl=False)


@auth_group.command("whoami")
@spec_option
@etcd_option
def whoami_cmd(spec_file: str, etcd: str | None) -> None:
    """Who this CLI is to the cluster: name, role, how it is proven."""
    spec = spec_or_exit(spec_file)

    async def ask() -> str:
        store = open_store(spec, etcd)
        try:
            return (await whoami(store, Keys(spec.cluster))).describe()
        finally:
            await store.close()

    click.echo(asyncio.run(ask()))


@auth_group.command("apply")
@click.option(
    "--force",
    is_flag=True,
    help="Enable auth even though the spec gives the agents no way to authenticate (tests).",
)
@spec_option
@etcd_option
def apply(spec_file: str, etcd: str | None, force: bool) -> None:
    """Make etcd enforce corral's roles: roles, root, one user per node (node:<name>, agent
    role) and per person recorded (auth user), the spec seeded, then auth enabled. Safe to
    run again; run it as root once auth is on. Refused unless the spec's store uses corral's
    CA bundle (``tls: {bundle: ...}``), without ``--force``."""
    spec = spec_or_exit(spec_file)
    if not force and (problem := agents_cannot_authenticate(spec)):
        raise click.ClickException(problem)
    seed = Path(spec_file).read_bytes()

    async def work(store: Store, _actor: str) -> list[str]:
        people = await read_people(store, Keys(spec.cluster))
        return await _apply(spec, etcd, desired_users(spec.nodes, people), seed)

    async def enable_now() -> bool:
        api = EtcdAuth(await _auth_client(spec, etcd))
        try:
            return await enable(api)
        except AuthError as exc:
            raise click.ClickException(str(exc)) from None
        finally:
            await api.close()

    done = run_audited(spec, etcd, "auth apply", work)
    # enabled after its audit event is written: a first run by an unauthenticated client
    # could not write it once auth is on
    if asyncio.run(enable_now()):
        done.append("auth enabled")
    for line in done:
        click.echo(line)
    click.echo(f"auth applied: {len(done)} change(s)")


def agents_cannot_authenticate(spec: Spec) -> str | None:
    """Why enabling etcd's auth would cut this spec's agents off (None: it would not). Safety:
    with auth on, an agent without an etcd user can renew nothing and write nothing, so every
    node self-fences (rule 1 holds, but the whole cluster stops): refuse before that."""
    tls = spec.store_tls
    if tls is None:
        return (
            "the spec's store is plain http: with auth on, the agents (no certificate, no "
            "password) could write nothing and every node would stop its services; give the "
            "store corral's CA bundle (tls: {bundle: ...}) first"
        )
    field, settings = tls
    if settings.bundle is None:
        return (
            f"{field} uses your own certificate files: once auth is on, etcd's HTTP gateway "
            "refuses certificates with a CN, and the agents' lease renewals go through it "
            "(corral's CA bundle gives each agent a CN-less renewal certificate; your own "
            "PKI cannot yet): use tls: {bundle: ...}"
        )
    return None


@auth_group.command("user")
@click.argument("name")
@click.option("--role", type=click.Choice(PEOPLE), help="The person's role.")
@click.option("--remove", is_flag=True, help="Take every corral role of this cluster away.")
@click.option("--password-stdin", is_flag=True, help="Read a password (etcd password auth).")
@spec_option
@etcd_option
def user(
    name: str, role: Role | None, remove: bool, password_stdin: bool, spec_file: str,
    etcd: str | None,
) -> None:  # fmt: skip
    """Give person NAME (their certificate's CN) a role, or --remove it: the auth/users
    record and etcd's grants."""
    spec = spec_or_exit(spec_file)
    if remove == (role is not None):
        raise click.UsageError("give --role ROLE or --remove")
    password = sys.stdin.readline().rstrip("\n") if password_stdin else None
    keys = Keys(spec.cluster)
    try:
        key = keys.user(name)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="NAME") from None

    async def work(store: Store, _actor: str) -> None:
        api = EtcdAuth(await _auth_client(spec, etcd))
        try:  # etcd first: only root may, and a refusal must leave the record as it was
            await add_user(api, keys, User(name, (role,) if role else (), password))
        except AuthError as exc:
            raise _refusal(exc) from None
        finally:
            await api.close()
        if role is None:
            await store.delete(key)
        else:
            await store.put(key, UserRecord(role).dump())

    what = f"auth user {name}: {'removed' if role is None else role}"
    run_audited(spec, etcd, what, work)
    click.echo(what)


@click.group("tokens")
def tokens_group() -> None:
    """API tokens (for the HTTP API): stored hashed, shown once."""


@tokens_group.command("create")
@click.argument("name")
@role_option
@spec_option
@etcd_option
def create(name: str, role: Role, spec_file: str, etcd: str | None) -> None:
    """A new token for NAME with ROLE (printed once: keep it)."""
    spec = spec_or_exit(spec_file)
    claimed = claimed_name(tls_for(spec))
    by = claimed[0] if claimed else local(getpass.getuser()).name

    async def work(store: Store, _actor: str) -> tuple[str, str]:
        keys = Keys(spec.cluster)
        return await api_tokens.create(store, keys, name, role, by=by, now=time.time())

    text, found = run_audited(spec, etcd, f"tokens create: {name} ({role})", work)
    click.echo(f"token {found} for {name} ({role}); shown once:")
    click.echo(text)


@tokens_group.command("list")
@spec_option
@etcd_option
def listing(spec_file: str, etcd: str | None) -> None:
    """Every token: id, name, role, created, by whom (never the secret)."""
    spec = spec_or_exit(spec_file)

    async def read() -> dict[str, api_tokens.TokenRecord]:
        store = open_store(spec, etcd)
        try:
            return await api_tokens.listing(store, Keys(spec.cluster))
        finally:
            await store.close()

    try:
        found = asyncio.run(read())
    except PermissionDenied as exc:
        raise click.ClickException(f"refused: {exc}") from None
    for token_id, r in sorted(found.items(), key=lambda item: item[1].created):
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.created))
        click.echo(f"{token_id}  {r.name}  {r.role}  {stamp}  by {r.by or '?'}")


@tokens_group.command("revoke")
@click.argument("token_id", metavar="ID")
@spec_option
@etcd_option
def revoke(token_id: str, spec_file: str, etcd: str | None) -> None:
    """Revoke token ID at once."""
    spec = spec_or_exit(spec_file)
    try:
        Keys(spec.cluster).token(token_id)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="ID") from None

    async def work(store: Store, _actor: str) -> None:
        if not await api_tokens.revoke(store, Keys(spec.cluster), token_id):
            raise click.ClickException(f"no token {token_id}")

    run_audited(spec, etcd, f"tokens revoke: {token_id}", work)
    click.echo(f"token {token_id} revoked")


COMMANDS = (auth_group, tokens_group)
