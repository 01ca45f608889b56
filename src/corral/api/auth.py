"""Who calls the API: bearer tokens of :mod:`corral.auth.tokens`, roles of
:mod:`corral.auth.roles` (viewer < operator < admin; an agent's identity reads like a viewer).

Contract:
- ``Authorization: Bearer corral_<id>_<secret>``. Missing, malformed, unknown, wrong or
  revoked: 401 with the reason; a role below the route's: 403 naming both roles. The token
  itself is never logged or echoed.
- A token's record is read from the store and checked with scrypt (slow on purpose). The
  check runs in a worker thread, at most ``CONCURRENT`` at once, never on the API's event
  loop, so a flood of bad tokens cannot delay the health endpoints. Answers (good and bad) are
  remembered ``TTL`` seconds by the token's SHA-256 (never the token): a revoked token is
  refused within ``TTL``; the cache holds at most ``ENTRIES`` tokens.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from corral.auth import Identity
from corral.auth.tokens import TokenRecord, check, token_id

TTL = 10.0
ENTRIES = 1024
CONCURRENT = 2
RANK = {"viewer": 1, "agent": 1, "operator": 2, "admin": 3}


class Refused(Exception):
    """401 or 403, with the reason said to the client."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def bearer(header: str | None) -> str:
    """The token of an ``Authorization`` header, or :class:`Refused` (401)."""
    if header is None:
        raise Refused(401, "this path needs a token: Authorization: Bearer <token>")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Refused(401, "malformed Authorization header: use 'Bearer <token>'")
    if token_id(token.strip()) is None:
        raise Refused(401, "the token is not valid")
    return token.strip()


class Tokens:
    """``identity(header, need)``: the caller, with at least role ``need``, else
    :class:`Refused`. ``record(id)`` reads a token's record from the store (None: none)."""

    def __init__(
        self,
        record: Callable[[str], Awaitable[TokenRecord | None]],
        clock: Callable[[], float],
    ) -> None:
        self._record, self._clock = record, clock
        self._cache: OrderedDict[bytes, tuple[float, Identity | None]] = OrderedDict()
        self._slots = asyncio.Semaphore(CONCURRENT)

    async def identity(self, header: str | None, need: str) -> Identity:
        token = bearer(header)
        who = await self._check(token)
        if who is None or who.role is None:
            raise Refused(401, "the token is not valid")
        if RANK.get(who.role, 0) < RANK[need]:
            raise Refused(403, f"{who.name} has role {who.role}; this needs {need}")
        return who

    async def _check(self, token: str) -> Identity | None:
        digest = hashlib.sha256(token.encode()).digest()
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        found = token_id(token)
        record = await self._record(found) if found is not None else None
        async with self._slots:
            who = await asyncio.to_thread(check, token, record)
        self._cache[digest] = (now + TTL, who)
        self._cache.move_to_end(digest)
        while len(self._cache) > ENTRIES:
            self._cache.popitem(last=False)
        return who
