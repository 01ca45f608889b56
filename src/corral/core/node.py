"""What the node-side shells share: the node a driver, a check or the load balancer acts on,
and the error a failed action raises. Pure values (the drivers, checks and the LB shells sit
above this; :mod:`corral.drivers.base` re-exports both)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


class DriverError(Exception):
    """A driver action failed; the message says why (for events and ``corral status``)."""


@dataclass(frozen=True)
class NodeContext:
    """What a driver or check may know of the node it runs on (for ``{node.*}`` templates)."""

    name: str
    address: str
    attrs: dict[str, str] = field(default_factory=dict)
    state_dir: Path = Path("/var/lib/corral")  # per-node state: pid files, logs

    def render(self, template: str) -> str:
        """Fill ``{node.name}``, ``{node.address}`` and ``{node.<attr>}``."""
        out = template.replace("{node.name}", self.name).replace("{node.address}", self.address)
        for key, value in self.attrs.items():
            out = out.replace("{node." + key + "}", value)
        return out
