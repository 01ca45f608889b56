"""``corral report`` against a real etcd: the archive's contents, the window, the notes for
what could not be had, and no secret anywhere in it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.records import Event
from corral.store import EtcdStore, Keys

from .etcd import running_etcd

SECRET = "s3cr3t-value-42"
LITERAL = "hunter2-literal"
HOUR = 3600


def spec_text(etcd: str, secret_file: Path) -> str:
    return f"""
cluster: reporttest
store: {{etcd: {{endpoints: [{etcd}]}}}}
nodes:
  n1: {{address: 198.18.0.1}}
  n2: {{address: 198.18.0.2}}
resources:
  db:
    process:
      command: "/bin/sleep 1000"
      env: {{DB_PASSWORD: {{file: {secret_file}}}, MODE: fast}}
"""


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_etcd(tmp_path_factory.mktemp("etcd")) as url:
        yield url


def corral(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "corral.cli.main", *args],
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def members(archive: Path) -> dict[str, str]:
    with tarfile.open(archive) as tar:
        assert all(m.mode == 0o600 for m in tar.getmembers())
        out = {}
        for m in tar.getmembers():
            f = tar.extractfile(m)
            assert f is not None
            out[m.name.split("/", 1)[1]] = f.read().decode()
        return out


async def seed(etcd: str, spec: str) -> None:
    store, keys = EtcdStore([etcd]), Keys("reporttest")
    now = time.time()
    try:
        await store.put(keys.spec, spec.encode())
        for when, reason in ((now - 2 * HOUR, "old event"), (now - 60, f"start db {SECRET}")):
            event = Event(when, "n1", "db", "start", reason)
            await store.put(keys.event_key(int(when * 1e9), "n1"), event.dump())
    finally:
        await store.close()


def prepare(tmp_path: Path, etcd: str) -> tuple[Path, Path, Path]:
    secret = tmp_path / "db-password"
    secret.write_text(SECRET + "\n")
    secret.chmod(0o600)
    spec = tmp_path / "spec.yaml"
    spec.write_text(spec_text(etcd, secret))
    inputs = tmp_path / "state/controller-inputs"
    inputs.mkdir(parents=True)
    (inputs / "input-000001.yaml").write_text("# old plan\n")
    os.utime(inputs / "input-000001.yaml", (time.time() - 2 * HOUR,) * 2)
    (inputs / "input-000002.yaml").write_text("# recent plan\n")
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    old = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() - 2 * HOUR))
    (tmp_path / "state/guard.log").write_text(f"{old} guard old\n{stamp} guard stopped api\n")
    log = tmp_path / "agent.log"
    log.write_text(f"{old},000 corral old line\n{stamp},000 corral password={SECRET} here\n"
                   f"Traceback (most recent call last):\n  with {SECRET} API_TOKEN={LITERAL}\n")  # fmt: skip
    return spec, log, tmp_path / "report.tar.gz"


def test_the_archive_has_everything_and_no_secret(tmp_path: Path, etcd: str) -> None:
    spec, log, out = prepare(tmp_path, etcd)
    asyncio.run(seed(etcd, spec.read_text()))
    done = corral("report", "--spec", str(spec), "--state-dir", str(tmp_path / "state"),
                  "--node", "n1", "--log", str(log), "--remote", "sh -c",
                  "--from", "30m", "-o", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    files = members(out)
    expected = {"README.txt", "spec.yaml", "status.json", "events.jsonl", "state.yaml",
                "store.jsonl", "versions.txt", "controller-inputs/n1/input-000002.yaml",
                "logs/n1.agent.log", "logs/n2.journal.txt",
                "controller-inputs/n2/input-000002.yaml"}  # fmt: skip
    assert expected <= set(files), sorted(files)
    assert "controller-inputs/n1/input-000001.yaml" not in files  # outside the window
    assert "controller-inputs/n2/input-000001.yaml" not in files
    assert files["controller-inputs/n2/input-000002.yaml"] == "# recent plan\n"
    assert "start db" in files["events.jsonl"] and "old event" not in files["events.jsonl"]
    assert "old line" not in files["logs/n1.agent.log"]
    assert "Traceback" in files["logs/n1.agent.log"]  # follows its timed line
    assert files["logs/n1.guard.log"].endswith("guard stopped api\n")
    assert "guard old" not in files["logs/n1.guard.log"]
    versions = files["versions.txt"]
    for name in ("corral 0.1.0", "python 3.", "etcd ", "haproxy ", "kernel "):
        assert name in versions, versions
    assert '"reporttest"' in files["status.json"]
    for name, text in files.items():
        assert SECRET not in text, name
        assert LITERAL not in text, name
    assert "DB_PASSWORD" in files["spec.yaml"] and "MODE: fast" in files["spec.yaml"]


def test_a_dead_store_is_a_note_not_a_failure(tmp_path: Path, etcd: str) -> None:
    spec, _log, out = prepare(tmp_path, etcd)
    done = corral("report", "--spec", str(spec), "--etcd", "http://127.0.0.1:1",
                  "--state-dir", str(tmp_path / "state"), "--node", "n1",
                  "--remote", "/bin/false {address}",
                  "-o", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    files = members(out)
    assert "store unreachable" in files["README.txt"]
    assert "events.jsonl" not in files and "state.yaml" not in files
    assert {"spec.yaml", "versions.txt", "controller-inputs/n1/input-000002.yaml"} <= set(files)
    assert "n2: not reached through '/bin/false {address}'" in files["README.txt"]
    again = corral("report", "--spec", str(spec), "--etcd", "http://127.0.0.1:1", "-o", str(out))
    assert again.returncode == 1 and "exists" in again.stderr  # never overwritten
