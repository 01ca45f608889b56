"""The scheduler core: ``(spec, snapshot) -> plan``, pure and deterministic.

Public API: :func:`schedule`, :func:`apply_plan`, :func:`render_plan`, :func:`explain`,
:func:`load_state_text`, and the data types of :mod:`.model`.
"""

from corral.core.scheduler.apply import apply_plan
from corral.core.scheduler.model import (
    Action,
    Decision,
    FailCount,
    Instance,
    Maintenance,
    NodeStatus,
    Plan,
    Score,
    Snapshot,
)
from corral.core.scheduler.schedule import schedule
from corral.core.scheduler.statefile import dump_state_text, load_state_text
from corral.core.scheduler.summary import explain, render_plan

__all__ = [
    "Action",
    "Decision",
    "FailCount",
    "Instance",
    "Maintenance",
    "NodeStatus",
    "Plan",
    "Score",
    "Snapshot",
    "apply_plan",
    "dump_state_text",
    "explain",
    "load_state_text",
    "render_plan",
    "schedule",
]
