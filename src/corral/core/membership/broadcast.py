"""The transmit-limited broadcast queue: what gets piggybacked on outgoing packets.

One pending claim per member: a newer claim about a member replaces the older one (it carries
all the news). Each claim rides on at most ``limit`` packets, the least transmitted first (then
the newest), so fresh news spreads before old news is repeated.
"""

from __future__ import annotations

import heapq

from corral.core.membership.messages import Claim, estimated_size


class _Entry:
    __slots__ = ("claim", "order", "size", "transmits")

    def __init__(self, claim: Claim, order: int) -> None:
        self.claim = claim
        self.order = order
        self.size = estimated_size(claim)
        self.transmits = 0


# Smallest possible claim (a suspect with one-letter names): below this the budget is spent.
_MIN_CLAIM = 40
# How many entries that do not fit we step over before giving up on a packet.
_MAX_SKIPS = 16


class BroadcastQueue:
    """Pending claims with their transmit counts. ``take`` is ``O(k log Q)`` for ``k`` claims."""

    __slots__ = ("_heap", "_latest", "_order")

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, _Entry]] = []
        self._latest: dict[str, _Entry] = {}
        self._order = 0

    def __len__(self) -> int:
        return len(self._latest)

    def pending(self, name: str) -> Claim | None:
        """The claim about ``name`` still waiting to be sent, if any."""
        entry = self._latest.get(name)
        return entry.claim if entry is not None else None

    def push(self, claim: Claim) -> None:
        """Queue ``claim``, replacing any pending claim about the same member."""
        self._order += 1
        entry = _Entry(claim, self._order)
        self._latest[claim.name] = entry
        heapq.heappush(self._heap, (0, -entry.order, entry))

    def take(self, budget: int, limit: int) -> list[Claim]:
        """Claims whose estimated sizes fit in ``budget`` bytes, each counted as transmitted once
        more; a claim transmitted ``limit`` times leaves the queue."""
        out: list[Claim] = []
        keep: list[tuple[int, int, _Entry]] = []
        skips = 0
        heap = self._heap
        while heap and budget >= _MIN_CLAIM and skips < _MAX_SKIPS:
            item = heapq.heappop(heap)
            entry = item[2]
            if self._latest.get(entry.claim.name) is not entry:
                continue  # superseded by a newer claim about the same member
            if entry.size > budget:
                keep.append(item)
                skips += 1
                continue
            budget -= entry.size
            out.append(entry.claim)
            entry.transmits += 1
            if entry.transmits >= limit:
                del self._latest[entry.claim.name]
            else:
                keep.append((entry.transmits, item[1], entry))
        for item in keep:
            heapq.heappush(heap, item)
        if len(heap) > 4 * len(self._latest) + 64:
            self._compact()
        return out

    def _compact(self) -> None:
        # Superseded entries are dropped lazily; rebuild when they dominate the heap.
        self._heap = [(e.transmits, -e.order, e) for e in self._latest.values()]
        heapq.heapify(self._heap)
