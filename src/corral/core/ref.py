"""How an instance is named, in the store, in state files and on the command line (pure).

``RES``, ``RES[ITEM]`` (a member of a vip-set, by its address), ``RES@NODE`` and
``RES[ITEM]@NODE``. :meth:`InstanceRef.parse` is the one parser (the store's admin records, the
state file, ``corral cleanup``/``ban``/``maintenance`` and ``corral simulate`` all read it);
``key`` is the local name of an instance on its node (``api-vips[198.18.0.100]``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NAME = r"[a-z0-9][a-z0-9_.-]*"
_REF = re.compile(rf"^({_NAME})(?:\[([^\]@]+)\])?(?:@({_NAME}))?$")


@dataclass(frozen=True, order=True)
class InstanceRef:
    resource: str
    item: str | None = None
    node: str | None = None

    @classmethod
    def parse(cls, text: object, *, node: bool = True) -> InstanceRef | None:
        """The reference ``text`` names, or None when it is not one (``node``: whether it
        must name a node, as ``RES@NODE`` does)."""
        match = _REF.match(text) if isinstance(text, str) else None
        if match is None or (node and match[3] is None):
            return None
        return cls(match[1], match[2], match[3])

    @property
    def key(self) -> str:
        """The instance's local name on its node: ``web`` or ``api-vips[198.18.0.100]``."""
        return f"{self.resource}[{self.item}]" if self.item else self.resource

    def __str__(self) -> str:
        return self.key + (f"@{self.node}" if self.node else "")
