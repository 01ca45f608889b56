"""The cluster CA: its bundle on disk, and the certificates it issues.

Contract:

- A bundle is a directory (mode 0700) holding ``ca.crt`` and ``ca.key`` (PEM, mode 0600; the
  key is EC P-256, which etcd's Go TLS stack and every client accept). :func:`init_bundle`
  makes one and refuses to overwrite; :func:`load_bundle` reads one and refuses a key that
  anybody but its owner may read, a CA certificate that has expired, or a key that does not
  match the certificate, with an :class:`PkiError` that names the file and the fix.
- Why the CA key sits on every controller: a controller is root over the cluster anyway (it
  runs an etcd member and the agent that starts and stops services), so the key there adds no
  power that a stolen controller does not already have; it lets every agent issue and rotate
  its own node certificate with no CA service to keep available. Operators' certificates are
  issued from the same bundle (``corral ca issue``), on any machine holding it.
- Identities (:mod:`corral.pki.names`): the certificate's CN is the etcd user name.
- :func:`issue` signs a fresh key with the CA: ``not_before`` a minute before ``now`` (clock
  skew between nodes), SANs as given (IP SANs for addresses), key usages for TLS client and,
  with ``server``, server use. Files are written with :func:`write_identity`: key 0600 in a
  0700 directory, key first, so a reader never finds a certificate without its key.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT, CA_KEY = "ca.crt", "ca.key"
CA_DAYS = 3650
CLOCK_SKEW = dt.timedelta(minutes=1)


class PkiError(Exception):
    """A bundle or certificate that cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class Authority:
    """A loaded CA: its certificate and key, and where they came from."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    directory: Path

    @property
    def cert_path(self) -> Path:
        return self.directory / CA_CERT


def _utc(when: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(when, dt.UTC)


def _name(cn: str | None, ou: str | None, org: str | None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else []
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    if ou:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    return x509.Name(attrs)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600 from the start (never readable by others)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o600)  # an existing tmp kept its mode
    os.replace(tmp, path)


def _private_dir(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)


def init_bundle(directory: Path, cluster: str, now: float, days: int = CA_DAYS) -> Authority:
    """Make a new CA in ``directory`` (created 0700); refuses if a CA is there already."""
    if (directory / CA_KEY).exists() or (directory / CA_CERT).exists():
        raise PkiError(f"{directory} already holds a CA: refusing to overwrite it")
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(f"corral CA {cluster}", None, cluster)
    start = _utc(now) - CLOCK_SKEW
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    _private_dir(directory)
    _write_private(directory / CA_KEY, _key_pem(key))
    _write_private(directory / CA_CERT, cert.public_bytes(serialization.Encoding.PEM))
    return Authority(cert, key, directory)


def read_cert(path: Path) -> x509.Certificate:
    """A PEM certificate, or :class:`PkiError` naming the file."""
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError:
        raise PkiError(f"{path}: no such certificate") from None
    except (OSError, ValueError) as exc:
        raise PkiError(f"{path}: not a readable PEM certificate ({exc})") from None


def load_bundle(directory: Path, now: float) -> Authority:
    """The CA in ``directory`` (see the module contract for what is refused)."""
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    if not cert_path.exists() and not key_path.exists():
        raise PkiError(
            f"no CA bundle in {directory}: run `corral ca init --out {directory}` on one "
            "controller and copy the directory to every controller (mode 0700)"
        )
    cert = read_cert(cert_path)
    try:
        mode = stat.S_IMODE(key_path.stat().st_mode)
        data = key_path.read_bytes()
    except FileNotFoundError:
        raise PkiError(f"{key_path}: the CA key is missing beside {cert_path}") from None
    except OSError as exc:
        raise PkiError(f"{key_path}: cannot read the CA key ({exc.strerror})") from None
    if mode & 0o077:
        raise PkiError(f"{key_path} is readable by others (mode {mode:04o}): chmod 600 {key_path}")
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{key_path}: not an EC private key")
    if key.public_key().public_numbers() != cert.public_key().public_numbers():  # type: ignore[union-attr]
        raise PkiError(f"{key_path} does not belong to {cert_path}")
    if cert.not_valid_after_utc <= _utc(now):
        raise PkiError(
            f"the CA certificate {cert_path} expired on {cert.not_valid_after_utc:%Y-%m-%d}: "
            "make a new CA (corral ca init) and re-issue every certificate"
        )
    return Authority(cert, key, directory)


def issue(
    ca: Authority,
    cn: str | None,
    *,
    ou: str,
    now: float,
    days: int,
    addresses: tuple[str, ...] = (),
    names: tuple[str, ...] = (),
    server: bool = False,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A new key and its certificate signed by ``ca`` (see the module contract); ``cn`` None:
    a certificate without a CN (the renewal identity, :mod:`corral.pki.identity`)."""
    key = ec.generate_private_key(ec.SECP256R1())
    start = _utc(now) - CLOCK_SKEW
    end = min(start + dt.timedelta(days=days), ca.cert.not_valid_after_utc)
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH] + ([ExtendedKeyUsageOID.SERVER_AUTH] * server)
    org = ca.cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn, ou, str(org[0].value) if org else None))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, True, False, True, False, False, False, False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    sans: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    sans += [x509.DNSName(n) for n in names]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca.key, hashes.SHA256()), key


def write_identity(
    directory: Path, stem: str, ca: Authority, cert: x509.Certificate,
    key: ec.EllipticCurvePrivateKey,
) -> tuple[Path, Path, Path]:  # fmt: skip
    """``<stem>.key``, ``<stem>.crt`` and ``ca.crt`` in ``directory`` (0700, files 0600);
    returns their paths (ca, cert, key)."""
    _private_dir(directory)
    key_path, cert_path = directory / f"{stem}.key", directory / f"{stem}.crt"
    _write_private(key_path, _key_pem(key))
    _write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    ca_path = directory / CA_CERT
    _write_private(ca_path, ca.cert.public_bytes(serialization.Encoding.PEM))
    return ca_path, cert_path, key_path
