"""The loopback lab's stop() finds the processes of its own services even without a pid file
(an agent killed between starting a service and recording it), and nothing else."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from corral.lab.loopback import _processes_under


def test_processes_naming_the_lab_directory_are_found_and_only_those(tmp_path: Path) -> None:
    sleeper = [sys.executable, "-c", "import time; time.sleep(30)"]
    ours = subprocess.Popen([*sleeper, str(tmp_path / "api-n1.mode")])
    other_dir = tmp_path.parent / (tmp_path.name + "-other")  # a prefix of ours, not ours
    theirs = subprocess.Popen([*sleeper, str(other_dir / "api-n1.mode")])
    try:
        found = _processes_under(tmp_path)
        assert ours.pid in found
        assert theirs.pid not in found
    finally:
        for proc in (ours, theirs):
            proc.kill()
            proc.wait()
