"""Secret references resolved at the moment of use (corral.drivers.secrets): root-only files,
commands with a time limit, and errors that name the secret but never show a value."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from corral.drivers.secrets import MASK, SecretError, redact, resolve
from corral.spec.secrets import SecretRef


def secret_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "ipmi.pw"
    path.write_text(text)
    path.chmod(mode)
    return path


def get(ref: SecretRef, name: str = "fence parameter password") -> str:
    return asyncio.run(resolve(ref, name))


def script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "get-secret"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_a_root_only_file_gives_its_secret_without_the_newline(tmp_path: Path, mode: int) -> None:
    path = secret_file(tmp_path, "hunter2 with spaces\n", mode)
    assert get(SecretRef(file=str(path))) == "hunter2 with spaces"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_file_others_may_read_is_refused_with_its_name_and_mode(
    tmp_path: Path, mode: int
) -> None:
    path = secret_file(tmp_path, "hunter2\n", mode)
    with pytest.raises(SecretError) as caught:
        get(SecretRef(file=str(path)))
    said = str(caught.value)
    assert str(path) in said and f"{mode:04o}" in said and f"chmod 600 {path}" in said
    assert "fence parameter password" in said and "hunter2" not in said


def test_a_file_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root can give a file away")
    path = secret_file(tmp_path, "hunter2\n")
    os.chown(path, 4242, 4242)
    with pytest.raises(SecretError, match=r"owned by uid 4242, not root; chown root:root"):
        get(SecretRef(file=str(path)))


def test_a_missing_or_empty_file_or_a_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match=r"cannot read .*nothing\.pw: No such file"):
        get(SecretRef(file=str(tmp_path / "nothing.pw")))
    with pytest.raises(SecretError, match="is empty"):
        get(SecretRef(file=str(secret_file(tmp_path, "\n"))))
    (tmp_path / "d").mkdir(mode=0o700)
    with pytest.raises(SecretError, match="not a regular file"):
        get(SecretRef(file=str(tmp_path / "d")))


def test_a_command_gives_what_it_prints(tmp_path: Path) -> None:
    cmd = script(tmp_path, 'echo "s3cret-$1"')
    assert get(SecretRef(exec=f"{cmd} ipmi")) == "s3cret-ipmi"


def test_a_failing_command_names_the_secret_and_its_stderr_never_its_stdout(
    tmp_path: Path,
) -> None:
    # half a secret on stdout, and the same leaked into the complaint: neither is shown
    cmd = script(
        tmp_path, "echo partial-hunter2; echo 'vault sealed near partial-hunter2' >&2; exit 3"
    )
    with pytest.raises(SecretError) as caught:
        get(SecretRef(exec=str(cmd)), "fence parameter passwd")
    said = str(caught.value)
    assert said.startswith("secret fence parameter passwd:") and "exited 3" in said
    assert "vault sealed near" in said and "hunter2" not in said


def test_a_command_that_prints_nothing_or_cannot_run_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match="printed nothing"):
        get(SecretRef(exec=str(script(tmp_path, "exit 0"))))
    with pytest.raises(SecretError, match=r"secret .*cannot run /nonexistent/get-secret"):
        get(SecretRef(exec="/nonexistent/get-secret ipmi"))


def test_a_command_past_its_timeout_is_killed_and_named(tmp_path: Path) -> None:
    cmd = script(tmp_path, "sleep 30; echo late")
    with pytest.raises(SecretError, match=r"did not finish within 0\.2s and was killed"):
        get(SecretRef(exec=str(cmd), timeout=0.2))


def test_templates_in_a_reference_are_filled_by_the_caller(tmp_path: Path) -> None:
    (tmp_path / "bmc-n2.pw").write_text("n2-pass\n")
    (tmp_path / "bmc-n2.pw").chmod(0o600)
    ref = SecretRef(file=str(tmp_path / "bmc-{node.name}.pw"))
    value = asyncio.run(resolve(ref, "x", lambda t: t.replace("{node.name}", "n2")))
    assert value == "n2-pass"


def test_redact_masks_known_values_and_values_of_secret_named_keys() -> None:
    text = "login=admin\npassword=hunter2\nFailed: hunter2 refused; api_key: abc123 port=623"
    said = redact(text, ["hunter2"])
    assert "hunter2" not in said and "abc123" not in said
    assert "login=admin" in said and "port=623" in said and f"password={MASK}" in said
