"""Apply the roles of :mod:`corral.auth.roles` to etcd with its auth API (the I/O shell).

:func:`ensure` makes etcd's roles, users and grants match what corral wants for one cluster,
then enables authentication; every step reads first and changes only what differs, so it is
safe to run again and again, by several core nodes at once (a lost race of two creators is
an "already exists" answer, taken as done). What it does, in order:

1. each role of :data:`~corral.auth.roles.ROLES`, named :func:`~corral.auth.roles.etcd_role`,
   exists with exactly its permissions (missing ones granted, others revoked: a changed table
   converges);
2. ``root`` exists with etcd's ``root`` role (etcd refuses to enable auth without it);
3. each :class:`User` exists (no password, ``options.no_password``, for certificate-only users:
   etcd takes the client certificate's CN as the user name) and has exactly the corral roles
   of this cluster it should (its roles of other clusters or of other programs are left alone);
4. the spec is seeded if the store has none (the agents may not write the spec under auth:
   a first agent that would have written its own copy finds this one);
5. auth is enabled if it is not.

Before auth is enabled any client may do this; after, only ``root`` (etcd's rule for its auth
API). Users are never deleted here (an etcd shared with other programs has its own).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aetcd import rpc
from aetcd.rpc import auth_pb2

from corral.auth.identity import api_user, node_user
from corral.auth.roles import ROLES, Perm, Role, Span, etcd_role, permissions
from corral.store import Keys

ROOT = "root"
_ACCESS = {"read": auth_pb2.Permission.READ, "write": auth_pb2.Permission.WRITE}
_ACCESS["readwrite"] = auth_pb2.Permission.READWRITE
_NAMES = {v: k for k, v in _ACCESS.items()}


class AuthError(Exception):
    """etcd refused a step of :func:`ensure` (the message names the step and etcd's answer)."""


@dataclass(frozen=True)
class User:
    """An etcd user and the corral roles it must have in one cluster. ``password`` None: a
    certificate-only user (its name is its certificate's CN)."""

    name: str
    roles: tuple[Role, ...]
    password: str | None = None


class EtcdAuth:
    """etcd's auth and KV calls on a connected ``aetcd.Client`` (its credentials, if any, are
    sent along: a token from a password login, else the TLS client certificate)."""

    def __init__(self, client: Any, timeout: float = 5.0) -> None:
        self._client = client
        self._stub = rpc.AuthStub(client.channel)
        self._timeout = timeout

    async def call(self, what: str, name: str, request: Any, *, exists_ok: bool = False) -> Any:
        try:
            method = getattr(self._stub, name)
            return await method(request, timeout=self._timeout, metadata=self._client.metadata)
        except rpc.AioRpcError as exc:
            details = exc.details() or exc.code().name
            if exists_ok and "already exists" in details:
                return None
            raise AuthError(f"etcd auth: {what}: {details}") from None

    async def close(self) -> None:
        await self._client.close()

    async def txn(self, request: Any) -> Any:
        try:
            return await self._client.kvstub.Txn(
                request, timeout=self._timeout, metadata=self._client.metadata
            )
        except rpc.AioRpcError as exc:
            raise AuthError(f"etcd auth: seed the spec: {exc.details()}") from None


def _perm_message(perm: Perm) -> Any:
    return auth_pb2.Permission(
        permType=_ACCESS[perm.access], key=perm.span.start, range_end=perm.span.end
    )


def _perm_of(message: Any) -> Perm:
    end = bytes(message.range_end)
    start = bytes(message.key)
    return Perm(Span(start, end or start + b"\x00"), _NAMES[message.permType])  # type: ignore[arg-type]


def _show(perm: Perm) -> str:
    start, end = (perm.span.start.decode(errors="replace"), perm.span.end.decode(errors="replace"))
    return f"{perm.access} [{start}, {end!r})"


async def ensure_role(api: EtcdAuth, name: str, wanted: Sequence[Perm]) -> list[str]:
    """Role ``name`` with exactly ``wanted``; what changed."""
    done: list[str] = []
    add = rpc.AuthRoleAddRequest(name=name)
    if await api.call(f"add role {name}", "RoleAdd", add, exists_ok=True):
        done.append(f"role {name} added")
    got = await api.call(f"read role {name}", "RoleGet", rpc.AuthRoleGetRequest(role=name))
    have = {_perm_of(p): p for p in got.perm}
    for perm in wanted:
        if perm not in have:
            request = rpc.AuthRoleGrantPermissionRequest(name=name, perm=_perm_message(perm))
            await api.call(f"grant {perm.access} to {name}", "RoleGrantPermission", request)
            done.append(f"{name}: {_show(perm)} granted")
    for perm, message in have.items():
        if perm not in wanted:
            request = rpc.AuthRoleRevokePermissionRequest(
                role=name, key=message.key, range_end=message.range_end
            )
            await api.call(f"revoke from {name}", "RoleRevokePermission", request)
            done.append(f"{name}: {_show(perm)} revoked")
    return done


async def ensure_user(
    api: EtcdAuth, user: str, wanted: Iterable[str], mine: Iterable[str], password: str | None
) -> list[str]:
    """User ``user`` exists and has the roles ``wanted`` among ``mine`` (roles it may have that
    are not in ``wanted`` and not in ``mine`` are left alone); what changed."""
    done: list[str] = []
    options = auth_pb2.UserAddOptions(no_password=password is None)
    add = rpc.AuthUserAddRequest(name=user, password=password or "", options=options)
    if await api.call(f"add user {user}", "UserAdd", add, exists_ok=True):
        done.append(f"user {user} added")
    got = await api.call(f"read user {user}", "UserGet", rpc.AuthUserGetRequest(name=user))
    have, wanted = set(got.roles), set(wanted)
    for role in sorted(wanted - have):
        grant = rpc.AuthUserGrantRoleRequest(user=user, role=role)
        await api.call(f"grant {role} to {user}", "UserGrantRole", grant)
        done.append(f"user {user}: role {role} granted")
    for role in sorted((have & set(mine)) - wanted):
        revoke = rpc.AuthUserRevokeRoleRequest(name=user, role=role)
        await api.call(f"revoke {role} from {user}", "UserRevokeRole", revoke)
        done.append(f"user {user}: role {role} revoked")
    return done


def desired_users(nodes: Iterable[str], people: Mapping[str, Role]) -> list[User]:
    """The users corral wants: two per node (``node:<node>``, the agent role; ``api:<node>``,
    the operator role, its HTTP API's writes) and one per person recorded (``auth/users/``),
    all certificate-only."""
    nodes = list(nodes)
    users = [User(node_user(n), ("agent",)) for n in nodes]
    users += [User(api_user(n), ("operator",)) for n in nodes]
    return users + [User(name, (role,)) for name, role in sorted(people.items())]


async def add_user(api: EtcdAuth, keys: Keys, user: User) -> list[str]:
    """One user now (a node that joins, an operator): exists with exactly its corral roles of
    this cluster (an empty ``roles`` takes them all away). The roles must exist (``ensure``)."""
    mine = [etcd_role(keys.cluster, r) for r in ROLES]
    wanted = [etcd_role(keys.cluster, r) for r in user.roles]
    return await ensure_user(api, user.name, wanted, mine, user.password)


async def seed_spec(api: EtcdAuth, keys: Keys, spec_text: bytes) -> bool:
    """Write the spec if the store has none; whether it was written."""
    missing = rpc.Compare(
        key=keys.spec, target=rpc.Compare.CREATE, result=rpc.Compare.EQUAL, create_revision=0
    )
    put = rpc.RequestOp(request_put=rpc.PutRequest(key=keys.spec, value=spec_text))
    response = await api.txn(rpc.TxnRequest(compare=[missing], success=[put]))
    return bool(response.succeeded)


async def ensure(
    api: EtcdAuth,
    keys: Keys,
    users: Iterable[User],
    *,
    spec_text: bytes | None = None,
    root_password: str | None = None,
    enable_auth: bool = True,
) -> list[str]:
    """Make etcd enforce corral's roles for the cluster of ``keys`` (the module docstring says
    how); returns what changed, in order ([] when everything already was so).
    ``enable_auth`` False: all but the last step (the caller enables it with :func:`enable`,
    e.g. after writing what an unauthenticated client can no longer write then). Raises
    :class:`AuthError` naming the step etcd refused (e.g. a caller that is not ``root`` once
    auth is on)."""
    done: list[str] = []
    for role, perms in permissions(keys).items():
        done += await ensure_role(api, etcd_role(keys.cluster, role), perms)
    done += await ensure_user(api, ROOT, [ROOT], [ROOT], root_password)
    for user in users:
        done += await add_user(api, keys, user)
    if spec_text is not None and await seed_spec(api, keys, spec_text):
        done.append("spec seeded")
    if enable_auth and await enable(api):
        done.append("auth enabled")
    return done


async def enable(api: EtcdAuth) -> bool:
    """Enable etcd's auth (it needs the ``root`` user); whether it was off."""
    status = await api.call("read auth status", "AuthStatus", rpc.AuthStatusRequest())
    if status.enabled:
        return False
    await api.call("enable auth", "AuthEnable", rpc.AuthEnableRequest())
    return True
