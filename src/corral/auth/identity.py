"""One identity model for every client: the CLI (to etcd, or later to an agent's API) and
the HTTP API of a later issue.

An :class:`Identity` is a name and a role. The name is the same everywhere: **etcd user
name == identity name == certificate CN** (etcd's client-certificate auth takes the CN as
the user name). Names:

- ``node:<node>``: a node's agent (role ``agent``); ``root``: etcd's root (role ``admin``);
- ``api:<node>``: the writes of ``node``'s HTTP API (role ``operator``: the API checks its
  caller's token and role, then writes the operators' records as this user; see
  :mod:`corral.api.actions`);
- any other name: a person, whose role is the ``auth/users/<name>`` record
  (:mod:`corral.auth.users`);
- ``local:<unix user>``: a CLI without credentials, talking to an etcd without auth: not
  authenticated, role unknown (None). Its events say so.

The one source of truth for a person's role is the ``auth/users/<name>`` record in the
store, written by an admin (``corral auth user``): etcd's users and role grants are its
projection, made by :func:`corral.auth.etcdauth.ensure`, and an agent's API reads the record
(agents can; etcd's own user table needs root). A certificate's OU is informational only: a
role change or a removal takes effect without a new certificate. API tokens carry their
role in their own record (:mod:`corral.auth.tokens`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from corral.auth.roles import Role

NODE_PREFIX = "node:"
API_PREFIX = "api:"
LOCAL_PREFIX = "local:"
ROOT = "root"
Via = Literal["cert", "password", "token", "local"]


@dataclass(frozen=True)
class Identity:
    """Who acts. ``role`` None: not known (an unauthenticated local user). ``via``: how the
    name was proven (``local``: it was not)."""

    name: str
    role: Role | None
    via: Via

    @property
    def authenticated(self) -> bool:
        return self.via != "local"

    def describe(self) -> str:
        """``alice (operator, cert)``, ``local:bob (unauthenticated)``."""
        if not self.authenticated:
            return f"{self.name} (unauthenticated)"
        return f"{self.name} ({self.role or 'no role'}, {self.via})"


def node_user(node: str) -> str:
    """The etcd user (and certificate CN) of ``node``'s agent."""
    return NODE_PREFIX + node


def api_user(node: str) -> str:
    """The etcd user (and certificate CN) that ``node``'s HTTP API writes as."""
    return API_PREFIX + node


def role_of(name: str, people: Mapping[str, Role]) -> Role | None:
    """The role of the identity ``name``: agents and root by their name, people by their
    record (``people``: name -> role); None for a name nobody gave a role."""
    if name.startswith(NODE_PREFIX):
        return "agent"
    if name.startswith(API_PREFIX):
        return "operator"
    if name == ROOT:
        return "admin"
    return people.get(name)


def local(unix_user: str) -> Identity:
    """The identity of a CLI without credentials."""
    return Identity(LOCAL_PREFIX + unix_user, None, "local")


def cert_cn(pem: bytes) -> str:
    """The CN of a PEM certificate (the identity's name); ``ValueError`` if it has none."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = x509.load_pem_x509_certificate(pem)
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        raise ValueError("the certificate names no CN")
    value = names[0].value
    return value if isinstance(value, str) else value.decode()


def key_part(name: str) -> str:
    """``name`` made fit for a store key part (``node:n1`` -> ``node_n1``)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:56] or "_"
