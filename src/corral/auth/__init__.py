"""Who may do what: roles and their etcd permissions, applying them to etcd, one identity
model for every client, API tokens, and the audit of every change.

- :mod:`corral.auth.roles`: roles (viewer < operator < admin, and agent) and their etcd
  permissions as a pure function of the key layout (:func:`permissions`,
  :func:`public_spans`: what a viewer or operator may read);
- :mod:`corral.auth.etcdauth`: :func:`ensure` applies them to etcd (idempotent; enables auth)
  and :func:`add_user` adds or changes one user later;
- :mod:`corral.auth.identity`: :class:`Identity` (etcd user name == identity name ==
  certificate CN; ``node:<node>`` for agents, ``root``, people, ``local:<user>``);
- :mod:`corral.auth.users`: ``auth/users/<name>``, a person's role (the source of truth);
- :mod:`corral.auth.tokens`: API tokens, stored salted and hashed, verified in constant time;
- :mod:`corral.auth.audit`: one audit event per change (who, role, what, result).
"""

from corral.auth.audit import AuditEvent, audit_event, audited
from corral.auth.etcdauth import (
    AuthError,
    EtcdAuth,
    User,
    add_user,
    desired_users,
    enable,
    ensure,
)
from corral.auth.identity import Identity, cert_cn, local, node_user, role_of
from corral.auth.roles import PEOPLE, ROLES, Perm, Role, Span, permissions, public_spans
from corral.auth.tokens import TokenRecord, verify
from corral.auth.users import UserRecord, read_people, read_role

__all__ = [
    "PEOPLE",
    "ROLES",
    "AuditEvent",
    "AuthError",
    "EtcdAuth",
    "Identity",
    "Perm",
    "Role",
    "Span",
    "TokenRecord",
    "User",
    "UserRecord",
    "add_user",
    "audit_event",
    "audited",
    "cert_cn",
    "desired_users",
    "enable",
    "ensure",
    "local",
    "node_user",
    "permissions",
    "public_spans",
    "read_people",
    "read_role",
    "role_of",
    "verify",
]
