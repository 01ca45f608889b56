"""The key layout of a cluster in the store, under ``/corral/<cluster>/``.

``spec`` · ``controller`` · ``nodes/<node>`` · ``assign/<resource>`` ·
``status/<node>/<resource>`` · ``admin/<what>`` · ``failcounts/<node>/<resource>`` ·
``events/<time_ns>-<node>``. Names are validated so that no name can reach into another key's space.
"""

from __future__ import annotations

import re

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def _name(kind: str, value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(f"bad {kind} name for a store key: {value!r}")
    return value


class Keys:
    """Key builder for one cluster. Every method returns ``bytes`` ready for the store."""

    def __init__(self, cluster: str) -> None:
        self.root = f"/corral/{_name('cluster', cluster)}/"

    def _k(self, *parts: str) -> bytes:
        return (self.root + "/".join(parts)).encode()

    @property
    def spec(self) -> bytes:
        return self._k("spec")

    @property
    def controller(self) -> bytes:
        return self._k("controller")

    def node(self, node: str) -> bytes:
        return self._k("nodes", _name("node", node))

    def nodes(self) -> bytes:
        return self._k("nodes", "")

    def assign(self, resource: str) -> bytes:
        return self._k("assign", _name("resource", resource))

    def status(self, node: str, resource: str) -> bytes:
        return self._k("status", _name("node", node), _name("resource", resource))

    def admin(self, what: str) -> bytes:
        return self._k("admin", _name("admin key", what))

    def failcount(self, node: str, resource: str) -> bytes:
        return self._k("failcounts", _name("node", node), _name("resource", resource))

    def event_key(self, time_ns: int, node: str) -> bytes:
        """Events are keyed by time then node: no shared counter to contend on, and key order
        is time order (fixed width)."""
        if time_ns < 0:
            raise ValueError("event times are not negative")
        return self._k("events", f"{time_ns:020d}-{_name('node', node)}")

    def event_prefix(self) -> bytes:
        return self._k("events", "")

    def prefix(self, section: str) -> bytes:
        """``nodes``, ``status``, ``assign``, ``failcounts``, ``admin`` or ``events`` + "/"."""
        return self._k(_name("section", section), "")
