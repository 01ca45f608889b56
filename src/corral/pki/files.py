"""Which TLS files a process uses to reach etcd, from the spec (``store.*.tls``), the node's
state directory, or the environment: one place for the agent, the CLI and the lab.

Contract:

- :func:`node_identity` (the agent, at start and daily): with ``tls: {bundle: DIR}`` it keeps
  ``<state_dir>/tls/{ca,node}.crt`` and ``node.key``, issuing the node certificate (CN
  ``node:<node>``, IP SANs: the node's address, 127.0.0.1 and ::1; DNS: the node's name and
  ``localhost``; :data:`~corral.pki.identity.NODE_DAYS` days) when it is missing, from another
  CA, for other addresses, or has less than a third of its validity left; with it, the CN-less
  renewal pair ``renew.crt``/``renew.key`` (:mod:`corral.store.tls` says why). With ``ca``,
  ``cert`` and ``key`` it only checks that they exist (no renewal pair: the gateway renewals
  present ``cert``, which etcd's gateway refuses once auth is enabled). Problems raise
  :class:`PkiError` naming the spec field and the file.
- :func:`api_identity` (the agent, at start and daily, beside :func:`node_identity`): with a
  bundle, ``<state_dir>/tls/api.crt``/``api.key`` for CN ``api:<node>`` (OU ``operator``,
  re-issued as the node certificate is), the identity the node's HTTP API writes the
  operators' records with; with the operator's own PKI, ``<state_dir>/tls-api/{ca,api}.crt``
  and ``api.key`` if the operator put them there (issued for ``api:<node>``), else None (the
  API then writes as the node, which etcd's RBAC refuses for ``admin/``).
- :func:`client_files` (every CLI command that talks to etcd): ``CORRAL_ETCD_CA``,
  ``CORRAL_ETCD_CERT`` and ``CORRAL_ETCD_KEY`` when set (an operator's certificate from
  ``corral ca issue``), else the spec's ``ca``/``cert``/``key``, else the node's own identity in
  ``<state_dir>/tls`` (the CLI run on a node as root). None when the store is plain http.
- :func:`issue_identity`: an operator's (or root's) certificate in ``out``, as ``<name>.crt``,
  ``<name>.key`` and ``ca.crt``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from corral.pki import identity as ids
from corral.pki.ca import Authority, PkiError, issue, load_bundle, read_cert, write_identity
from corral.spec import Spec
from corral.store.tls import ENV, TlsFiles

TLS_DIR = "tls"
API_DIR = "tls-api"


@dataclass(frozen=True)
class NodeIdentity:
    files: TlsFiles
    validity: ids.Validity | None  # None: files of the operator's own PKI, not read
    reissued: bool


def validity_of(cert: x509.Certificate) -> ids.Validity:
    return ids.Validity(cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp())


def _sans(cert: x509.Certificate) -> set[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(ip) for ip in ext.get_values_for_type(x509.IPAddress)}


def _current(path: Path, ca: Authority, cn: str, addresses: set[str], now: float) -> bool:
    """True when the certificate at ``path`` can stay: signed by ``ca``, for ``cn``, covering
    ``addresses``, and not yet due for renewal."""
    try:
        cert = read_cert(path)
        cert.verify_directly_issued_by(ca.cert)
    except (PkiError, ValueError, TypeError, InvalidSignature):
        return False
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return (
        bool(names)
        and names[0].value == cn
        and addresses <= _sans(cert)
        and not validity_of(cert).needs_reissue(now)
    )


def _explicit(field: str, tls_ca: str, cert: str, key: str) -> TlsFiles:
    files = TlsFiles(tls_ca, cert, key)
    for name, path in zip(("ca", "cert", "key"), files.as_tuple(), strict=True):
        if not Path(path).is_file():
            raise PkiError(f"{field}.{name}: {path} does not exist or is not a file")
    return files


def node_identity(
    spec: Spec, node: str, state_dir: Path, now: float, address: str | None = None
) -> NodeIdentity | None:
    """The node's TLS files (see the module contract); ``address`` overrides the spec's."""
    found = spec.store_tls
    if found is None:
        return None
    field, tls = found
    if tls.bundle is None:
        assert tls.ca and tls.cert and tls.key
        return NodeIdentity(_explicit(field, tls.ca, tls.cert, tls.key), None, False)
    try:
        ca = load_bundle(Path(tls.bundle), now)
    except PkiError as exc:
        raise PkiError(f"{field}.bundle: {exc}") from None
    addresses = {str(address or spec.nodes[node].address), "127.0.0.1", "::1"}
    out = state_dir / TLS_DIR
    cn = ids.node_cn(node)
    reissued = not _current(out / "node.crt", ca, cn, addresses, now) or not all(
        (out / name).is_file() for name in ("renew.crt", "renew.key")
    )
    if reissued:
        ordered = tuple(sorted(addresses, key=lambda a: ipaddress.ip_address(a).version))
        cert, key = issue(
            ca, cn, ou=ids.NODE_OU, now=now, days=ids.NODE_DAYS, addresses=ordered,
            names=(node, "localhost"), server=True,
        )  # fmt: skip
        renew_cert, renew_key = issue(
            ca, None, ou=ids.RENEWAL_OU, now=now, days=ids.NODE_DAYS
        )  # renewed with the node certificate, so never older
        write_identity(out, "renew", ca, renew_cert, renew_key)
        write_identity(out, "node", ca, cert, key)
    files = TlsFiles(
        str(out / "ca.crt"), str(out / "node.crt"), str(out / "node.key"),
        str(out / "renew.crt"), str(out / "renew.key"),
    )  # fmt: skip
    return NodeIdentity(files, validity_of(read_cert(out / "node.crt")), reissued)


def api_identity(spec: Spec, node: str, state_dir: Path, now: float) -> TlsFiles | None:
    """The TLS files of ``node``'s HTTP API writes (see the module contract)."""
    found = spec.store_tls
    if found is None:
        return None
    field, tls = found
    if tls.bundle is None:
        out = state_dir / API_DIR
        files = TlsFiles(str(out / "ca.crt"), str(out / "api.crt"), str(out / "api.key"))
        return files if all(Path(p).is_file() for p in (files.ca, files.cert, files.key)) else None
    try:
        ca = load_bundle(Path(tls.bundle), now)
    except PkiError as exc:
        raise PkiError(f"{field}.bundle: {exc}") from None
    out, cn = state_dir / TLS_DIR, ids.api_cn(node)
    if not _current(out / "api.crt", ca, cn, set(), now):
        cert, key = issue(ca, cn, ou="operator", now=now, days=ids.NODE_DAYS)
        write_identity(out, "api", ca, cert, key)
    return TlsFiles(str(out / "ca.crt"), str(out / "api.crt"), str(out / "api.key"))


