"""OCF resource-agent meta-data: parsing and parameter checks (pure, no I/O).

An agent's ``meta-data`` action prints XML (the OCF ``ra-api-1`` format) that names its
parameters (``required``, ``unique``, type, default) and its actions with their advised
timeouts. corral uses it to refuse a spec that the agent would reject only at start time, and
to time each action the way the agent's author advised.

Contract:
- :func:`parse_metadata` raises ValueError with a reason for text that is not agent meta-data.
- Durations follow Pacemaker's syntax: a number with an optional unit (``ms``, ``msec``,
  ``us``, ``usec``, ``s``, ``sec``, ``m``, ``min``, ``h``, ``hr``); a bare number is seconds.
- An action listed several times (per role, per depth) gets the *largest* timeout listed.
- :func:`check_params` returns every problem at once (unknown names, missing required
  parameters), each naming the parameter, so that one message explains the whole mistake.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
_UNITS = {
    "": 1.0,
    "s": 1.0,
    "sec": 1.0,
    "ms": 1e-3,
    "msec": 1e-3,
    "us": 1e-6,
    "usec": 1e-6,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
}
_TRUE = {"1", "true", "yes", "on", "y"}


def parse_duration(text: str) -> float:
    """Seconds in an OCF/Pacemaker duration (``20s``, ``2min``, ``500ms``, ``30``)."""
    match = _DURATION.match(text)
    if match is None or match.group(2).lower() not in _UNITS:
        raise ValueError(f"not a duration: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2).lower()]


@dataclass(frozen=True)
class OcfParameter:
    name: str
    required: bool = False
    unique: bool = False
    type: str = "string"
    default: str | None = None


@dataclass(frozen=True)
class OcfMetadata:
    """What an agent says about itself."""

    agent: str  # the name attribute of <resource-agent>
    parameters: Mapping[str, OcfParameter] = field(default_factory=dict)
    actions: frozenset[str] = frozenset()
    timeouts: Mapping[str, float] = field(default_factory=dict)  # seconds, by action

    @property
    def promotable(self) -> bool:
        return {"promote", "demote"} <= self.actions


def parse_metadata(text: str) -> OcfMetadata:
    """Parse the XML printed by ``<agent> meta-data`` (see the module contract)."""
    try:
        root = ET.fromstring(text.strip())
    except ET.ParseError as exc:
        raise ValueError(f"meta-data is not XML: {exc}") from exc
    if root.tag != "resource-agent":
        raise ValueError(f"meta-data root is <{root.tag}>, not <resource-agent>")
    params: dict[str, OcfParameter] = {}
    for node in root.iterfind("parameters/parameter"):
        name = node.get("name")
        if not name:
            raise ValueError("meta-data has a <parameter> without a name")
        content = node.find("content")
        params[name] = OcfParameter(
            name=name,
            required=node.get("required", "0").lower() in _TRUE,
            unique=node.get("unique", "0").lower() in _TRUE,
            type=content.get("type", "string") if content is not None else "string",
            default=content.get("default") if content is not None else None,
        )
    actions: set[str] = set()
    timeouts: dict[str, float] = {}
    for node in root.iterfind("actions/action"):
        name = node.get("name")
        if not name:
            raise ValueError("meta-data has an <action> without a name")
        actions.add(name)
        if node.get("timeout"):
            seconds = parse_duration(node.get("timeout", ""))
            timeouts[name] = max(seconds, timeouts.get(name, 0.0))
    return OcfMetadata(root.get("name", ""), params, frozenset(actions), timeouts)


def check_params(meta: OcfMetadata, given: Mapping[str, str]) -> list[str]:
    """Problems with ``given`` parameters for this agent; empty when they are acceptable."""
    problems: list[str] = []
    unknown = sorted(set(given) - set(meta.parameters))
    if unknown:
        known = ", ".join(sorted(meta.parameters)) or "none"
        problems.append(f"unknown parameter(s) {', '.join(unknown)} (the agent takes: {known})")
    # An empty value counts as missing: agents test required parameters with [ -z ... ].
    missing = sorted(
        p.name for p in meta.parameters.values() if p.required and not given.get(p.name)
    )
    if missing:
        problems.append(f"missing required parameter(s) {', '.join(missing)}")
    return problems
