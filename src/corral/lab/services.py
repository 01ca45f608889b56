"""Faults of one service instance in the lab (a mixin of :class:`corral.lab.lab.Lab`).

The process driver's pid file (``<state dir>/run/<resource>.pid``) names the service's process
group; the stand-in's mode file (:func:`corral.lab.modes.mode_file`) says how it answers.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path
from typing import Any

from corral.lab.layout import LabError
from corral.lab.modes import mode_file


class ServiceFaults:
    """Crash, hang or break a service of a node (see each method)."""

    dir: Path

    def node(self, name: str) -> dict[str, Any]:
        raise NotImplementedError

    def service_pid(self, node: str, resource: str) -> int | None:
        """The pid (and process group) of a process-driver service, from its pid file."""
        path = Path(self.node(node)["state_dir"]) / "run" / f"{resource}.pid"
        try:
            return int(json.loads(path.read_text())["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def kill_service(self, node: str, resource: str) -> int:
        """SIGKILL the service's process group (a crash); returns its pid."""
        return self._signal_service(node, resource, signal.SIGKILL)

    def malfunction(self, node: str, resource: str, mode: str) -> None:
        """``500``: the stand-in answers 500; ``hang``: its process group is SIGSTOPped (answers
        nothing, connections hang); ``ok``: SIGCONT and 200 again."""
        if mode not in ("500", "hang", "ok"):
            raise LabError(f"unknown mode {mode!r}: use 500, hang or ok")
        self.node(node)
        if mode == "hang":
            self._signal_service(node, resource, signal.SIGSTOP)
            return
        if mode == "ok":
            with contextlib.suppress(LabError):  # a service that is not running is fine
                self._signal_service(node, resource, signal.SIGCONT)
        path = mode_file(self.dir, resource, node)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(f"{mode}\n")
        os.replace(tmp, path)  # the app never reads a half-written mode

    def _signal_service(self, node: str, resource: str, sig: signal.Signals) -> int:
        pid = self.service_pid(node, resource)
        if pid is None:
            raise LabError(f"{resource} on {node}: no pid file (not running?)")
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            raise LabError(f"{resource} on {node}: pid {pid} is not running") from None
        return pid
