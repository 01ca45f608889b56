"""Secrets only by reference in the spec (corral.spec.secrets): a password in clear is refused
at its line, a reference is kept as a reference, and no command prints what it points at."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from corral.cli.main import cli
from corral.spec import SpecError, load_spec_text
from corral.spec.secrets import (
    GaleraSecrets,
    RabbitmqSecrets,
    SecretRef,
    is_secret_name,
    literal_in_command,
)

HEAD = """\
cluster: c1
nodes:
  n1: {address: 198.18.0.11}
fencing:
  power:
    agent: fence_ipmilan
    params:
      ip: 10.0.0.1
"""


def problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load_spec_text(text, "c1.yaml")
    return [str(issue) for issue in caught.value.issues]


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("password", True),
        ("passwd", True),
        ("api_key", True),
        ("authToken", True),
        ("erlang-cookie", True),
        ("ipmi_password", True),
        ("hexadecimal_kg", True),
        ("password_script", False),
        ("identity_file", False),
        ("login", False),
        ("ip", False),
        ("monkey", False),
        ("passive", False),
    ],
)
def test_which_parameter_names_are_secrets(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret


def test_a_password_in_clear_is_refused_at_its_line_with_the_way_out() -> None:
    said = problems(HEAD + "      password: hunter2\n      passwd: 42\n")
    assert said[0].startswith("c1.yaml:9:7: fencing.power.params.password: 'password' is a secret")
    assert "{file: /etc/corral/secrets/<name>} (owned by root, mode 0600)" in said[0]
    assert "{exec:" in said[0] and "hunter2" not in said[0]
    assert said[1].startswith("c1.yaml:10:7: fencing.power.params.passwd:")


def test_references_are_kept_as_references() -> None:
    spec = load_spec_text(
        HEAD
        + "      password: {file: /etc/corral/secrets/ipmi.pw}\n"
        + '      login: {exec: "/usr/local/bin/get-secret ipmi-login", timeout: 2s}\n'
    )
    params = spec.fencing["power"].params
    assert params["password"] == SecretRef(file="/etc/corral/secrets/ipmi.pw")
    assert params["login"] == SecretRef(exec="/usr/local/bin/get-secret ipmi-login", timeout=2.0)
    dumped = spec.model_dump(mode="json")["fencing"]["power"]["params"]
    assert dumped["password"] == {
        "file": "/etc/corral/secrets/ipmi.pw",
        "exec": None,
        "timeout": "5s",
    }


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("{file: ipmi.pw}", "must be an absolute path"),
        ("{file: /a, exec: /b}", "exactly one of 'file'"),
        ("{timeout: 1s}", "exactly one of 'file'"),
        ("{url: 'vault://x'}", "unknown field 'url'"),
    ],
)
def test_a_bad_reference_is_refused_at_its_line(ref: str, message: str) -> None:
    said = "\n".join(problems(HEAD + f"      password: {ref}\n"))
    assert "c1.yaml:9:" in said and message in said


def test_validate_explain_and_schema_show_the_reference_never_the_secret(tmp_path: Path) -> None:
    secret = tmp_path / "ipmi.pw"
    secret.write_text("hunter2\n")
    secret.chmod(0o600)
    spec = tmp_path / "c1.yaml"
    spec.write_text(HEAD + f"      password: {{file: {secret}}}\n")
    for args in (["validate", "--explain", str(spec)], ["validate", str(spec)], ["schema"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        assert "hunter2" not in result.output
    assert "a root-only file" in CliRunner().invoke(cli, ["schema"]).output


def test_an_ocf_password_in_clear_is_refused_too() -> None:
    text = HEAD + (
        "resources:\n"
        "  db:\n"
        "    ocf:\n"
        "      agent: heartbeat:mysql\n"
        "      params: {binary: /usr/bin/mysqld, replication_passwd: hunter2}\n"
    )
    (said,) = problems(text)
    assert said.startswith("c1.yaml:13:41: resources.db.ocf.params.replication_passwd:")


def test_the_coming_kinds_take_their_secrets_by_reference() -> None:
    cookie = RabbitmqSecrets.model_validate({"erlang_cookie": {"file": "/etc/corral/cookie"}})
    assert cookie.erlang_cookie == SecretRef(file="/etc/corral/cookie")
    galera = GaleraSecrets.model_validate({"sst_password": {"exec": "get-secret sst"}})
    assert galera.sst_user == "sst" and galera.check_password is None
    with pytest.raises(ValidationError):
        GaleraSecrets.model_validate({"sst_password": "hunter2"})


def test_a_process_env_secret_in_clear_is_refused_and_a_reference_kept() -> None:
    res = "resources:\n  app:\n    process: {command: /bin/app, env: {%s}}\n"
    (said,) = problems(HEAD + res % "DB_PASSWORD: hunter2, MODE: prod")
    assert said.startswith("c1.yaml:11:40: resources.app.process.env.DB_PASSWORD:")
    spec = load_spec_text(HEAD + res % "DB_PASSWORD: {file: /etc/corral/secrets/db}")
    process = spec.resources["app"].process
    assert process is not None
    assert process.env["DB_PASSWORD"] == SecretRef(file="/etc/corral/secrets/db")


def test_a_secret_option_in_clear_on_a_command_line_is_refused() -> None:
    check = "/usr/lib/nagios/plugins/check_mysql -H {node.address} -u monitor --password=hunter2"
    res = f"resources:\n  db:\n    process: /bin/db --token abc\n    health: {{exec: '{check}'}}\n"
    said = problems(HEAD + res)
    assert said[0].startswith("c1.yaml:11:5: resources.db.process.command:")
    assert "--token is a secret written in clear on a command line" in said[0]
    assert said[1].startswith("c1.yaml:12:5: resources.db.health[0].exec: --password is a secret")
    fine = "check_mysql -p 3306 --password-file=/etc/corral/secrets/db --password=$DB_PW --key /etc/ssl/db.key"
    load_spec_text(
        HEAD + f"resources:\n  db:\n    process: /bin/db\n    health: {{exec: '{fine}'}}\n"
    )


@pytest.mark.parametrize("command", ["", "   ", "--token"])
def test_a_command_with_no_word_or_a_last_option_is_judged_without_crashing(command: str) -> None:
    """Found by tests/fuzz: an empty ``process:`` crashed the secret check instead of being
    judged like any command (no secret in it)."""
    assert literal_in_command(command) is None
