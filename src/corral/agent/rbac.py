"""etcd's RBAC switched on by the agents themselves, in a cluster whose store uses a CA bundle.

With ``store.*.tls: {bundle: DIR}`` the CA key is on the node (each agent issues its own node
certificate from it), so the node may act as etcd's ``root``. At start the agent's caller
mints a ``root`` certificate from the bundle (``<state-dir>/tls-root/``) and runs
:func:`secure_store` beside the agent, which goes on with its own ``node:<node>`` identity.

Contract of :func:`secure_store`:

- one round is :func:`corral.auth.ensure` as ``root``: corral's roles, ``root``, one user per
  node of the agent's spec (``node:<node>``, the agent role) and per person recorded under
  ``auth/users/``, the spec seeded if the store has none, then auth enabled;
- every agent runs it, concurrently (ensure is idempotent, its races are harmless), so a node
  that joins with a spec that names it creates its own user before it needs it, and a person's
  grants are re-applied from their records at every agent start;
- the agent does not wait for it: until auth is on every certificate of the CA may write, and
  ensure creates the users of every node before it enables auth, so no agent of the spec is
  ever locked out;
- a round that fails (no quorum yet, a member still starting, etcd refusing) is retried after
  a backoff from :data:`FIRST_RETRY` doubling to :data:`LAST_RETRY`, until one succeeds; each
  round is bounded (:data:`ROUND_TIMEOUT` a call). A failure never stops the agent: it is
  logged, and reported (an ``auth`` event) once per distinct error; a success that changed
  something is reported (:func:`summary`; ``[]``: nothing was to do, nothing said).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence

from corral.auth.etcdauth import AuthError, EtcdAuth, desired_users, ensure
from corral.auth.users import read_people
from corral.store import EtcdStore, Keys, StoreError
from corral.store.etcd import etcd_client
from corral.store.tls import TlsFiles

log = logging.getLogger(__name__)
FIRST_RETRY = 0.5  # seconds
LAST_RETRY = 30.0
ROUND_TIMEOUT = 3.0  # seconds, one call of a round
Report = Callable[[str], Awaitable[None]]


async def ensure_round(
    endpoints: Sequence[str], root: TlsFiles, keys: Keys, nodes: Iterable[str], spec_text: bytes,
    timeout: float = ROUND_TIMEOUT,
) -> list[str]:  # fmt: skip
    """One :func:`corral.auth.ensure` as ``root`` on the first of ``endpoints`` that lets it
    through (``timeout`` bounds each call); what changed. Raises :class:`AuthError` or
    :class:`StoreError` (the last endpoint's) when none did."""
    store = EtcdStore(endpoints, tls=root, timeout=2 * timeout, attempt_timeout=timeout)
    try:
        people = await read_people(store, keys)
    finally:
        await store.close()
    users = desired_users(nodes, people)
    error: Exception = StoreError("no endpoint")
    for endpoint in endpoints:
        client = etcd_client(endpoint, tls=root, timeout=timeout)
        try:
            await client.connect()  # no I/O yet (gRPC connects lazily): the stubs
            return await ensure(EtcdAuth(client, timeout), keys, users, spec_text=spec_text)
        except AuthError as exc:
            error = exc
        finally:
            await client.close()
    raise error


async def secure_store(
    endpoints: Sequence[str],
    root: TlsFiles,
    keys: Keys,
    nodes: Iterable[str],
    spec_text: bytes,
    report: Report,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    timeout: float = ROUND_TIMEOUT,
) -> list[str]:
    """Rounds of :func:`ensure_round` until one succeeds (the module contract); its changes."""
    nodes, delay, said = list(nodes), FIRST_RETRY, ""
    while True:
        try:
            done = await ensure_round(endpoints, root, keys, nodes, spec_text, timeout)
        except Exception as exc:  # whatever it is, the agent goes on and so do the rounds
            text = f"etcd auth not ensured yet (retrying): {exc}"
            expected = isinstance(exc, AuthError | StoreError | OSError | ValueError)
            log.warning("%s", text, exc_info=not expected)
            if text != said:  # one event per distinct problem, not per retry
                said = text
                await report(text)
            await sleep(delay)
            delay = min(2 * delay, LAST_RETRY)
            continue
        if done:
            log.debug("etcd auth: %s", "; ".join(done))
            log.info("%s", summary(done))
            await report(summary(done))
        return done


def summary(done: Sequence[str]) -> str:
    """One line for an event: the users added, the spec seeded, auth enabled; the rest (roles
    and grants) counted."""
    named = [d for d in done if d in ("spec seeded", "auth enabled") or d.endswith(" added")]
    named = [d for d in named if not d.startswith("role ")]
    rest = len(done) - len(named)
    return "etcd auth ensured: " + ", ".join([*named, *([f"{rest} grant(s)"] if rest else [])])
