"""Who may do what: roles and their etcd permissions, applying them to etcd, identities,
API tokens and the audit of every change.

- :mod:`corral.auth.roles`: the roles (viewer < operator < admin, and agent) and their etcd
  permissions as a pure function of the key layout;
- :mod:`corral.auth.etcdauth`: :func:`ensure` applies them to etcd (idempotent) and
  :func:`add_user` adds one user later;
"""
