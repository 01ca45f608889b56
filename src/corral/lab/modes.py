"""Where a lab stand-in reads its mode (``ok``, ``500``) from: one file per resource and node.

Kept apart from :mod:`corral.lab.standins` so that the fence agent and the fault commands,
which only write these files, do not import the spec machinery (it costs a fence 0.3 s).
"""

from __future__ import annotations

from pathlib import Path


def mode_dir(lab_dir: Path) -> Path:
    return lab_dir / "modes"


def mode_file(lab_dir: Path, resource: str, node: str) -> Path:
    """The file the stand-in of ``resource`` on ``node`` reads its mode from."""
    return mode_dir(lab_dir) / f"{resource}@{node}.mode"
