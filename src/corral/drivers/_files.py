"""Per-resource files under the node's state directory: ``logs/<name>.log``, ``run/<name>.pid``.

Resource names become file names, so a name that could leave its directory (a slash, a
leading dot, an empty name) is refused here even though the spec checks names too.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from corral.drivers.base import DriverError, NodeContext
from corral.fileio import write_atomic as write_atomic  # the drivers' one import


def checked_name(name: str) -> str:
    """``name`` when it is safe as a single file name, else :class:`DriverError`."""
    if not name or name.startswith(".") or "/" in name or "\0" in name:
        raise DriverError(f"resource name {name!r} cannot be used as a file name")
    return name


def log_path(node: NodeContext, name: str) -> Path:
    return node.state_dir / "logs" / f"{checked_name(name)}.log"


def pid_path(node: NodeContext, name: str) -> Path:
    return node.state_dir / "run" / f"{checked_name(name)}.pid"


def stamp() -> str:
    """Local wall-clock time for log lines (operators read these next to other logs)."""
    return time.strftime("%Y-%m-%d %H:%M:%S%z")


def append_log(path: Path, text: str) -> None:
    """Append ``text`` (a line or a block) to a log file, creating its directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8", errors="replace") as f:
        f.write(text if text.endswith("\n") else text + "\n")


def tail(path: Path, lines: int = 5, limit: int = 8192) -> str:
    """The last ``lines`` non-empty lines of a file (empty when it is missing), ` | `-joined."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - limit))
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(kept[-lines:])
