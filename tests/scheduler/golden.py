"""Golden scheduler cases: ``cases/<name>/input.yaml`` -> ``cases/<name>/expected.txt``.

``input.yaml`` names a spec (``specs/<spec>.yaml``, or ``openstack`` for the shipped example),
holds a state (the state-file format of ``corral simulate``) and optional ``inject`` faults (the
simulate options). ``expected.txt`` is the transition summary plus the plan computed on the
target state, which must be empty (minimal disruption); a case that converges in two steps by
design says ``converges_in: 2``, and the plan after the second step must be empty. A case with
``staged: true`` also shows the assignments the controller writes now for that plan
(:func:`corral.core.assign.staged_assignments`: handoffs of exclusive instances, order
gating) and what waits. Regenerate with ``pytest --update``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from corral.actions.whatif import inject
from corral.core.assign import staged_assignments
from corral.core.ref import InstanceRef
from corral.core.scheduler import apply_plan, load_state_text, render_plan, schedule
from corral.spec import Spec, load_spec

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
CASES = HERE / "cases"


def spec_path(name: str) -> Path:
    if name == "openstack":
        return ROOT / "examples" / "openstack.yaml"
    return HERE / "specs" / f"{name}.yaml"


def run_case(case_dir: Path) -> tuple[str, Spec, Any]:
    """Return (summary text, spec, snapshot after) for one case."""
    text = (case_dir / "input.yaml").read_text()
    note = text.splitlines()[0] if text.startswith("#") else ""
    body = yaml.safe_load(text)
    spec = load_spec(spec_path(body["spec"]))
    snap = load_state_text(yaml.safe_dump(body.get("state") or {}), spec, str(case_dir))
    faults = body.get("inject") or {}
    snap = inject(
        spec,
        snap,
        fail_nodes=tuple(faults.get("fail_nodes", ())),
        fail_resources=tuple(faults.get("fail_resources", ())),
    )
    plan = schedule(spec, snap)
    after = apply_plan(snap, plan)
    again = schedule(spec, after)
    tail = ["", "Plan on the target state"]
    tail += [f"  {a}: {a.reason}" for a in again.actions] or ["  (none)"]
    summary = render_plan(spec, snap, plan, after)
    if body.get("converges_in", 1) == 2:  # a second step by design (a VIP waits for HAProxy)
        again = schedule(spec, apply_plan(after, again))
        tail += ["", "Plan after that"]
        tail += [f"  {a}: {a.reason}" for a in again.actions] or ["  (none)"]
    if body.get("staged"):
        tail += staged(spec, snap, plan)
    return (note + "\n" if note else "") + summary + "\n".join(tail) + "\n", spec, again


def staged(spec: Spec, snap: Any, plan: Any) -> list[str]:
    """The controller's writes for ``plan`` on ``snap``: resource -> the instances it assigns
    now (in the plan's order), and the notes on what waits."""
    assigned, notes = staged_assignments(spec, snap, plan)
    lines = ["", "Assigned now (staged)"]
    for name, instances in assigned.items():
        where = ", ".join(
            str(InstanceRef(i.resource, i.item, i.node)) + (" (promoted)" * (i.role == "promoted"))
            for i in instances
        )
        lines.append(f"  {name}: {where or 'nowhere'}")
    lines += ["", "Waits"] + ([f"  {n}" for n in notes] or ["  (nothing)"])
    return lines
