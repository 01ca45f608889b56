"""API tokens: shown once, stored salted and hashed, verified to the identity they stand
for, refused when wrong, malformed, unknown or revoked."""

from __future__ import annotations

import itertools
from collections.abc import Callable

from corral.auth.identity import Identity, cert_cn, key_part, local, role_of
from corral.auth.tokens import TokenRecord, check, create, issue, listing, revoke, verify
from corral.core.clock import ManualClock
from corral.store import Keys, MemoryStore

KEYS = Keys("c1")


def counting_bytes() -> Callable[[int], bytes]:
    counter = itertools.count()
    return lambda n: bytes((next(counter) + i) % 256 for i in range(n))


def test_a_token_proves_its_identity_and_nothing_else() -> None:
    text, token_id, record = issue(
        "ci", "operator", by="root", now=5.0, random_bytes=counting_bytes()
    )
    assert text.startswith(f"corral_{token_id}_")
    assert check(text, record) == Identity("ci", "operator", "token")
    secret = text.rsplit("_", 1)[1]
    assert secret not in record.dump().decode()  # never stored, only its hash
    wrong = text[:-1] + ("A" if text[-1] != "A" else "B")
    assert check(wrong, record) is None
    assert check(text, None) is None  # no record: refused (after the same work)
    assert check("corral_xyz", record) is None
    assert check("", record) is None
    broken = TokenRecord("ci", "admin", "zz", record.hash, 4096, 8, 1)
    assert check(text, broken) is None  # a record that does not read proves nothing
    assert TokenRecord.parse(record.dump()) == record
    assert TokenRecord.parse(b'{"name": "x", "role": "root"}') is None


async def test_tokens_in_the_store_verify_until_revoked() -> None:
    store = MemoryStore(ManualClock(0.0))
    text, token_id = await create(store, KEYS, "alice", "viewer", by="root", now=1.0)
    assert await verify(store, KEYS, text) == Identity("alice", "viewer", "token")
    assert list(await listing(store, KEYS)) == [token_id]
    assert (await listing(store, KEYS))[token_id].by == "root"
    other, _ = await create(store, KEYS, "bob", "admin", by="root", now=2.0)
    assert await verify(store, KEYS, other) == Identity("bob", "admin", "token")
    assert await revoke(store, KEYS, token_id)
    assert await verify(store, KEYS, text) is None
    assert not await revoke(store, KEYS, token_id)
    assert await verify(store, KEYS, "not a token") is None
    assert await verify(MemoryStore(ManualClock(0.0)), KEYS, other) is None  # another store


def test_names_map_to_one_identity_model() -> None:
    assert role_of("node:ctl1", {}) == "agent"
    assert role_of("root", {}) == "admin"
    assert role_of("alice", {"alice": "operator"}) == "operator"
    assert role_of("mallory", {"alice": "operator"}) is None
    me = local("bob")
    assert not me.authenticated and me.describe() == "local:bob (unauthenticated)"
    assert Identity("alice", "operator", "cert").describe() == "alice (operator, cert)"
    assert key_part("node:ctl1") == "node_ctl1"
    assert cert_cn(_self_signed("node:ctl1")) == "node:ctl1"


def _self_signed(cn: str) -> bytes:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)
