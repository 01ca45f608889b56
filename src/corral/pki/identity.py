"""Who a certificate names, and when it must be renewed (pure: no files, no clock).

Naming (the etcd user name is the certificate's CN, as etcd's client-certificate auth takes
it once RBAC is enabled):

- a node's agent and etcd member: CN ``node:<node>``, OU ``node``;
- an operator: CN ``<name>`` (letters, digits, ``. _ -``; no ``:``, so no operator can pass for
  a node), OU the role recorded for RBAC: ``viewer``, ``operator`` or ``admin``;
- a node's HTTP API, for the operators' records it writes for its callers: CN ``api:<node>``,
  OU ``operator`` (etcd's operator role: :mod:`corral.api.actions`);
- etcd's ``root`` user: CN ``root``, OU ``admin`` (for the RBAC setup; issue it only to
  controllers' bootstrap and keep it there);
- a node's lease renewals over etcd's HTTP gateway: no CN, OU ``renewal`` (etcd's gateway
  refuses certificates with a CN once auth is on; a CN-less one can renew leases and nothing
  else, see :mod:`corral.store.tls`).

Rotation: a certificate is re-issued once less than a third of its validity is left
(:func:`needs_reissue`): for the 90-day node certificates, 30 days before expiry, so an agent
that starts at least monthly (or runs: it checks daily) never serves an expired certificate.
An expiry within :data:`WARN_DAYS` days is a warning (:func:`expiry_note`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NODE_PREFIX = "node:"
API_PREFIX = "api:"
NODE_OU = "node"
RENEWAL_OU = "renewal"
ROOT = "root"
ROLES = ("viewer", "operator", "admin")
NODE_DAYS = 90
OPERATOR_DAYS = 365
WARN_DAYS = 30
DAY = 86400.0
_OPERATOR = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def node_cn(node: str) -> str:
    return NODE_PREFIX + node


def api_cn(node: str) -> str:
    return API_PREFIX + node


def operator_cn(name: str, role: str) -> str:
    """The CN of an operator's certificate; ``ValueError`` saying what is wrong."""
    if role not in ROLES:
        raise ValueError(f"role {role!r}: choose one of {', '.join(ROLES)}")
    if not _OPERATOR.match(name):
        raise ValueError(
            f"operator name {name!r}: letters, digits, '.', '_' and '-' only (64 at most)"
        )
    if name == ROOT and role != "admin":
        raise ValueError("the root identity has the admin role: --role admin")
    return name


def kind_of(cn: str) -> str:
    """``node``, ``api``, ``root`` or ``operator``."""
    if cn.startswith(NODE_PREFIX):
        return "node"
    if cn.startswith(API_PREFIX):
        return "api"
    return "root" if cn == ROOT else "operator"


@dataclass(frozen=True)
class Validity:
    """A certificate's validity, in seconds since the epoch."""

    not_before: float
    not_after: float

    @property
    def renew_at(self) -> float:
        """When a third of the validity is left."""
        return self.not_after - (self.not_after - self.not_before) / 3

    def needs_reissue(self, now: float) -> bool:
        return now >= self.renew_at

    def days_left(self, now: float) -> float:
        return (self.not_after - now) / DAY


def expiry_note(what: str, validity: Validity, now: float) -> tuple[bool, str]:
    """``(warn, line)``: e.g. ``(False, "node cert node:ctl1 expires in 89 days")``; ``warn``
    when expired or within :data:`WARN_DAYS` days."""
    left = validity.days_left(now)
    if left <= 0:
        return True, f"{what} EXPIRED {-left:.0f} days ago"
    return left < WARN_DAYS, f"{what} expires in {left:.0f} days"
