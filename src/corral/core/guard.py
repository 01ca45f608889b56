"""The lease guard's decisions (pure): when a listing of exclusive instances must be fenced,
and how long to sleep before reading it again (the shell: :mod:`corral.agent.guard`).

A :class:`Listing` is what ``guard.json`` says, parsed once: a deadline (CLOCK_MONOTONIC
seconds) and the exclusive instances the agent runs or starts. A file that cannot be read
as one is an empty listing ("nothing to guard"): the agent rewrites it within one keepalive.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace

POLL = 0.05  # the guard's precision: it acts at most this late after the deadline
IDLE = 0.5  # seconds between reads while nothing is listed (a new listing waits this long)


@dataclass(frozen=True)
class Listing:
    node: str = ""
    deadline: float = math.nan  # NaN: none (nothing is ever fenced for it)
    exclusive: tuple[str, ...] = ()
    token: int | None = None
    exit: bool = False

    @classmethod
    def parse(cls, text: str) -> Listing:
        """``guard.json``'s text; anything that is not a listing reads as an empty one."""
        try:
            value = json.loads(text)
        except ValueError:
            return cls()
        if not isinstance(value, dict):
            return cls()
        deadline, names, token = value.get("deadline"), value.get("exclusive"), value.get("token")
        return cls(
            node=str(value.get("node", "")),
            deadline=float(deadline) if isinstance(deadline, int | float) else math.nan,
            exclusive=tuple(sorted(str(n) for n in names)) if isinstance(names, list) else (),
            token=token if isinstance(token, int) and not isinstance(token, bool) else None,
            exit=value.get("exit") is True,
        )

    def renewed(self, later: float | None) -> Listing:
        """The listing with its deadline moved on by a renewal record (never earlier)."""
        if later is None or not later > self.deadline:
            return self
        return replace(self, deadline=later)

    @property
    def mark(self) -> tuple[float, tuple[str, ...]]:
        """What one fence is for: a deadline and the names listed with it."""
        return self.deadline, self.exclusive


Fenced = tuple[float, tuple[str, ...]] | None  # the mark of the last fence (None: none yet)


STOPPED_KEEP = 64  # entries of the stop record kept (a stop is looked up soon after it)


def parse_stops(text: str) -> dict[str, float]:
    """The guard's stop record (``guard.stopped``: ``{instance key: CLOCK_MONOTONIC time the
    guard began stopping it}``); anything unreadable counts as no record (``{}``), an entry
    that is not a finite time is left out."""
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {
        str(k): float(v)
        for k, v in value.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }


def with_stops(stops: dict[str, float], keys: list[str], at: float) -> str:
    """``stops`` with ``keys`` stopped at ``at``, as the record's text (the newest
    :data:`STOPPED_KEEP` entries)."""
    merged = {**stops, **dict.fromkeys(keys, at)}
    newest = sorted(merged.items(), key=lambda kv: kv[1])[-STOPPED_KEEP:]
    return json.dumps(dict(newest))


def due(listing: Listing, fenced: Fenced, now: float) -> bool:
    """Whether ``listing`` must be fenced at ``now``: its deadline has passed and this deadline
    and listing were not fenced already (a name listed later under the same deadline is
    fenced too)."""
    return bool(listing.exclusive) and now > listing.deadline and listing.mark != fenced


def pause(listing: Listing, fenced: Fenced, now: float) -> float:
    """How long to sleep before reading the file again: until the deadline it names while it
    lists services (then the agent has renewed, and the file says so, or it is time to act),
    at most ``IDLE``; ``IDLE`` when it lists none or was acted on already; never less than
    ``POLL``."""
    if not listing.exclusive or math.isnan(listing.deadline) or listing.mark == fenced:
        return IDLE
    return min(IDLE, max(POLL, listing.deadline - now))


@dataclass(frozen=True)
class Handover:
    """``handover.json``: a node lease handed to the guard for the next agent
    (:mod:`corral.agent.handover`)."""

    node: str
    lease: int
    token: int
    until: float  # CLOCK_MONOTONIC seconds
    endpoints: tuple[str, ...]
    ttl: int
    margin: float
    interval: float
    tls: tuple[str, ...] = ()  # (ca, cert, key) paths when etcd is reached over TLS

    def dump(self) -> str:
        return json.dumps(
            {**asdict(self), "endpoints": list(self.endpoints), "tls": list(self.tls)}
        )

    @classmethod
    def parse(cls, text: str) -> Handover | None:
        """The file's text; None for anything that is not a whole handover."""
        try:
            doc = json.loads(text)
            handover = cls(
                node=str(doc["node"]),
                lease=_int(doc["lease"]),
                token=_int(doc["token"]),
                until=float(doc["until"]),
                endpoints=tuple(str(e) for e in doc["endpoints"]),
                ttl=_int(doc["ttl"]),
                margin=float(doc["margin"]),
                interval=float(doc["interval"]),
                tls=tuple(str(p) for p in doc.get("tls", ())),
            )
        except (ValueError, TypeError, KeyError):
            return None
        bad_tls = len(handover.tls) not in (0, 3)
        if handover.ttl <= 0 or handover.interval <= 0 or not handover.endpoints or bad_tls:
            return None
        return handover

    def deadline(self, sent: float) -> float:
        """Rule 1's deadline of a renewal sent at ``sent``."""
        return sent + self.ttl - self.margin


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"not an integer: {value!r}")
    return value