def client_files(spec: Spec | None, state_dir: Path, env: Mapping[str, str]) -> TlsFiles | None:
    """The CLI's TLS files (see the module contract)."""
    given = [env.get(name, "") for name in ENV]
    if any(given):
        if not all(given):
            missing = [n for n, v in zip(ENV, given, strict=True) if not v]
            raise PkiError(f"set {', '.join(ENV)} together ({', '.join(missing)} missing)")
        files = TlsFiles(*given)
        for name, path in zip(ENV, given, strict=True):
            if not Path(path).is_file():
                raise PkiError(f"{name}: {path} does not exist or is not a file")
        return files
    found = spec.store_tls if spec is not None else None
    if found is None:
        return None
    field, tls = found
    if tls.bundle is None:
        assert tls.ca and tls.cert and tls.key
        return _explicit(field, tls.ca, tls.cert, tls.key)
    out = state_dir / TLS_DIR
    files = TlsFiles(str(out / "ca.crt"), str(out / "node.crt"), str(out / "node.key"))
    if not all(Path(p).is_file() for p in files.as_tuple()):
        raise PkiError(
            f"the store uses TLS ({field}) and there is no node identity in {out}: set "
            f"{', '.join(ENV)} to an operator's certificate (corral ca issue)"
        )
    return files


def issue_identity(
    ca: Authority, name: str, role: str, out: Path, now: float, days: int = ids.OPERATOR_DAYS
) -> TlsFiles:
    """An operator's (or, with ``name`` ``root``, etcd root's) certificate in ``out``."""
    cn = ids.operator_cn(name, role)
    cert, key = issue(ca, cn, ou=role, now=now, days=days)
    return TlsFiles(*(str(p) for p in write_identity(out, name, ca, cert, key)))


def bundle_identity(bundle: Path, name: str, role: str, out: Path, now: float) -> TlsFiles:
    """:func:`issue_identity` from the bundle in ``bundle`` (e.g. ``root`` for RBAC setup)."""
    return issue_identity(load_bundle(bundle, now), name, role, out, now)
