"""The ``corral keys`` commands against a real etcd, as an operator runs them, and no key
material in anything the CLI prints about the cluster."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from corral.records import KeyringRecord, RegistrationRecord, fingerprint
from corral.store import EtcdStore, Keys
from corral.store.lab import EtcdLab, etcd_lab

pytestmark = pytest.mark.etcd
KEYS = Keys("clikeys")
OLD = b"s" * 32


@pytest.fixture
async def etcd(tmp_path: Path) -> AsyncIterator[EtcdLab]:
    async with etcd_lab(tmp_path, 1) as lab:
        yield lab


async def corral(spec: Path, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "corral.cli.main", *args, "--spec", str(spec),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_rotate_and_status_print_fingerprints_and_a_silent_node_fails_the_command(
    etcd: EtcdLab, tmp_path: Path
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"cluster: clikeys\nstore: {{etcd: {{endpoints: {json.dumps(etcd.endpoints)}}}}}\n"
        "nodes:\n  n1: {address: 127.0.0.1}\nresources: {}\n"
    )
    store = EtcdStore(etcd.endpoints)
    try:
        await store.put(KEYS.gossip_key, KeyringRecord((OLD,)).dump())
        lease = await store.grant(30)
        await store.put(KEYS.node("n1"), RegistrationRecord("x").dump(), lease=lease.id)
        code, out = await corral(spec, "keys", "rotate", "--timeout", "0.3")
        assert code == 1 and "n1 did not apply keyring revision" in out, out
        await store.revoke(lease.id)  # n1 is gone: no live member is left to wait for
        code, out = await corral(spec, "keys", "rotate", "--json")
        result = json.loads(out)
        assert code == 0 and result["ok"], out
        assert [p["action"] for p in result["phases"]] == ["add", "use", "remove"]
        kv = await store.get(KEYS.gossip_key)
        assert kv is not None
        new = KeyringRecord.read(kv.value).keys
        assert len(new) == 1 and new[0] != OLD
        outputs = [out]
        for args in (
            ["keys", "status"],
            ["keys", "status", "--json"],
            ["status", "--json"],
            ["events"],
        ):
            code, out = await corral(spec, *args)
            assert code == 0, out
            outputs.append(out)
        assert fingerprint(new[0]) in outputs[1] and "phase: idle" in outputs[1]
        assert f"keys keys: gossip key rotation to key {fingerprint(new[0])} finished" in outputs[4]
        # each run audited (who, what, result), the refused first one as failed with its reason
        assert ": keys rotate: failed: n1 did not apply keyring revision" in outputs[4]
        assert ": keys rotate: ok" in outputs[4]
        for key in (OLD, new[0]):
            for text in outputs:
                assert base64.b64encode(key).decode() not in text
    finally:
        await store.close()
