"""The lab's choice between real MariaDB Galera / RabbitMQ and stand-ins, and the fallback
when their packages are missing (an injected probe says so: nothing is uninstalled)."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.lab import servers
from corral.lab.lab import Lab, LabError
from corral.lab.servers import choose, reachable, write_secrets
from corral.spec import load_spec_text

from .conftest import NEEDS_ROOT, NOTHING, leftovers, small_spec

STATEFUL = """
  db:
    galera: {sst_password: {file: /etc/corral/db.pw}}
  mq:
    rabbitmq: {erlang_cookie: {file: /etc/corral/cookie}}
"""


def missing(kind: str) -> list[str]:
    return [f"/usr/sbin/{kind}-not-here"]


def test_choose_follows_the_ask_and_the_probe() -> None:
    kinds = {"galera", "rabbitmq", "systemd"}
    assert choose("standin", kinds, lambda k: [])[0] == set()
    real, notes = choose("auto", kinds, lambda k: [])
    assert real == {"galera", "rabbitmq"} and all("real server" in n for n in notes)
    real, notes = choose("auto", kinds, lambda k: missing(k) if k == "galera" else [])
    assert real == {"rabbitmq"}
    assert any("galera: HTTP stand-in" in n and "make server-packages" in n for n in notes)
    with pytest.raises(LabError, match="galera: not installed here"):
        choose("real", kinds, missing)
    assert choose("real", {"systemd"}, missing) == (set(), [])  # nothing stateful to run
    with pytest.raises(LabError, match="use auto, real, standin"):
        choose("sometimes", kinds)


def test_secret_files_are_root_only_and_fresh(tmp_path: Path) -> None:
    paths = [tmp_path / "secrets" / "mq.erlang_cookie", tmp_path / "secrets" / "db.sst_password"]
    write_secrets(paths)
    first = [p.read_text() for p in paths]
    write_secrets(paths)
    assert [p.read_text() for p in paths] != first
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in paths)
    assert (tmp_path / "secrets").stat().st_mode & 0o777 == 0o700
    assert first[0].strip().isupper() and len(first[0].strip()) == 32  # an Erlang cookie


def test_reachable_needs_every_ancestor_searchable(tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    (closed / "inside").mkdir(parents=True)
    closed.chmod(0o700)
    assert reachable(closed / "inside", "root")
    assert not reachable(closed / "inside", "nobody")
    assert not reachable(tmp_path, "no-such-user-here")
    closed.chmod(0o755)
    tmp_path.chmod(0o755)
    assert reachable(closed / "inside", "nobody") == all(
        p.stat().st_mode & 0o001 for p in (closed / "inside").parents
    )


@NEEDS_ROOT
@pytest.mark.etcd
def test_missing_packages_fall_back_to_stand_ins_and_say_so(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(small_spec("labfallback") + STATEFUL)
    lab_dir = tmp_path / "lab"
    with pytest.raises(LabError, match="galera: not installed here"):
        Lab.up(spec, lab_dir, nodes=1, timeout=60, fence_action="none", servers="real",
               probe=missing)  # fmt: skip
    assert leftovers(lab_dir) == NOTHING
    lab = Lab.up(spec, lab_dir, nodes=1, timeout=60, fence_action="none", servers="auto",
                 probe=missing)  # fmt: skip
    try:
        state = lab.state()
        assert state["servers"] == []
        notes = "\n".join(state["notes"])
        assert "galera: HTTP stand-in: the server is not installed" in notes
        assert "rabbitmq: HTTP stand-in" in notes
        lab_spec = load_spec_text(lab.spec_file.read_text())
        assert {lab_spec.resources[n].kind for n in ("db", "mq")} == {"process"}
        assert not list(servers.NETNS_ETC.glob(f"{state['switch_ns'][:-6]}*"))
        assert not (lab_dir / "servers").exists() and not (lab_dir / "secrets").exists()
    finally:
        lab.down()
    assert leftovers(lab_dir) == NOTHING
