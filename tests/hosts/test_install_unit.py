"""``corral install-unit``: the shipped unit, written for this installation, never over a
changed one without --force."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from corral.cli.host import render_unit, shipped_unit
from corral.cli.main import cli


def unit_settings(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and line[0] != "#")


def test_shipped_unit_settings() -> None:
    unit = unit_settings(shipped_unit())
    assert unit["Type"] == "notify"
    assert unit["Restart"] == "on-failure"
    assert unit["KillMode"] == "process"  # services, guard and etcd survive a restart
    assert unit["WatchdogSec"] == "10s"
    assert unit["Nice"] == "-10"  # corral.priority.AGENT_NICE
    assert "%l" in unit["ExecStart"]


def test_render_writes_exec_start_for_this_host() -> None:
    text = render_unit(["/opt/c 1/bin/corral"], "ctl1", Path("/etc/corral/s%.yaml"),
                       Path("/srv/corral"), "http://10.0.0.1:2379")  # fmt: skip
    unit = unit_settings(text)
    assert unit["ExecStart"] == (
        "'/opt/c 1/bin/corral' agent --spec /etc/corral/s%%.yaml --node ctl1 "
        "--state-dir /srv/corral --etcd http://10.0.0.1:2379"
    )
    assert "Environment=CORRAL_STATE_DIR=/srv/corral" in text


def test_install_refuses_a_changed_unit(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["install-unit", "--unit-dir", str(tmp_path), "--no-reload", "--node", "ctl1"]
    first = runner.invoke(cli, args)
    assert first.exit_code == 0, first.output
    unit = tmp_path / "corral.service"
    assert "written" in first.output and "--node ctl1" in unit.read_text()
    again = runner.invoke(cli, args)
    assert again.exit_code == 0 and "unchanged" in again.output
    unit.write_text(unit.read_text() + "# local change\n")
    refused = runner.invoke(cli, [*args, "--node", "ctl2"])
    assert refused.exit_code == 1
    assert "differs" in refused.output and "drop-in" in refused.output
    assert "local change" in unit.read_text()  # kept
    forced = runner.invoke(cli, [*args, "--node", "ctl2", "--force"])
    assert forced.exit_code == 0 and "replaced" in forced.output
    assert "--node ctl2" in unit.read_text() and "local change" not in unit.read_text()
