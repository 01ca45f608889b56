"""Proof rounds against the store's members (shell of :mod:`corral.core.quorum`).

:class:`StoreVoice` is this agent's word about the store in its gossip metadata: the nonce of
its current proof round, and, when it supervises the node's member, how long that member has
been down, echoing the nonces of the peers' rounds it has seen (their proof that the member was
down when they asked). It notes when each peer's word first arrived here.

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
import logging
import secrets
from collections.abc import Callable, Mapping

import httpx

from corral.agent.membership import AgentGossip
from corral.core.agent.core import AgentCore
from corral.core.agent.effects import Effect, Event, Note
from corral.core.clock import Clock
from corral.core.quorum import (
    DeadStatement,
    KeepWindow,
    MemberAnswer,
    StoreWord,
    Verdict,
    judge_round,
    leader_of,
)
from corral.store.tls import TlsFiles

log = logging.getLogger(__name__)


class QuorumProbe:
    """``members``: member name -> client URL (``http(s)://host:port``); ``tls``: the files
    presented to members that require client certificates (their CN-less renewal pair: the
    status call goes through etcd's gateway, which refuses a CN once auth is enabled)."""

    def __init__(
        self, members: Mapping[str, str], clock: Clock, tls: TlsFiles | None = None
    ) -> None:
        self.members = dict(members)
        self.clock = clock
        self.tls = tls
        self._client: httpx.AsyncClient | None = None

    async def round(self, budget: float) -> dict[str, MemberAnswer]:
        """Ask every member once; the answers received within ``budget`` seconds."""
        if self._client is None:
            verify = self.tls.renewal().ssl_context() if self.tls is not None else True
            self._client = httpx.AsyncClient(timeout=budget, verify=verify)
        client = self._client
        answers: dict[str, MemberAnswer] = {}

        async def ask(name: str, url: str) -> None:
            with contextlib.suppress(httpx.HTTPError, ValueError, OSError):
                reply = await client.post(f"{url}/v3/maintenance/status", content=b"{}")
                received = self.clock.now()
                if reply.status_code == 200:
                    answers[name] = MemberAnswer(received, leader_of(reply.content))

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(budget):
                await asyncio.gather(*(ask(n, u) for n, u in self.members.items()))
        return answers

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class StoreVoice:
    """``gossip``: the agent's member (None: no statements are heard or made); ``down_since``:
    the supervisor's :meth:`~corral.store.embedded.EmbeddedEtcd.down_since` for this node's
    member (None: not supervised here, so nothing is stated about it)."""

    def __init__(
        self,
        node: str,
        gossip: AgentGossip | None,
        down_since: Callable[[], float | None] | None,
        clock: Clock,
    ) -> None:
        self.node, self.gossip, self.clock = node, gossip, clock
        self._down_since = down_since
        self.ask = ""
        self._heard: dict[str, tuple[str, float]] = {}  # node -> (word, first seen here)
        self._said: str | None = None
        self.own_down_at_start: float | None = None  # this member's down time when a round began

    def down_for(self) -> float | None:
        """How long this node's member has been down, now (None: running or unknown)."""
        since = self._down_since() if self._down_since is not None else None
        return None if since is None else max(0.0, self.clock.now() - since)

    def listen(self) -> None:
        """Note the peers' words, and when each changed word was first seen here."""
        if self.gossip is None:
            return
        now = self.clock.now()
        for node, word in self.gossip.store_words().items():
            if self._heard.get(node, ("", 0.0))[0] != word:
                self._heard[node] = (word, now)

    def speak(self) -> None:
        """Publish this agent's word when it changed: its round's nonce, and while its member is
        down, how long, echoing the peers' round nonces heard."""
        if self.gossip is None:
            return
        down = self.down_for()
        asks = sorted({w.ask for w in self._words().values() if w.ask})
        word = StoreWord(self.ask, None if down is None else int(down * 1000), tuple(asks))
        key = f"{self.ask}|{down is None}|{','.join(asks)}"
        if key != self._said and self.gossip.say_store(word.encode()):
            self._said = key

    def statements(self, nonce: str, started: float) -> dict[str, DeadStatement]:
        """The statements that members are down, by member (node) name: the peers' (heard
        here), and this node's own, taken from its supervisor at ``started``."""
        out = {
            node: DeadStatement(at, word.down_ms / 1000, nonce in word.echo)
            for node, (text, at) in self._heard.items()
            if (word := StoreWord.decode(text)).down_ms is not None
        }
        own = self.own_down_at_start
        if own is not None:
            out[self.node] = DeadStatement(started, own, True)
        return out

    def _words(self) -> dict[str, StoreWord]:
        return {node: StoreWord.decode(text) for node, (text, _) in self._heard.items()}


STATEMENT_WAIT = 1.0  # seconds a round waits for the statements of members that did not answer
MAX_KEEP = 600.0  # seconds past the renewal deadline a keep may last (an unforeseen case
# must not hold a VIP forever)


class QuorumKeeper:
    """Runs proof rounds while this node's renewals are late and it holds exclusive instances,
    and keeps the :class:`KeepWindow` they extend. Without a probe (an external etcd, whose
    lease checkpointing corral does not control; tests on an in-memory store) it proves
    nothing and the renewal deadline alone counts, as rule 1 says."""

    def __init__(
        self,
        probe: QuorumProbe | None,
        clock: Clock,
        voice: StoreVoice | None = None,
        max_keep: float = MAX_KEEP,
    ):
        self.probe, self.clock, self.voice = probe, clock, voice
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
        nonce = secrets.token_hex(4)
        if self.voice is not None:
            self.voice.ask = nonce
            self.voice.own_down_at_start = self.voice.down_for()
            self.voice.speak()
        started = self.clock.now()
        answers = await self.probe.round(election)
        members = tuple(sorted(self.probe.members))
        statements = await self._statements(nonce, started, set(members) - set(answers))
        self.last_verdict = judge_round(started, members, answers, election, statements)
        extended = self.window.proof(started, self.last_verdict, lifetime)
        if extended and self.kept_since is None:
            self.kept_since = renewal_deadline
        return extended

    async def _statements(
        self, nonce: str, started: float, silent: set[str]
    ) -> dict[str, DeadStatement]:
        """The statements that the ``silent`` members are down, waiting up to
        ``STATEMENT_WAIT`` for their agents to echo this round's nonce."""
        voice = self.voice
        if voice is None or not silent:
            return {}
        waited_until = started + STATEMENT_WAIT
        while True:
            voice.listen()
            found = voice.statements(nonce, started)
            if all(m in found and found[m].echoes for m in silent):
                return found
            if self.clock.now() >= waited_until:
                return found
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        if self.probe is not None:
            await self.probe.close()

    async def step(
        self, core: AgentCore, running: list[str], late_after: float, election: float
    ) -> tuple[bool, list[Effect]]:
        """One pass of the agent's quorum loop. Hears the peers' words about the store; when
        renewals are ``late_after`` seconds from the rule-1 deadline or past it and the core
        wants a proof (exclusive instances run here), runs a proof round that no store member
        has a leader, which keeps them ``ttl - safety_margin`` past its start; says this
        node's word (its round's nonce; how long its member has been down). Returns whether
        the keep was extended, and the notes and events to carry out."""
        lease, effects = core.lease, list[Effect]()
        kept = False
        if self.voice is not None:
            self.voice.listen()
        late = self.due(self.clock.now(), lease.deadline(), late_after)
        if core.wants_proof(late, running):
            was = self.kept_since
            kept = await self.round(lease.deadline(), lease.ttl - lease.margin, election)
            held = sorted(k for k in running if core.guarded(k))
            effects.append(Note(self.round_text(kept and was is None, held)))
        elif self.voice is not None:
            self.voice.ask = ""  # no round of ours: the peers need not answer one
        if self.voice is not None:
            self.voice.speak()
        now = self.clock.now()
        summary = self.ended_text(now, lease.may_hold(now))
        if summary is not None:
            effects.append(Event("store", summary))
        return kept, effects

    def round_text(self, began: bool, held: list[str]) -> str:
        """What the last round found; ``began``: it began a keep of ``held`` (logged too)."""
        why = self.last_verdict.reason if self.last_verdict is not None else "?"
        if not began:
            return f"store proof round: {why}"
        text = (
            f"the store has no leader ({why}): keeping {', '.join(held)} past the lease "
            "deadline, starting nothing"
        )
        log.warning("%s", text)
        return text

    def ended_text(self, now: float, renewed: bool) -> str | None:
        """The event that a keep ended (:meth:`ended`), once; ``renewed``: renewals resumed
        (else the proofs stopped)."""
        lasted = self.ended(now)
        if lasted is None:
            return None
        how = "renewals resumed" if renewed else "no proof any more"
        verdict = self.last_verdict
        why = f" ({verdict.reason})" if verdict is not None and not verdict.proven else ""
        return (
            f"kept exclusive instances {lasted:.1f}s past the lease deadline while the store "
            f"had no leader; ended: {how}{why}"
        )

    def ended(self, now: float) -> float | None:
        """If a keep had begun and the window no longer extends past the renewal deadline
        (a renewal came, or the proofs stopped and the deadline passed): how long it lasted,
        once; else None."""
        if self.kept_since is None or self.window.extended(now):
            return None
        lasted, self.kept_since = max(0.0, now - self.kept_since), None
        return lasted
