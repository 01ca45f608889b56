"""The controller's input log, like Pacemaker's ``pe-input`` files (shell).

Every controller step that writes something (a transition) leaves
``<dir>/input-<seq>.yaml``: the snapshot it planned on as a state file (``corral simulate
--state`` reads it, and so does a golden case), with a header that says when, on which node,
the plan and the assignments it wrote. Only the last ``keep`` files stay. A write that fails
(a full disk) is logged and skipped: the log never stops the controller.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

from corral.core.scheduler import Plan, Snapshot, dump_state_text
from corral.fileio import private_dir, write_atomic

log = logging.getLogger(__name__)
_NAME = re.compile(r"^input-(\d+)\.yaml$")
KEEP = 50


class InputLog:
    def __init__(self, directory: Path, node: str, keep: int = KEEP) -> None:
        self.directory, self.node, self.keep = directory, node, keep
        self._seq: int | None = None

    def record(self, snap: Snapshot, plan: Plan, wrote: list[str]) -> Path | None:
        """Write one input; its path, or None when it could not be written."""
        try:
            private_dir(self.directory)
            seq = self._next()
            header = [
                f"corral controller input {seq} on {self.node}, "
                + time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime()),
                f"wrote: {', '.join(wrote) or '(events only)'}",
                "plan:",
                *(f"  {a}: {a.reason}" for a in plan.actions),
                "replay: corral simulate SPEC --state THIS_FILE",
            ]
            path = self.directory / f"input-{seq:06d}.yaml"
            write_atomic(path, dump_state_text(snap, header="\n".join(header)))
            self._trim()
            return path
        except OSError as exc:
            log.warning("controller input log: cannot write in %s: %s", self.directory, exc)
            return None

    def _next(self) -> int:
        if self._seq is None:
            self._seq = max((int(m[1]) for m in map(_NAME.match, self._names()) if m), default=0)
        self._seq += 1
        return self._seq

    def _names(self) -> list[str]:
        return [p.name for p in self.directory.iterdir()]

    def _trim(self) -> None:
        inputs = sorted(n for n in self._names() if _NAME.match(n))
        for name in inputs[: max(0, len(inputs) - self.keep)]:
            (self.directory / name).unlink(missing_ok=True)
