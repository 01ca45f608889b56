"""The shipped example and the operator commands around the spec."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from corral.cli.main import cli
from corral.spec import load_spec

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "openstack.yaml"


def test_example_is_a_realistic_control_plane() -> None:
    spec = load_spec(EXAMPLE)
    res = spec.resources
    for name in ("keystone", "glance-api", "nova-api", "neutron-server", "placement"):
        assert res[name].mode == "active-active"
        balance = res[name].balance
        assert balance is not None and balance.via == "api-vips"
    assert res["api-vips"].vip_set is not None and len(res["api-vips"].vip_set.addresses) == 3
    assert res["haproxy"].kind == "haproxy"
    assert res["cinder-volume"].mode == "active-passive"
    assert res["galera"].mode == "promotable" and res["galera"].promoted == 3
    # defaults flow into resources, and a per-check override wins
    assert res["keystone"].health[0].interval == 1.0
    assert res["cinder-volume"].health[0].timeout == 2.0
    assert res["galera"].failure.migration_threshold == 1
    assert res["galera"].failure.failure_timeout == 600.0
    # the stateful services are corral's own kinds, their secrets by reference only
    galera, rabbit = res["galera"].galera, res["rabbitmq"].rabbitmq
    assert galera is not None and galera.sst_password is not None
    assert galera.check_password is not None
    assert res["galera"].balance is not None and res["galera"].balance.mode == "tcp"
    assert rabbit is not None and rabbit.erlang_cookie is not None and rabbit.password is not None
    assert res["rabbitmq"].mode == "promotable" and res["rabbitmq"].promoted == 3


def test_validate_ok_prints_summary() -> None:
    result = CliRunner().invoke(cli, ["validate", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert "cluster cloud1: 3 nodes, 11 resources" in result.output
    assert "valid" in result.output


def test_validate_explain_shows_defaults() -> None:
    result = CliRunner().invoke(cli, ["validate", "--explain", str(EXAMPLE)])
    assert result.exit_code == 0
    assert "rise 2, fall 2" in result.output
    assert "banned after 3 failure(s) for 10m" in result.output
    assert "systemic: failing on >50% of nodes in 1m" in result.output


def test_validate_broken_exits_1_with_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "cluster: c\nnodes:\n  a: {address: 198.18.0.1}\n"
        "resources:\n  x: {systemd: x.service, colour: red}\n  y: {vip: nonsense}\n"
    )
    result = CliRunner().invoke(cli, ["validate", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:5:" in result.output and "unknown field 'colour'" in result.output
    assert f"{bad}:6:" in result.output and "not an IP address" in result.output
    assert "Traceback" not in result.output


def test_schema_is_json_schema_with_yaml_names() -> None:
    result = CliRunner().invoke(cli, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.output)
    resource = schema["$defs"]["Resource"]["properties"]
    assert "vip-set" in resource and "with" in resource
    assert schema["$defs"]["Resource"]["additionalProperties"] is False
