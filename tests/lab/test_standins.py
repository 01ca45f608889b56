"""The stand-in rewrite (pure): the OpenStack example becomes a spec that runs in the lab."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.lab.modes import mode_file
from corral.lab.standins import PORT_BASE, StandinOptions, rewrite
from corral.spec import SpecError, load_spec_text

EXAMPLE = Path(__file__).parents[2] / "examples" / "openstack.yaml"
LAB = Path("/run/corral-lab/cloud1")


def opts(**kw: object) -> StandinOptions:
    base: dict[str, object] = {
        "lab_dir": LAB,
        "python": "/usr/bin/python3",
        "app": "/opt/app.py",
        "fence_command": str(LAB / "fence_lab"),
    }
    return StandinOptions(**{**base, **kw})  # type: ignore[arg-type]


def test_openstack_example_becomes_a_valid_spec_of_checked_stand_ins() -> None:
    original = load_spec_text(EXAMPLE.read_text())
    out = rewrite(EXAMPLE.read_text(), opts(), str(EXAMPLE))
    spec = load_spec_text(out.text)  # validates
    kinds = ("systemd", "ocf", "galera", "rabbitmq")  # no real server asked for: stand-ins
    services = {n for n, r in original.resources.items() if r.kind in kinds}
    assert services == set(out.ports)
    for name in services:
        res = spec.resources[name]
        assert res.kind == "process", name
        port = out.ports[name]
        assert res.process is not None and res.health[0].http is not None, name
        assert f" {port} " in res.process.command and "/opt/app.py" in res.process.command
        assert len(res.health) == 1
        assert f":{port}/" in res.health[0].http.url
    # ports the spec names are kept (the stateful kinds': theirs); exec checks get allocated ones
    assert out.ports["keystone"] == 5000 and out.ports["rabbitmq"] == 5672
    assert out.ports["galera"] == 3306 and out.ports["cinder-volume"] >= PORT_BASE
    # the check's own timing is kept; the rest still comes from defaults
    assert spec.resources["cinder-volume"].health[0].timeout == 2.0
    keystone_http = spec.resources["keystone"].health[0].http
    assert keystone_http is not None and keystone_http.url.endswith(":5000/v3")
    assert spec.resources["cinder-volume"].mode == "active-passive"
    # galera and rabbitmq as stand-ins: the documented active-active simplification
    for name in ("galera", "rabbitmq"):
        assert spec.resources[name].mode == "active-active"
        assert any(name in note and "stand-in" in note for note in out.notes)
    # network resources untouched, fencing is the lab's, the store is embedded, profile lan
    assert (
        spec.resources["api-vips"].kind == "vip-set" and spec.resources["haproxy"].kind == "haproxy"
    )
    assert list(spec.fencing) == ["lab"]
    assert spec.fencing["lab"].agent == str(LAB / "fence_lab")
    assert spec.fencing["lab"].params == {"lab_dir": str(LAB)}
    assert spec.store.embedded is not None and spec.store.embedded.data_dir == str(LAB / "etcd")
    assert spec.profile == "lan"
    assert spec.order == original.order


def test_real_servers_get_per_node_dirs_and_lab_secrets() -> None:
    out = rewrite(
        EXAMPLE.read_text(), opts(real=frozenset({"galera", "rabbitmq"}), run_as_root=True)
    )
    spec = load_spec_text(out.text)
    galera, rabbit = spec.resources["galera"], spec.resources["rabbitmq"]
    assert galera.galera is not None and rabbit.rabbitmq is not None
    assert galera.mode == "promotable" and galera.promoted == 3 and galera.balance is not None
    for base in (galera.galera.base_dir, rabbit.rabbitmq.base_dir):
        assert base == str(LAB / "servers" / "{node.name}")
    refs = [galera.galera.sst_password, galera.galera.check_password]
    refs += [rabbit.rabbitmq.erlang_cookie, rabbit.rabbitmq.password]
    assert all(r is not None and r.file and r.file.startswith(str(LAB / "secrets")) for r in refs)
    assert galera.galera.run_as == "root" and any("as root" in n for n in out.notes)
    assert galera.galera.options["innodb_buffer_pool_size"] == "32M"
    assert {"galera", "rabbitmq"}.isdisjoint(out.ports)


def test_stateful_kinds_of_a_promotable_stand_in_ignore_pacemaker_stateful() -> None:
    spec = load_spec_text(rewrite(EXAMPLE.read_text(), opts(stateful=True)).text)
    assert spec.resources["galera"].kind == "process"  # balanced: the stand-in needs its port


def test_the_stand_in_reads_its_mode_file_per_node() -> None:
    spec = load_spec_text(rewrite(EXAMPLE.read_text(), opts()).text)
    process = spec.resources["nova-api"].process
    assert process is not None
    command = process.command
    assert str(mode_file(LAB, "nova-api", "{node.name}")) in command
    assert mode_file(LAB, "nova-api", "ctl2") == LAB / "modes" / "nova-api@ctl2.mode"


def test_promotable_uses_stateful_when_installed() -> None:
    text = EXAMPLE.read_text().replace(
        "  memcached:\n", "  db2:\n    ocf: heartbeat:galera\n    mode: promotable\n  memcached:\n"
    )
    spec = load_spec_text(rewrite(text, opts(stateful=True)).text)
    db2 = spec.resources["db2"]
    assert db2.kind == "ocf" and db2.ocf is not None
    assert db2.ocf.agent == "pacemaker:Stateful"
    assert db2.mode == "promotable"


def test_fewer_nodes_drop_references_and_keep_an_odd_etcd() -> None:
    out = rewrite(EXAMPLE.read_text(), opts(nodes=2))
    spec = load_spec_text(out.text)
    assert list(spec.nodes) == ["ctl1", "ctl2"]
    assert spec.core_nodes() == ["ctl1"] and spec.nodes["ctl2"].kind == "remote"
    one = load_spec_text(rewrite(EXAMPLE.read_text(), opts(nodes=1)).text)
    assert list(one.nodes) == ["ctl1"]
    with pytest.raises(ValueError, match="has 3 node"):
        rewrite(EXAMPLE.read_text(), opts(nodes=4))


def test_prefer_on_a_dropped_node_is_removed() -> None:
    text = EXAMPLE.read_text().replace("prefer: {ctl1: 50}", "prefer: {ctl3: 50}")
    spec = load_spec_text(rewrite(text, opts(nodes=1)).text)
    assert spec.resources["cinder-volume"].prefer == {}


def test_fence_action_follows_the_spec_unless_asked() -> None:
    assert (
        load_spec_text(rewrite(EXAMPLE.read_text(), opts()).text).fencing["lab"].action == "reboot"
    )
    spec = load_spec_text(rewrite(EXAMPLE.read_text(), opts(fence_action="off")).text)
    assert spec.fencing["lab"].action == "off"


def test_a_service_without_checks_gets_one_and_an_external_store_becomes_embedded() -> None:
    text = """
