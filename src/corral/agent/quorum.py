"""Proof rounds against the store's members (shell of :mod:`corral.core.quorum`).

:class:`QuorumProbe` asks every voting member of the embedded store for its status
(``POST /v3/maintenance/status`` on its client URL, etcd's JSON gateway), all at once, and
returns the answers that came back within the round's budget with the instant each arrived.
A member that does not answer, answers with an error status or with a body it cannot read is
simply absent: :func:`corral.core.quorum.judge_round` then refuses the proof. It never raises
for a member's trouble.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping

import httpx

from corral.core.clock import Clock
from corral.core.quorum import KeepWindow, MemberAnswer, Verdict, judge_round


class QuorumProbe:
    """``members``: member name -> client URL (``http://host:port``)."""

    def __init__(self, members: Mapping[str, str], clock: Clock) -> None:
        self.members = dict(members)
        self.clock = clock
        self._client: httpx.AsyncClient | None = None

    async def round(self, budget: float) -> dict[str, MemberAnswer]:
        """Ask every member once; the answers received within ``budget`` seconds."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=budget)
        client = self._client
        answers: dict[str, MemberAnswer] = {}

        async def ask(name: str, url: str) -> None:
            with contextlib.suppress(httpx.HTTPError, ValueError, OSError):
                reply = await client.post(f"{url}/v3/maintenance/status", content=b"{}")
                received = self.clock.now()
                if reply.status_code == 200:
                    answers[name] = MemberAnswer(received, _leader(reply.content))

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(budget):
                await asyncio.gather(*(ask(n, u) for n, u in self.members.items()))
        return answers

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _leader(body: bytes) -> int:
    """The member's leader id from a status body (0: it names none). Raises ``ValueError`` for
    a body that is not a status (an answer that cannot be read is no proof)."""
    value = json.loads(body)
    if not isinstance(value, dict) or "header" not in value:
        raise ValueError("not an etcd status")
    return int(value.get("leader", 0))


MAX_KEEP = 600.0  # seconds past the renewal deadline a keep may last (an unforeseen case
# must not hold a VIP forever)


class QuorumKeeper:
    """Runs proof rounds while this node's renewals are late and it holds exclusive instances,
    and keeps the :class:`KeepWindow` they extend. Without a probe (an external etcd, whose
    lease checkpointing corral does not control; tests on an in-memory store) it proves
    nothing and the renewal deadline alone counts, as rule 1 says."""

    def __init__(self, probe: QuorumProbe | None, clock: Clock, max_keep: float = MAX_KEEP):
        self.probe, self.clock = probe, clock
        self.window = KeepWindow(max_keep)
        self.kept_since: float | None = None  # when the current keep began (None: none)
        self.last_verdict: Verdict | None = None

    def deadline(self, renewal_deadline: float) -> float:
        """The deadline until which held exclusive instances may be kept (never earlier than
        ``renewal_deadline``, the rule-1 deadline of the last renewal)."""
        self.window.renewal_deadline(renewal_deadline)
        return self.window.deadline()

    def due(self, now: float, renewal_deadline: float, late_after: float) -> bool:
        """A round is due when a probe exists and the last renewal is ``late_after`` seconds
        overdue, that is within ``late_after`` of its deadline or past it."""
        return self.probe is not None and now >= renewal_deadline - late_after

    async def round(self, renewal_deadline: float, lifetime: float, election: float) -> bool:
        """One proof round; True when it extended the keep."""
        assert self.probe is not None
        self.window.renewal_deadline(renewal_deadline)
        started = self.clock.now()
        answers = await self.probe.round(election)
        members = tuple(sorted(self.probe.members))
        self.last_verdict = judge_round(started, members, answers, election)
        extended = self.window.proof(started, self.last_verdict, lifetime)
        if extended and self.kept_since is None:
            self.kept_since = renewal_deadline
        return extended

    def ended(self, now: float) -> float | None:
        """If a keep had begun and the window no longer extends past the renewal deadline
        (a renewal came, or the proofs stopped and the deadline passed): how long it lasted,
        once; else None."""
        if self.kept_since is None or self.window.extended(now):
            return None
        lasted, self.kept_since = max(0.0, now - self.kept_since), None
        return lasted
