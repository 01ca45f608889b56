"""An aetcd client over TLS. Private to :mod:`corral.store.etcd`.

Why a subclass: ``aetcd.Client.connect`` always opens ``insecure_channel``. This one opens a
``secure_channel`` with credentials from :class:`~corral.store.tls.TlsFiles` (read at each
connect, so a re-issued certificate is used by the next connection) and builds the same stubs.
The server is checked against the target's host, an IP address or a name: corral's members
carry both in their certificate's SANs (:mod:`corral.pki`). etcd's password auth (aetcd's
``username``) is not used with certificates: etcd takes the user name from the CN.
"""

from __future__ import annotations

from typing import Any

import aetcd
from aetcd import rpc, watcher

from corral.store.tls import TlsFiles


class TlsClient(aetcd.Client):  # type: ignore[misc]  # aetcd is untyped
    def __init__(self, *, tls: TlsFiles, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._tls = tls

    async def connect(self) -> None:
        if self._connected.is_set():
            return
        # no await before the stubs exist: another task cannot see a half-built client
        host = f"[{self._host}]" if ":" in self._host else self._host
        self.channel = rpc.secure_channel(
            f"{host}:{self._port}", self._tls.grpc_credentials(), options=self._options.items()
        )
        self.kvstub = rpc.KVStub(self.channel)
        self.clusterstub = rpc.ClusterStub(self.channel)
        self.leasestub = rpc.LeaseStub(self.channel)
        self.maintenancestub = rpc.MaintenanceStub(self.channel)
        self._watcher = watcher.Watcher(
            rpc.WatchStub(self.channel), timeout=self._timeout, metadata=self.metadata
        )
        self._connected.set()
