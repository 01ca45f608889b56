"""The member table: records, live count, probe order and random picks.

Costs are what a 5,000-member simulation needs: ``O(1)`` lookups, inserts, removals and random
picks; the probe order is reshuffled once per round (``O(N)`` every ``N`` probes).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

from corral.core.membership.members import Member, is_live
from corral.core.membership.messages import MemberState


class MemberTable:
    """Every member this node knows, except itself."""

    __slots__ = ("_index", "_names", "_order", "_pos", "_records", "_rng", "dead_since", "live")

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._records: dict[str, Member] = {}
        self._names: list[str] = []
        self._index: dict[str, int] = {}
        self._order: list[str] = []
        self._pos = 0
        self.live = 0
        """How many members are alive or suspect."""
        self.dead_since: dict[str, float] = {}
        """Dead or departed members and when this node learnt it (for reaping)."""

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, name: object) -> bool:
        return name in self._records

    def get(self, name: str) -> Member | None:
        return self._records.get(name)

    def state_of(self, name: str) -> MemberState | None:
        record = self._records.get(name)
        return record.state if record is not None else None

    def records(self) -> Iterator[Member]:
        return iter(self._records.values())

    def put(self, record: Member) -> Member | None:
        """Insert or replace ``record``; returns the previous record."""
        name = record.name
        old = self._records.get(name)
        self._records[name] = record
        was = old is not None and is_live(old.state)
        now_live = is_live(record.state)
        self.live += int(now_live) - int(was)
        if now_live:
            self.dead_since.pop(name, None)
        elif old is None or is_live(old.state):
            self.dead_since[name] = record.since
        if old is None:
            self._index[name] = len(self._names)
            self._names.append(name)
            self._add_to_order(name)
        return old

    def preload(self, records: dict[str, Member]) -> None:
        """Install ``records`` into an empty table (a simulator's converged start)."""
        if self._records:
            raise ValueError("preload needs an empty table")
        self._records = dict(records)
        self._names = list(records)
        self._index = {n: i for i, n in enumerate(self._names)}
        self.live = sum(1 for r in records.values() if is_live(r.state))
        self.dead_since = {n: r.since for n, r in records.items() if not is_live(r.state)}
        self._order = []
        self._pos = 0

    def remove(self, name: str) -> None:
        """Forget ``name`` entirely (reaping). Swap-remove keeps it ``O(1)``."""
        record = self._records.pop(name, None)
        if record is None:
            return
        if is_live(record.state):
            self.live -= 1
        self.dead_since.pop(name, None)
        i = self._index.pop(name)
        last = self._names.pop()
        if last != name:
            self._names[i] = last
            self._index[last] = i

    def _add_to_order(self, name: str) -> None:
        # Insert among the members not yet probed this round, so a newcomer is probed within one
        # round without a reshuffle.
        self._order.append(name)
        j = self._rng.randrange(self._pos, len(self._order))
        self._order[j], self._order[-1] = self._order[-1], self._order[j]

    def next_probe(self) -> Member | None:
        """The next live member in randomised round-robin order, or ``None`` if there is none.

        Each live member is probed once per round; the order is reshuffled between rounds.
        """
        for _ in range(2):
            while self._pos < len(self._order):
                name = self._order[self._pos]
                self._pos += 1
                record = self._records.get(name)
                if record is not None and is_live(record.state):
                    return record
            self._order = [n for n in self._names if is_live(self._records[n].state)]
            self._rng.shuffle(self._order)
            self._pos = 0
        return None

    def pick(self, k: int, accept: Callable[[Member], bool]) -> list[Member]:
        """Up to ``k`` distinct random members satisfying ``accept``.

        Rejection sampling for large tables (bounded attempts: a table that is mostly rejected
        may yield fewer than ``k``); exact sampling of the candidates for small ones.
        """
        names = self._names
        if k <= 0 or not names:
            return []
        records = self._records
        if len(names) <= 4 * k + 8:
            candidates = [records[n] for n in names if accept(records[n])]
            return self._rng.sample(candidates, min(k, len(candidates)))
        chosen: dict[str, Member] = {}
        rand = self._rng.randrange
        for _ in range(8 * k + 16):
            record = records[names[rand(len(names))]]
            if record.name not in chosen and accept(record):
                chosen[record.name] = record
                if len(chosen) == k:
                    break
        return list(chosen.values())

    def count(self, state: MemberState) -> int:
        """Members in ``state`` (``O(N)``; for tests and status, not for the hot path)."""
        return sum(1 for r in self._records.values() if r.state is state)
