"""`corral check`: a resource's health checks as a Nagios/Sensu plugin."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from corral.cli.main import cli

SPEC = """
cluster: c
nodes:
  n1: {address: 127.0.0.1}
resources:
  ok: {process: /bin/true, health: {exec: "echo fine; exit 0"}}
  warn: {process: /bin/true, health: {exec: "echo degraded; exit 1"}}
  down: {process: /bin/true, health: {tcp: "{node.address}:1"}}
"""


def run(tmp_path: Path, resource: str) -> tuple[int, str]:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    result = CliRunner().invoke(cli, ["check", str(spec), resource, "--node", "n1"])
    return result.exit_code, result.output


def test_exit_codes_and_lines_follow_nagios(tmp_path: Path) -> None:
    code, out = run(tmp_path, "ok")
    assert code == 0 and out.startswith("OK - fine")
    code, out = run(tmp_path, "warn")
    assert code == 1 and out.startswith("WARNING")
    code, out = run(tmp_path, "down")
    assert code == 2 and out.startswith("CRITICAL") and "refused" in out


def test_unknown_resource_is_a_usage_error(tmp_path: Path) -> None:
    code, out = run(tmp_path, "nope")
    assert code == 2 and "unknown resource 'nope'" in out
