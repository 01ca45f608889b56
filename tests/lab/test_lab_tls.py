"""The lab with its store over TLS (``corral lab up --tls``): each controller's agent issues
its node certificate from the lab's CA and turns etcd's auth on, the members talk TLS to
clients and peers and require certificates, the operator's CLI and the lab's own store reads
present an admin's (an etcd user with the admin role); and a failover works as over http."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from corral.lab import gateway, netns
from corral.lab.lab import Lab
from corral.pki import read_cert

from .conftest import NEEDS_ROOT, wait_for
from .test_lab import healthy, services_up

pytestmark = [pytest.mark.etcd, NEEDS_ROOT]


def test_a_tls_lab_refuses_strangers_and_fails_over(make_lab: Callable[..., Lab]) -> None:
    lab = make_lab("labtls", tls=True)
    view = wait_for(lambda: services_up(lab), 40, "services up")
    for name, node in lab.state()["nodes"].items():
        cert = read_cert(Path(node["state_dir"]) / "tls" / "node.crt")
        assert f"CN=node:{name}" in cert.subject.rfc4514_string()
    endpoint = lab.store_endpoints()[0]
    assert endpoint.startswith("https://")
    ca = str(lab.dir / "ca" / "ca.crt")
    # with the CA but without a certificate: refused (curl's TLS handshake error)
    bare = ["curl", "-s", "-m", "2", "--cacert", ca, "-X", "POST", f"{endpoint}/v3/kv/range",
            "-d", '{"key": "Lw=="}']  # fmt: skip
    state = lab.state()
    refused = subprocess.run(["ip", "netns", "exec", state["client"]["ns"], *bare],
                             capture_output=True, text=True)  # fmt: skip
    assert refused.returncode != 0 and '"kvs"' not in refused.stdout
    # the agents turned etcd's auth on; the lab's admin is an etcd user with the admin role,
    # and the lab's own reads and writes (the chaos checker's too) go through with it
    admin, ns = state["tls"], state["client"]["ns"]
    root = [str(lab.dir / "root-tls" / name) for name in ("ca.crt", "root.crt", "root.key")]
    asked = [*gateway.etcdctl_argv(endpoint, 2.0, root), "auth", "status"]
    auth = subprocess.run(netns.exec_argv(ns, asked), capture_output=True, text=True, timeout=30)
    assert "Authentication Status: true" in auth.stdout, auth.stdout + auth.stderr
    key = f"/corral/{state['cluster']}/admin/labtls-probe".encode()
    assert gateway.put(ns, lab.store_endpoints(), key, {"seen": 1}, tls=admin)
    probe = gateway.range_prefix(ns, lab.store_endpoints(), key, tls=admin)
    assert probe == {"": {"seen": 1}}
    # every CLI command presents the operator's identity (keys once opened a bare http store)
    keys = [lab.python, "-m", "corral.cli.main", "keys", "status", "--spec", str(lab.spec_file)]
    shown = subprocess.run(lab.exec_argv("client", keys), capture_output=True, text=True)
    assert shown.returncode == 0 and "phase:" in shown.stdout, shown.stdout + shown.stderr
    (holder,) = healthy(view, "api")
    lab.power_off(holder)
    moved = wait_for(
        lambda: (v := lab.cluster_status()) and [n for n in healthy(v, "api") if n != holder],
        30,
        "api healthy elsewhere",
    )
    assert holder not in moved
