"""Counters a member keeps about its own protocol work (for metrics, tests and benchmarks)."""

from __future__ import annotations


class Stats:
    """Monotonic counters; :meth:`as_dict` gives stable names for metrics and JSON."""

    __slots__ = (
        "confirmations",
        "conflicts",
        "dead_declared",
        "misdirected",
        "packets_in",
        "packets_out",
        "ping_reqs_sent",
        "probe_failures",
        "probes",
        "push_pulls",
        "refutations",
        "relays",
        "retracted",
        "suspicions",
    )

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    confirmations: int
    """Independent confirmations of a suspicion we already held (Lifeguard)."""
    conflicts: int
    """Alive claims for a live member from a different address (ignored)."""
    dead_declared: int
    """Suspicions that expired here: first-hand death verdicts."""
    misdirected: int
    """Pings for another name (the address was reused)."""
    packets_in: int
    packets_out: int
    ping_reqs_sent: int
    probe_failures: int
    """Protocol periods that ended without any ack."""
    probes: int
    push_pulls: int
    refutations: int
    """Times we raised our incarnation to deny a suspicion or death."""
    relays: int
    """Pings sent on another member's behalf (ping-req)."""
    retracted: int
    """Suspicions we withdrew on learning that we had been declared dead (cut off)."""
    suspicions: int

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}
