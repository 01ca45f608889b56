"""``corral init``: a starting spec that the loader accepts, from flags or from this host."""

from __future__ import annotations

import socket
from pathlib import Path

import yaml
from click.testing import CliRunner

from corral.cli.init import host_addresses, starting_spec
from corral.cli.main import cli
from corral.spec import load_spec, load_spec_text

THREE = ["--node", "ctl1=198.18.0.11", "--node", "ctl2=198.18.0.12", "--node", "ctl3=198.18.0.13"]


def test_three_nodes_with_roles_and_tls(tmp_path: Path) -> None:
    out = tmp_path / "etc/corral/spec.yaml"
    args = ["init", "--cluster", "cloud1", *THREE, "--role", "controller", "--role", "lb"]
    result = CliRunner().invoke(cli, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    spec = load_spec(out)
    assert spec.cluster == "cloud1"
    assert {n: str(spec.nodes[n].address) for n in spec.nodes} == {
        "ctl1": "198.18.0.11", "ctl2": "198.18.0.12", "ctl3": "198.18.0.13",
    }  # fmt: skip
    assert spec.nodes["ctl2"].roles == ["controller", "lb"]
    assert spec.store.embedded is not None and spec.store.embedded.tls is not None
    assert spec.store.embedded.tls.bundle == "/etc/corral/ca"
    assert "corral ca init" in result.output and "/etc/corral/ca" in result.output


def test_never_overwrites(tmp_path: Path) -> None:
    out = tmp_path / "spec.yaml"
    out.write_text("mine\n")
    result = CliRunner().invoke(cli, ["init", "--cluster", "c1", *THREE, "--out", str(out)])
    assert result.exit_code == 1
    assert "exists" in result.output and "never overwrites" in result.output
    assert out.read_text() == "mine\n"


def test_bad_flags_are_named_and_nothing_is_written(tmp_path: Path) -> None:
    out = tmp_path / "spec.yaml"
    args = ["init", "--cluster", "Cloud_1", "--node", "ctl1=198.18.0.300", "--out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert "--cluster: bad cluster name 'Cloud_1'" in result.output
    assert "--node ctl1: '198.18.0.300' is not an IP address" in result.output
    missing = CliRunner().invoke(
        cli, ["init", "--cluster", "c", "--node", "ctl1", "--out", str(out)]
    )
    assert missing.exit_code == 2 and "write NAME=ADDRESS" in missing.output
    assert not out.exists()


def test_flag_values_cannot_change_the_structure() -> None:
    text = starting_spec("c1", {"a": "198.18.0.1"}, ["lb], x: [y"], tls=False, profile="lan")
    assert yaml.safe_load(text)["nodes"]["a"]["roles"] == ["lb], x: [y"]
    assert load_spec_text(text).nodes["a"].roles == ["lb], x: [y"]


def test_default_is_this_host(tmp_path: Path) -> None:
    out = tmp_path / "spec.yaml"
    result = CliRunner().invoke(cli, ["init", "--cluster", "c1", "--no-tls", "--out", str(out)])
    addresses = host_addresses()
    if not addresses:  # a host with loopback only: the command says so
        assert result.exit_code == 2 and "no global address" in result.output
        return
    assert result.exit_code == 0, result.output
    spec = load_spec(out)
    me = socket.gethostname().split(".")[0]
    assert str(spec.nodes[me].address) == addresses[0]
    assert spec.store.embedded is not None and spec.store.embedded.tls is None
    assert "127.0.0.1" not in addresses and "::1" not in addresses
