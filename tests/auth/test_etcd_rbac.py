"""corral's roles enforced by a real etcd (password auth; certificate auth names the same
users by their CN): each role may do what it must and is refused the rest."""

from __future__ import annotations

import pytest

from corral.auth.etcdauth import AuthError, User, add_user, ensure
from corral.auth.roles import public_spans
from corral.store import Compare, LeaseNotFound, PermissionDenied, Put, Store

from .conftest import KEYS, SPEC, USERS, Secured

pytestmark = pytest.mark.etcd


async def refused(call: object) -> bool:
    try:
        await call  # type: ignore[misc]
    except PermissionDenied:
        return True
    return False


async def test_ensure_did_it_all_once_and_then_nothing(secured: Secured) -> None:
    assert "auth enabled" in secured.first and "spec seeded" in secured.first
    assert "user node:n1: role corral:c1:agent granted" in secured.first
    api = await secured.auth()
    try:
        assert await ensure(api, KEYS, USERS, spec_text=b"other", root_password="x") == []
    finally:
        await api.close()
    admin = secured.store("ada")
    try:
        assert (await admin.get(KEYS.spec)).value == SPEC  # type: ignore[union-attr]
    finally:
        await admin.close()


async def test_an_agent_writes_status_but_not_the_spec(secured: Secured) -> None:
    agent = secured.store("node:n1")
    try:
        lease = await agent.grant(5)
        await agent.put(KEYS.status("n1", "web"), b"{}", lease=lease.id)
        await agent.put(KEYS.node("n1"), b"{}", lease=lease.id)
        key = KEYS.gossip_key
        assert (await agent.txn([Compare.missing(key)], [Put(key, b"k")])).succeeded
        assert await agent.keepalive(lease.id) > 0  # renewals (HTTP gateway) keep working
        whole = [kv.key for kv in (await agent.range(KEYS.root_prefix)).kvs]
        assert {KEYS.gossip_key, KEYS.spec, KEYS.user("alice")} <= set(whole)  # secrets too
        assert await refused(agent.put(KEYS.spec, b"cluster: evil\n"))
        assert await refused(agent.put(KEYS.admin("maintenance"), b"{}"))
        await agent.revoke(lease.id)  # as the controller does with a fenced node's lease
        with pytest.raises(LeaseNotFound):
            await agent.keepalive(lease.id)
    finally:
        await agent.close()


async def test_an_operator_writes_admin_records_not_the_spec_nor_reads_secrets(
    secured: Secured,
) -> None:
    await _gossip_key(secured)
    operator = secured.store("alice")
    try:
        await operator.put(KEYS.admin("maintenance"), b'{"cluster": true}')
        await operator.delete(KEYS.failcount("n1", "web"))  # corral cleanup
        assert await refused(operator.put(KEYS.spec, b"cluster: c1\n"))
        assert await refused(operator.put(KEYS.assign("web"), b"{}"))
        assert await refused(operator.get(KEYS.gossip_key))
        assert await refused(operator.range(KEYS.tokens()))
        assert await refused(operator.range(KEYS.root_prefix))  # the root holds secrets
        public = await _public(operator)
        assert KEYS.admin("maintenance") in public and KEYS.gossip_key not in public
    finally:
        await operator.close()


async def test_a_viewer_reads_status_and_writes_nothing(secured: Secured) -> None:
    agent = secured.store("node:n1")
    await agent.put(KEYS.status("n1", "web"), b"{}")
    await agent.close()
    viewer = secured.store("vic")
    try:
        assert (await viewer.get(KEYS.status("n1", "web"))) is not None
        assert KEYS.status("n1", "web") in await _public(viewer)
        for key in (KEYS.status("n1", "web"), KEYS.admin("standby"), KEYS.event_key(1, "v")):
            assert await refused(viewer.put(key, b"{}"))
        assert await refused(viewer.get(KEYS.gossip_key))
    finally:
        await viewer.close()


async def test_an_unknown_user_or_none_is_refused(secured: Secured) -> None:
    for store in (secured.store("mallory"), secured.store("alice", "wrong"), secured.store(None)):
        try:
            assert await refused(store.get(KEYS.spec))
        finally:
            await store.close()
    api = await secured.auth("ada", "pw")  # an admin of corral is not etcd's root
    try:
        with pytest.raises(AuthError, match="permission denied"):
            await ensure(api, KEYS, USERS)
    finally:
        await api.close()


async def test_a_user_added_later_gets_its_role_and_loses_it(secured: Secured) -> None:
    api = await secured.auth()
    try:
        done = await add_user(api, KEYS, User("node:n2", ("agent",), "pw"))
        assert done == ["user node:n2 added", "user node:n2: role corral:c1:agent granted"]
        joined = secured.store("node:n2")
        await joined.put(KEYS.status("n2", "web"), b"{}")
        await add_user(api, KEYS, User("node:n2", ()))  # removed from the cluster
        assert await refused(joined.put(KEYS.status("n2", "web"), b"{}"))
        await joined.close()
    finally:
        await api.close()


async def _gossip_key(secured: Secured) -> None:
    agent = secured.store("node:n1")
    await agent.put(KEYS.gossip_key, b"k")
    await agent.close()


async def _public(store: Store) -> list[bytes]:
    keys = []
    for span in public_spans(KEYS):
        keys += [kv.key for kv in (await store.range(span.start, end=span.end)).kvs]
    return keys
