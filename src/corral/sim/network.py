"""The simulated network: latency, loss, partitions. Pure functions of a seeded RNG.

Datagrams (``reliable=False``) are lost with the link's loss probability and delayed by one draw
of the latency distribution. Stream frames (push-pull over TCP) are never lost while the link
is up (TCP retransmits) but pay three one-way delays (handshake and data). A partition drops
everything, both kinds, between groups.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Latency:
    """One-way delay: ``low + Exp(mean - low)``, capped at ``cap``: a floor set by the wire
    and a tail set by queues, which is the usual shape of LAN latency."""

    low: float = 0.0002
    mean: float = 0.0005
    cap: float = 0.05

    def __post_init__(self) -> None:
        if not 0 <= self.low <= self.mean <= self.cap:
            raise ValueError("need 0 <= low <= mean <= cap")

    def draw(self, rng: random.Random) -> float:
        if self.mean == self.low:
            return self.low
        return min(self.cap, self.low + rng.expovariate(1.0 / (self.mean - self.low)))


class Network:
    """Link conditions between named nodes. Mutable: scenarios change it while time runs."""

    __slots__ = ("_groups", "_link_loss", "latency", "loss", "rng")

    def __init__(self, rng: random.Random, latency: Latency | None = None, loss: float = 0.0):
        self.rng = rng
        self.latency = latency or Latency()
        self.loss = loss
        self._link_loss: dict[tuple[str, str], float] = {}
        self._groups: dict[str, int] | None = None

    def set_loss(self, loss: float, src: str | None = None, dst: str | None = None) -> None:
        """Set the loss probability of every link, or of ``src -> dst`` (and back) only."""
        if not 0 <= loss <= 1:
            raise ValueError("loss is a probability")
        if src is None or dst is None:
            self.loss = loss
            self._link_loss.clear()
        else:
            self._link_loss[(src, dst)] = loss
            self._link_loss[(dst, src)] = loss

    def partition(self, groups: list[list[str]]) -> None:
        """Cut the network into ``groups``; nodes in no group form one more group."""
        self._groups = {name: i for i, group in enumerate(groups) for name in group}

    def heal(self) -> None:
        self._groups = None

    def connected(self, src: str, dst: str) -> bool:
        groups = self._groups
        if groups is None:
            return True
        return groups.get(src, -1) == groups.get(dst, -1)

    def delay(self, src: str, dst: str, reliable: bool) -> float | None:
        """Delay of one packet from ``src`` to ``dst``, or ``None`` if it is lost."""
        if self._groups is not None and not self.connected(src, dst):
            return None
        if reliable:
            return sum(self.latency.draw(self.rng) for _ in range(3))
        loss = self._link_loss.get((src, dst), self.loss) if self._link_loss else self.loss
        if loss and self.rng.random() < loss:
            return None
        return self.latency.draw(self.rng)
