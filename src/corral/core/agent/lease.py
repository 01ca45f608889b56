"""The node lease as the agent sees it, and rule 1's deadlines (pure; times on the agent's
monotonic clock).

- ``renewed_at``: when the last successful renewal was *sent* (the lease runs from when etcd
  got it, which is not before it was sent: the deadline never runs late).
- Rule 1's deadline: ``renewed_at + ttl - safety_margin``. Before it, exclusive instances may
  be started and kept (:meth:`may_hold`); after it, only kept, and only while a proof that no
  store member has a leader extends the keep deadline (:meth:`may_keep`,
  :mod:`corral.core.quorum`).
- ``lapsed_at``: the last renewal that came back after the keep deadline had passed: the lease
  guard (a separate process) may have stopped exclusive instances meanwhile. A service found
  stopped that was started before then is the node's event, not the service's failure
  (rule 7).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class LeaseState:
    ttl: int = 1
    margin: float = 0.0
    lease: int | None = None
    registration: int | None = None  # mod revision of our nodes/<node> record
    renewed_at: float = -math.inf
    registered_at: float = -math.inf
    lapsed_at: float = -math.inf
    continuous: set[int] = field(default_factory=set)  # earlier registrations ours replaced
    # with no lapse (an agent restarted within its lease: never offline for the controller)

    def deadline(self) -> float:
        """Rule 1's deadline of the last renewal."""
        return self.renewed_at + self.ttl - self.margin

    def may_hold(self, now: float) -> bool:
        """Rule 1: the condition to start or promote an exclusive instance."""
        return self.lease is not None and now < self.deadline()

    def may_keep(self, now: float, keep_deadline: float) -> bool:
        """The condition to keep running exclusive instances (``keep_deadline``: the
        deadline, or later while the store is proven leaderless)."""
        return self.lease is not None and now < keep_deadline

    def renewed(self, sent: float, done: float, keep_deadline: float) -> bool:
        """A renewal sent at ``sent`` succeeded at ``done``. True when it came too late (at or
        after ``keep_deadline``): the lease guard may have stopped exclusive instances."""
        late = done >= keep_deadline
        if late:
            self.lapsed_at = done
        self.renewed_at = sent
        return late

    def registered(
        self, lease: int, registration: int, asked: float, replaced: int | None = None
    ) -> None:
        """A new lease (asked for at ``asked``) and the registration written under it;
        ``replaced``: the live registration it replaced in one step (compare-and-swap), None
        when there was none or it had lapsed. Instances assigned to a registration replaced
        with no lapse may be kept (rule 2 moved nothing away meanwhile); after a lapse, not."""
        if replaced is None:
            self.continuous = set()
        else:
            chain = self.continuous if replaced == self.registration else set()
            self.continuous = chain | {replaced}
        self.lease, self.registration = lease, registration
        self.renewed_at = self.registered_at = asked

    def lost(self) -> None:
        """The store says the lease is gone (expired, or revoked by a fence)."""
        self.lease, self.registration = None, None

    def since_registered(self, now: float) -> float:
        return now - self.registered_at
