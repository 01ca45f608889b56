"""The wheel that `pip install` takes on a real host carries the systemd unit and the command."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from corral.cli.host import shipped_unit

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_ships_the_unit(tmp_path: Path) -> None:
    pytest.importorskip("hatchling")  # the dev extra; no network for build isolation
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("corral-*.whl")
    with zipfile.ZipFile(wheel) as whl:
        assert whl.read("corral/data/corral.service").decode() == shipped_unit()
        entry_points = next(n for n in whl.namelist() if n.endswith("entry_points.txt"))
        assert "corral = corral.cli.main:main" in whl.read(entry_points).decode()