cluster: x
store: {etcd: {endpoints: [http://10.0.0.1:2379]}}
nodes: {a: {address: 198.18.0.11}}
resources:
  plain: {systemd: plain.service}
  own: {process: "sleep 1000"}
"""
    out = rewrite(text, opts())
    spec = load_spec_text(out.text)
    http, process = spec.resources["plain"].health[0].http, spec.resources["own"].process
    assert http is not None and process is not None
    assert http.url == f"http://{{node.address}}:{PORT_BASE}/"
    assert process.command == "sleep 1000"  # runs here already
    assert spec.store.embedded is not None and spec.store.etcd is None


def test_an_invalid_spec_is_refused_with_its_problems() -> None:
    with pytest.raises(SpecError):
        rewrite("cluster: x\nnodes: {}\n", opts())


def test_corral_validate_accepts_the_rewritten_example(tmp_path: Path) -> None:
    import subprocess
    import sys

    lab_spec = tmp_path / "spec.yaml"
    lab_spec.write_text(rewrite(EXAMPLE.read_text(), opts(lab_dir=tmp_path)).text)
    out = subprocess.run(
        [sys.executable, "-m", "corral.cli.main", "validate", "-q", str(lab_spec)],
        capture_output=True,
        text=True,
    )
    assert (out.returncode, out.stderr) == (0, "")
