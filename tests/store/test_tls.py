"""etcd over TLS with client certificates (corral.store.tls, corral.pki): a real member
requiring certificates; corral's store works through it (gRPC and the gateway renewals), and a
client without a certificate, or with one from another CA, is refused."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from corral.agent import handover as ho
from corral.agent.quorum import QuorumProbe
from corral.clocks import MonotonicClock
from corral.pki import Authority, init_bundle, issue_identity
from corral.pki.ca import issue, write_identity
from corral.store import Compare, EtcdStore, Put, StoreError, StoreUnavailable
from corral.store.embedded import find_etcd
from corral.store.etcd import renew_over_gateway
from corral.store.lab import EtcdLab, etcd_lab
from corral.store.tls import TlsFiles

pytestmark = pytest.mark.etcd


def member_files(ca: Authority, out: Path) -> TlsFiles:
    cert, key = issue(
        ca, "node:m0", ou="node", now=time.time(), days=90, addresses=("127.0.0.1",),
        names=("localhost",), server=True,
    )  # fmt: skip
    return TlsFiles(*map(str, write_identity(out, "node", ca, cert, key)))


@pytest.fixture
def ca(tmp_path: Path) -> Authority:
    return init_bundle(tmp_path / "ca", "test", time.time())


@pytest.fixture
async def tls_etcd(tmp_path: Path, ca: Authority) -> AsyncIterator[EtcdLab]:
    async with etcd_lab(tmp_path / "etcd", 1, tls=member_files(ca, tmp_path / "node")) as lab:
        yield lab


async def test_the_store_works_over_tls_with_an_operator_certificate(
    tls_etcd: EtcdLab, ca: Authority, tmp_path: Path
) -> None:
    assert tls_etcd.endpoints[0].startswith("https://127.0.0.1:")
    files = issue_identity(ca, "alice", "admin", tmp_path / "alice", time.time())
    store = EtcdStore(tls_etcd.endpoints, timeout=5.0, tls=files)
    try:
        events = []
        ready = asyncio.Event()
        first = await store.put(b"/w/a", b"1")

        async def watch() -> None:
            async for event in store.watch(b"/w/", start_revision=first):
                events.append(event)
                ready.set()

        watcher = asyncio.create_task(watch())
        got = await store.get(b"/w/a")
        assert got is not None and got.value == b"1"
        result = await store.txn([Compare(b"/w/a", "value", "==", b"1")], [Put(b"/w/b", b"2")], [])
        assert result.succeeded
        lease = await store.grant(5)
        assert await store.keepalive(lease.id) > 0  # over the HTTP gateway, with the cert
        # the lease guard's renewal during a handover: a fresh TLS connection per renewal
        handover = ho.Handover("n1", lease.id, 1, 0.0, tuple(tls_etcd.endpoints), 5, 1.0, 0.4,
                               files.as_tuple())  # fmt: skip
        parsed = ho.Handover.parse(handover.dump())
        assert parsed == handover
        assert await asyncio.to_thread(ho.renew, parsed, 5.0) > 0
        await asyncio.wait_for(ready.wait(), 5.0)
        watcher.cancel()
        assert events[0].key == b"/w/a"
    finally:
        await store.close()


async def test_a_client_without_a_certificate_is_refused(tls_etcd: EtcdLab) -> None:
    endpoint = tls_etcd.endpoints[0]
    host, port = endpoint.removeprefix("https://").split(":")
    server = tls_etcd.tls
    assert server is not None
    # a raw TLS connection that trusts the CA but shows no certificate: the handshake fails
    no_cert = ssl.create_default_context(cafile=server.ca)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        reader, writer = await asyncio.open_connection(host, int(port), ssl=no_cert)
        writer.write(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        if not await reader.read(100):  # TLS 1.3: the refusal comes after the handshake
            raise ConnectionError("closed")
    # plain http to the TLS port: no answer
    with pytest.raises((OSError, Exception)):
        await asyncio.wait_for(renew_over_gateway([f"http://{host}:{port}"], 1), 3.0)
    # etcdctl with the CA but no certificate
    etcdctl = str(Path(find_etcd()).with_name("etcdctl"))
    proc = subprocess.run(
        [etcdctl, "--endpoints", endpoint, "--cacert", server.ca, "--dial-timeout", "1s",
         "--command-timeout", "2s", "get", "/x"],
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "bad certificate" in proc.stderr or "deadline" in proc.stderr
    # and with the node certificate it answers
    proc = subprocess.run(
        [etcdctl, "--endpoints", endpoint, "--cacert", server.ca, "--cert", server.cert,
         "--key", server.key, "put", "/x", "1"],
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr


async def test_a_certificate_from_another_ca_is_refused(tls_etcd: EtcdLab, tmp_path: Path) -> None:
    other = init_bundle(tmp_path / "other", "other", time.time())
    theirs = issue_identity(other, "mallory", "admin", tmp_path / "mallory", time.time())
    assert tls_etcd.tls is not None
    # trusting the right CA (so only the client side is wrong)
    forged = TlsFiles(tls_etcd.tls.ca, theirs.cert, theirs.key)
    store = EtcdStore(tls_etcd.endpoints, timeout=1.0, attempt_timeout=0.3, tls=forged)
    try:
        with pytest.raises(StoreUnavailable):
            await store.put(b"/x", b"1")
        with pytest.raises(StoreUnavailable):
            await store.keepalive(1)
    finally:
        await store.close()
    with pytest.raises((OSError, Exception)):
        await asyncio.wait_for(renew_over_gateway(tls_etcd.endpoints, 1, forged), 3.0)


def test_endpoint_schemes_must_agree_with_the_tls_settings(tmp_path: Path) -> None:
    files = TlsFiles("/ca", "/c", "/k")
    with pytest.raises(ValueError, match="https: give the TLS files"):
        EtcdStore(["https://127.0.0.1:2379"])
    with pytest.raises(ValueError, match="plain http, but TLS files are given"):
        EtcdStore(["http://127.0.0.1:2379"], tls=files)
    EtcdStore(["127.0.0.1:2379"], tls=files)  # bare host:port follows tls
    with pytest.raises(OSError, match=r"etcd TLS certificate file /c does not exist"):
        TlsFiles(str(tmp_path), "/c", "/k").check()


async def test_renewals_keep_working_once_etcd_auth_is_enabled(
    tls_etcd: EtcdLab, ca: Authority, tmp_path: Path
) -> None:
    """etcd's gateway refuses certificates with a CN once auth is on; the CN-less renewal pair
    renews leases (and nothing else). Auth is enabled here by hand, as the RBAC setup will."""
    root = issue_identity(ca, "root", "admin", tmp_path / "root", time.time())
    cert, key = issue(ca, None, ou="renewal", now=time.time(), days=1)
    _, renew_cert, renew_key = map(str, write_identity(tmp_path / "renew", "renew", ca, cert, key))
    agent = TlsFiles(root.ca, root.cert, root.key, renew_cert, renew_key)
    store = EtcdStore(tls_etcd.endpoints, timeout=1.0, attempt_timeout=0.5, tls=agent)
    with_cn = EtcdStore(tls_etcd.endpoints, timeout=1.0, attempt_timeout=0.5, tls=root)
    renewal_only = EtcdStore(tls_etcd.endpoints, timeout=1.0, tls=agent.renewal())
    etcdctl = [str(Path(find_etcd()).with_name("etcdctl")), "--endpoints", tls_etcd.endpoints[0],
               "--cacert", root.ca, "--cert", root.cert, "--key", root.key]  # fmt: skip
    try:
        lease = await store.grant(10)
        for args in (["user", "add", "root", "--no-password"],
                     ["user", "grant-role", "root", "root"], ["auth", "enable"]):  # fmt: skip
            subprocess.run([*etcdctl, *args], check=True, capture_output=True, timeout=20)
        assert await store.keepalive(lease.id) > 0
        assert await store.put(b"/k", b"v") > 0  # gRPC as root: the CN is the user
        with pytest.raises(StoreUnavailable, match="HTTP 400"):
            await with_cn.keepalive(lease.id)  # what etcd does to a CN on its gateway
        # the agent's quorum probe asks the members' status through the gateway too
        probe = QuorumProbe({"m0": tls_etcd.endpoints[0]}, MonotonicClock(), agent)
        try:
            assert "m0" in await probe.round(2.0)
        finally:
            await probe.close()
        with pytest.raises(StoreError, match="permission denied"):
            await renewal_only.put(b"/k", b"stolen")
    finally:
        for s in (store, with_cn, renewal_only):
            await s.close()
