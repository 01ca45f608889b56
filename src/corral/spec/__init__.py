"""The cluster spec: one YAML file that describes a whole cluster.

Public API: :func:`load_spec`, :func:`load_spec_text`, :class:`Spec` and its parts,
:class:`SpecError` / :class:`SpecIssue`.
"""

from corral.spec.errors import SpecError, SpecIssue
from corral.spec.loader import load_spec, load_spec_text
from corral.spec.model import (
    FailurePolicy,
    HealthCheck,
    Node,
    Order,
    Placement,
    Resource,
    Spec,
)
from corral.spec.profiles import Timing, profile_timing

__all__ = [
    "FailurePolicy",
    "HealthCheck",
    "Node",
    "Order",
    "Placement",
    "Resource",
    "Spec",
    "SpecError",
    "SpecIssue",
    "Timing",
    "load_spec",
    "load_spec_text",
    "profile_timing",
]
