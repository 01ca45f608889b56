"""Lifeguard's two small parts: local health awareness and shrinking suspicion timers.

Both are plain state holders with no clock: the caller passes ``now`` and reads deadlines.
"""

from __future__ import annotations

from corral.core.membership.config import suspicion_timeout


class Awareness:
    """Local health awareness (LHA): a score in ``[0, limit - 1]`` that grows when this node
    misses acks or nacks it should have had (evidence that *we* are slow or cut off), and shrinks
    on every successful direct probe. Timeouts scale by ``score + 1``.

    With ``enabled=False`` the score stays 0 (plain SWIM).
    """

    __slots__ = ("enabled", "limit", "score")

    def __init__(self, limit: int, enabled: bool = True) -> None:
        self.limit = limit
        self.enabled = enabled
        self.score = 0

    def apply(self, delta: int) -> None:
        """Move the score by ``delta``, clamped to ``[0, limit - 1]``."""
        if self.enabled:
            self.score = min(self.limit - 1, max(0, self.score + delta))

    def scale(self, seconds: float) -> float:
        """``seconds`` stretched by the current health score."""
        return seconds * (self.score + 1)


class Suspicion:
    """One suspicion of one member: when it started, who confirmed it, when it expires.

    The first accuser counts as no confirmation; each *distinct* further accuser is one. The
    deadline is ``start + suspicion_timeout(low, high, k, confirmations)``, so confirmations can
    only bring it closer.
    """

    __slots__ = ("accusers", "high", "incarnation", "k", "low", "start")

    def __init__(
        self, accuser: str, incarnation: int, start: float, low: float, high: float, k: int
    ) -> None:
        self.accusers = {accuser}
        self.incarnation = incarnation
        self.start = start
        self.low = low
        self.high = high
        self.k = k

    @property
    def confirmations(self) -> int:
        return len(self.accusers) - 1

    def confirm(self, accuser: str) -> bool:
        """Record ``accuser``; ``True`` when it is a new independent confirmation that moved (or
        could move) the deadline, ``False`` for a repeat or once ``k`` is reached."""
        if accuser in self.accusers or self.confirmations >= self.k:
            return False
        self.accusers.add(accuser)
        return True

    def deadline(self) -> float:
        return self.start + suspicion_timeout(self.low, self.high, self.k, self.confirmations)
