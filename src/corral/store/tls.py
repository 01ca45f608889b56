"""TLS for etcd's clients and members: the three files of one identity, and what each client
builds from them.

Contract of :class:`TlsFiles`:

- ``ca`` is the CA that signs etcd's members (and that they trust for clients); ``cert`` and
  ``key`` are this process's identity, presented to etcd (client-certificate auth). The files
  are read when a connection is made, never cached: a certificate re-issued on disk
  (:mod:`corral.pki`) is used by the next connection, and etcd re-reads its own files on every
  handshake, so rotation needs no restart.
- :meth:`ssl_context` (asyncio, urllib, httpx) and :meth:`grpc_credentials` (gRPC) verify the
  server against ``ca`` and its host name or IP address (corral's members carry IP SANs).
- :meth:`member_flags` are etcd's flags for a member serving TLS to clients and peers and
  requiring a certificate signed by ``ca`` from both (``--client-cert-auth``,
  ``--peer-client-cert-auth``). Who may do what is etcd's RBAC, enabled elsewhere; until then
  any certificate from ``ca`` is accepted and none other.
- Lease renewals over etcd's HTTP gateway present ``renew_cert``/``renew_key`` when given
  (:meth:`renewal`): a certificate without a CN. Why: once etcd's auth is enabled, its gateway
  refuses every request that comes with a client certificate carrying a CN (HTTP 400, "CommonName
  of client sending a request against gateway will be ignored"), while ``LeaseKeepAlive`` needs
  no user; a CN-less certificate renews leases and can do nothing else ("user name is empty").
  The same holds for the gateway's ``/v3/maintenance/status`` (the agent's quorum probe);
  ``/health`` and ``/metrics`` are not the gateway and accept either.
- :meth:`check` names the first file that cannot be read.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from typing import Any

# the environment that gives the CLI its identity: (ca, cert, key) files
ENV = ("CORRAL_ETCD_CA", "CORRAL_ETCD_CERT", "CORRAL_ETCD_KEY")


@dataclass(frozen=True)
class TlsFiles:
    """Paths (PEM) of a CA and of one identity's certificate and key."""

    ca: str
    cert: str
    key: str
    renew_cert: str | None = None
    renew_key: str | None = None

    def renewal(self) -> TlsFiles:
        """The files the gateway renewals present (the CN-less pair when given)."""
        if self.renew_cert is None or self.renew_key is None:
            return TlsFiles(self.ca, self.cert, self.key)
        return TlsFiles(self.ca, self.renew_cert, self.renew_key)

    def check(self) -> None:
        """Raise ``OSError`` naming the first of the three files that cannot be read."""
        for what, path in (("CA", self.ca), ("certificate", self.cert), ("key", self.key)):
            if not os.access(path, os.R_OK):
                reason = "does not exist" if not os.path.exists(path) else "is not readable"
                raise OSError(f"etcd TLS {what} file {path} {reason}")

    def ssl_context(self) -> ssl.SSLContext:
        """A client context: verifies the server against ``ca``, presents ``cert``."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca)
        context.load_cert_chain(self.cert, self.key)
        return context

    def grpc_credentials(self) -> Any:
        """``grpc.ssl_channel_credentials`` from the three files (read now)."""
        import grpc  # type: ignore[import-untyped]  # grpcio ships no stubs

        def read(path: str) -> bytes:
            with open(path, "rb") as f:
                return f.read()

        return grpc.ssl_channel_credentials(read(self.ca), read(self.key), read(self.cert))

    def member_flags(self) -> list[str]:
        """etcd's flags for TLS with client certificates required, for clients and peers."""
        return [
            f"--cert-file={self.cert}",
            f"--key-file={self.key}",
            f"--trusted-ca-file={self.ca}",
            "--client-cert-auth",
            f"--peer-cert-file={self.cert}",
            f"--peer-key-file={self.key}",
            f"--peer-trusted-ca-file={self.ca}",
            "--peer-client-cert-auth",
        ]

    def as_tuple(self) -> tuple[str, str, str]:
        return self.ca, self.cert, self.key
