"""The cluster's CA and the certificates of nodes and operators (etcd over TLS).

Public API: :func:`init_bundle`, :func:`load_bundle`, :class:`Authority`, :class:`PkiError`
(:mod:`.ca`); naming and rotation (:mod:`.identity`); which files a process uses:
:func:`node_identity`, :func:`api_identity`, :func:`client_files`, :func:`issue_identity`,
:func:`bundle_identity` (:mod:`.files`). The store's side (the three files, TLS contexts,
etcd's flags) is :class:`corral.store.tls.TlsFiles`.
"""

from corral.pki.ca import Authority, PkiError, init_bundle, load_bundle, read_cert
from corral.pki.files import (
    NodeIdentity,
    api_identity,
    bundle_identity,
    client_files,
    issue_identity,
    node_identity,
    validity_of,
)
from corral.pki.identity import Validity, expiry_note, kind_of, node_cn, operator_cn

__all__ = [
    "Authority",
    "NodeIdentity",
    "PkiError",
    "Validity",
    "api_identity",
    "bundle_identity",
    "client_files",
    "expiry_note",
    "init_bundle",
    "issue_identity",
    "kind_of",
    "load_bundle",
    "node_cn",
    "node_identity",
    "operator_cn",
    "read_cert",
    "validity_of",
]
