"""The ``galera:`` kind: its defaults, its refusals (with the line), and what --explain says."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from corral.cli.main import cli
from corral.core.galera.bootstrap import DEFAULT_WAIT
from corral.spec import SpecError, load_spec_text

HEAD = """\
cluster: c1
nodes:
  db1: {address: 198.18.0.11, roles: [db]}
  db2: {address: 198.18.0.12, roles: [db]}
  db3: {address: 198.18.0.13, roles: [db]}
  lb1: {address: 198.18.0.14, roles: [lb], kind: remote}
resources:
  galera:
"""  # lines 1-8; a resource's keys start on line 9


def test_a_bare_galera_is_promotable_with_every_node_promoted_and_documented_defaults() -> None:
    spec = load_spec_text(HEAD + "    galera: {}\n    on: {role: db}\n")
    res = spec.resources["galera"]
    assert res.kind == "galera" and res.exclusive
    assert res.mode == "promotable" and res.promoted == 3  # multi-master on the 3 db nodes
    g = res.galera
    assert g is not None
    assert (g.port, g.sst_method, g.sst_user, g.check_user) == (
        3306,
        "mariabackup",
        "sst",
        "monitor",
    )
    assert g.bootstrap_wait == DEFAULT_WAIT and g.sst_password is None
    assert g.base_dir == "/var/lib/corral/galera"


def test_instances_bound_promoted_and_an_explicit_promoted_is_kept() -> None:
    spec = load_spec_text(HEAD + "    galera: {}\n    instances: 2\n    on: {role: db}\n")
    assert spec.resources["galera"].promoted == 2
    spec = load_spec_text(HEAD + "    galera: {}\n    promoted: 1\n    on: {role: db}\n")
    assert spec.resources["galera"].promoted == 1


def test_secrets_are_references_and_durations_read() -> None:
    spec = load_spec_text(
        HEAD + "    galera:\n      sst_password: {file: /etc/corral/sst.pw}\n"
        "      bootstrap_wait: 2m\n      provider_options: {gcache.size: 1G}\n"
    )
    g = spec.resources["galera"].galera
    assert g is not None and g.sst_password is not None and g.sst_password.file
    assert g.bootstrap_wait == 120.0 and g.provider_options == {"gcache.size": "1G"}


BROKEN = [
    ("    galera: {}\n    mode: active-active\n", "a galera resource is promotable", 10),
    ("    galera: {sst_password: hunter2}\n", "sst_password", 9),
    ("    galera:\n      sst_method: xtrabackup\n", "resources.galera.galera.sst_method", 10),
    ("    galera:\n      port: 0\n", "resources.galera.galera.port", 10),
    ("    galera:\n      base_dir: var/lib/g\n", "give an absolute path", 10),
    ('    galera:\n      sst_user: "x; drop"\n', "a user name is 1-32 letters", 10),
    ('    galera:\n      provider_options: {"a;b": x}\n', "named like gcache.size", 10),
    ('    galera:\n      provider_options: {gcache.size: "1G;x=1"}\n', "may not hold", 10),
    ('    galera:\n      options: {"bad name": x}\n', "[mysqld] option", 10),
    ("    galera:\n      colour: red\n", "unknown field 'colour'", 10),
    ("    galera: {}\n    systemd: a.service\n", "(got systemd, galera)", 8),
]


@pytest.mark.parametrize(("body", "expected", "line"), BROKEN)
def test_a_broken_galera_names_the_problem_and_its_line(
    body: str, expected: str, line: int
) -> None:
    with pytest.raises(SpecError) as info:
        load_spec_text(HEAD + body)
    text = str(info.value)
    assert expected in text, text
    assert any(p.line == line for p in info.value.issues), text


def test_validate_explain_shows_the_galera_defaults(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "spec.yaml"
    path.write_text(
        HEAD + "    galera: {provider_options: {gcache.size: 1G}}\n    on: {role: db}\n"
    )
    result = CliRunner().invoke(cli, ["validate", "--explain", str(path)], terminal_width=400)
    assert result.exit_code == 0, result.output
    assert "promotable, 3 promoted" in result.output
    assert "bootstrap waits 1m" in result.output
    assert "evs.suspect_timeout=PT2.25S" in result.output and "gcache.size=1G" in result.output


def test_base_dir_may_name_the_node_and_the_members_get_their_own_dirs() -> None:
    from pathlib import Path

    from corral.drivers.base import NodeContext
    from corral.drivers.galera_member import settings_for
    from corral.drivers.rabbitmq_member import config_for

    text = HEAD + "    galera: {base_dir: '/srv/{node.name}/db'}\n    on: {role: db}\n"
    text += "  mq:\n    rabbitmq: {base_dir: '/srv/{node.name}', erlang_cookie: {file: /c}}\n"
    spec = load_spec_text(text)
    node = NodeContext(name="db2", address="198.18.0.12")
    assert settings_for("galera", spec.resources["galera"], node, spec).base_dir == Path(
        "/srv/db2/db/galera"
    )
    assert config_for("mq", spec.resources["mq"], node, spec).base == Path("/srv/db2/mq")
    for bad in ("/srv/{node.address}", "/srv/{node.name", "srv/{node.name}"):
        with pytest.raises(SpecError, match=r"placeholder|absolute"):
            load_spec_text(HEAD + f"    galera: {{base_dir: '{bad}'}}\n")
