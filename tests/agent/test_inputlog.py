"""The controller's input log keeps its last inputs, numbers on across restarts, and never
stops the controller when it cannot write."""

from __future__ import annotations

from pathlib import Path

from corral.agent.inputlog import InputLog
from corral.core.scheduler import Plan, Snapshot, load_state_text
from corral.spec import load_spec_text

SPEC = load_spec_text(
    "cluster: l\nnodes:\n  n1: {address: 198.18.0.1}\nresources:\n  web: {process: /bin/web}\n"
)


def test_the_last_inputs_are_kept_and_numbered_on(tmp_path: Path) -> None:
    log = InputLog(tmp_path / "inputs", "n1", keep=5)
    for _ in range(7):
        assert log.record(Snapshot(now=1.0), Plan({}, []), ["web"]) is not None
    names = sorted(p.name for p in (tmp_path / "inputs").iterdir())
    assert names == [f"input-{i:06d}.yaml" for i in range(3, 8)]
    again = InputLog(tmp_path / "inputs", "n1", keep=5)  # the next controller on this node
    path = again.record(Snapshot(now=2.0), Plan({}, []), [])
    assert path is not None and path.name == "input-000008.yaml"
    text = path.read_text()
    assert "wrote: (events only)" in text
    assert load_state_text(text, SPEC, str(path)).now == 2.0


def test_a_log_that_cannot_be_written_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "inputs").write_text("a file where the directory should be")
    log = InputLog(tmp_path / "inputs", "n1")
    assert log.record(Snapshot(), Plan({}, []), []) is None  # logged, not raised
