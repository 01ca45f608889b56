"""The cluster CA, node identities and their rotation, the CLI's TLS files, and
``corral ca init/issue/show`` as an operator sees them (no etcd here)."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509

from corral.cli.main import cli
from corral.pki import (
    PkiError,
    api_identity,
    client_files,
    init_bundle,
    issue_identity,
    load_bundle,
    node_identity,
    read_cert,
)
from corral.pki.ca import issue, write_identity
from corral.pki.identity import DAY, Validity, expiry_note, kind_of, operator_cn
from corral.spec import Spec, SpecError, load_spec_text

NOW = time.time()


def spec_with(tls: str, store: str = "embedded") -> Spec:
    text = f"cluster: c\nnodes: {{n1: {{address: 10.0.0.1}}}}\nstore:\n  {store}:\n"
    if store == "etcd":
        text += "    endpoints: [https://10.0.0.9:2379]\n"
    return load_spec_text(text + f"    tls: {tls}\n")


def test_a_bundle_is_private_and_not_overwritten(tmp_path: Path) -> None:
    init_bundle(tmp_path / "ca", "c", NOW)
    assert stat.S_IMODE((tmp_path / "ca").stat().st_mode) == 0o700
    for name in ("ca.crt", "ca.key"):
        assert stat.S_IMODE((tmp_path / "ca" / name).stat().st_mode) == 0o600
    with pytest.raises(PkiError, match="already holds a CA"):
        init_bundle(tmp_path / "ca", "c", NOW)


def test_loading_a_bundle_refuses_what_is_unsafe_or_stale(tmp_path: Path) -> None:
    with pytest.raises(PkiError, match=r"no CA bundle in .*corral ca init"):
        load_bundle(tmp_path / "none", NOW)
    init_bundle(tmp_path / "ca", "c", NOW, days=10)
    os.chmod(tmp_path / "ca" / "ca.key", 0o640)
    with pytest.raises(PkiError, match=r"ca.key is readable by others \(mode 0640\): chmod 600"):
        load_bundle(tmp_path / "ca", NOW)
    os.chmod(tmp_path / "ca" / "ca.key", 0o600)
    with pytest.raises(PkiError, match=r"the CA certificate .*ca.crt expired on"):
        load_bundle(tmp_path / "ca", NOW + 11 * DAY)
    init_bundle(tmp_path / "other", "c", NOW)
    os.replace(tmp_path / "other" / "ca.key", tmp_path / "ca" / "ca.key")
    with pytest.raises(PkiError, match="does not belong to"):
        load_bundle(tmp_path / "ca", NOW)


def test_a_node_certificate_is_issued_kept_and_reissued_when_a_third_is_left(
    tmp_path: Path,
) -> None:
    init_bundle(tmp_path / "ca", "c", NOW)
    spec = spec_with(f"{{bundle: {tmp_path / 'ca'}}}")
    first = node_identity(spec, "n1", tmp_path / "state", NOW)
    assert first is not None and first.reissued
    cert = read_cert(Path(first.files.cert))
    assert cert.subject.rfc4514_string() == "OU=node,O=c,CN=node:n1"
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"10.0.0.1", "127.0.0.1", "::1"} <= {
        str(a) for a in sans.get_values_for_type(x509.IPAddress)
    }
    assert stat.S_IMODE(Path(first.files.key).stat().st_mode) == 0o600
    again = node_identity(spec, "n1", tmp_path / "state", NOW + 50 * DAY)
    assert again is not None and not again.reissued  # 40 days of 90 left
    later = node_identity(spec, "n1", tmp_path / "state", NOW + 61 * DAY)
    assert later is not None and later.reissued  # 29 days left: less than a third
    assert later.validity is not None and later.validity.days_left(NOW + 61 * DAY) > 89
    moved = node_identity(spec, "n1", tmp_path / "state", NOW + 62 * DAY, address="10.0.0.7")
    assert moved is not None and moved.reissued  # a new address needs a new SAN


def test_a_node_certificate_from_another_ca_is_replaced(tmp_path: Path) -> None:
    init_bundle(tmp_path / "ca", "c", NOW)
    spec = spec_with(f"{{bundle: {tmp_path / 'ca'}}}")
    assert node_identity(spec, "n1", tmp_path / "state", NOW) is not None
    os.replace(tmp_path / "ca", tmp_path / "old")
    init_bundle(tmp_path / "ca", "c", NOW)
    found = node_identity(spec, "n1", tmp_path / "state", NOW)
    assert found is not None and found.reissued


def test_the_api_identity_is_an_operator_issued_beside_the_node_one(tmp_path: Path) -> None:
    init_bundle(tmp_path / "ca", "c", NOW)
    spec = spec_with(f"{{bundle: {tmp_path / 'ca'}}}")
    files = api_identity(spec, "n1", tmp_path / "state", NOW)
    assert files is not None and files.cert == str(tmp_path / "state" / "tls" / "api.crt")
    cert = read_cert(Path(files.cert))
    assert cert.subject.rfc4514_string() == "OU=operator,O=c,CN=api:n1"
    assert kind_of("api:n1") == "api" and stat.S_IMODE(Path(files.key).stat().st_mode) == 0o600
    api_identity(spec, "n1", tmp_path / "state", NOW + 50 * DAY)
    assert read_cert(Path(files.cert)).serial_number == cert.serial_number  # kept
    api_identity(spec, "n1", tmp_path / "state", NOW + 61 * DAY)
    assert read_cert(Path(files.cert)).serial_number != cert.serial_number  # renewed
    own = spec_with("{ca: /x/ca.crt, cert: /x/n.crt, key: /x/n.key}")
    assert api_identity(own, "n1", tmp_path / "own", NOW) is None  # none put there
    out = tmp_path / "own" / "tls-api"
    for name in ("ca.crt", "api.crt", "api.key"):
        out.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("x")
    given = api_identity(own, "n1", tmp_path / "own", NOW)
    assert given is not None and given.cert == str(out / "api.crt")
    assert api_identity(spec_with("null"), "n1", tmp_path, NOW) is None


def test_https_on_the_api_needs_the_stores_tls() -> None:
    with pytest.raises(SpecError, match=r"api\.tls: true needs the store"):
        load_spec_text("cluster: c\nnodes: {n1: {address: 10.0.0.1}}\napi: {tls: true}\n")
    text = "cluster: c\nnodes: {n1: {address: 10.0.0.1}}\napi: {tls: true}\nstore:\n  embedded:\n"
    assert load_spec_text(text + "    tls: {bundle: /ca}\n").api.tls


def test_spec_tls_fields_are_checked_with_their_lines() -> None:
    with pytest.raises(SpecError) as bad:
        spec_with("{bundle: relative/dir}")
    assert "<spec>:5:" in str(bad.value) and "store.embedded.tls.bundle" in str(bad.value)
    with pytest.raises(SpecError, match="'ca', 'cert' and 'key' go together: key missing"):
        spec_with("{ca: /a, cert: /b}")
    with pytest.raises(SpecError, match="https:// endpoints need 'tls'"):
        load_spec_text(
            "cluster: c\nnodes: {n1: {address: 10.0.0.1}}\n"
            "store: {etcd: {endpoints: ['https://10.0.0.9:2379']}}\n"
        )
    assert spec_with("{}").store_tls == ("store.embedded.tls", spec_with("{}").store.embedded.tls)  # type: ignore[union-attr]


def test_missing_files_are_named_with_their_spec_field(tmp_path: Path) -> None:
    (tmp_path / "ca.crt").write_text("x")
    spec = spec_with(f"{{ca: {tmp_path}/ca.crt, cert: {tmp_path}/n.crt, key: {tmp_path}/n.key}}",
                     store="etcd")  # fmt: skip
    with pytest.raises(PkiError, match=r"store.etcd.tls.cert: .*n.crt does not exist"):
        node_identity(spec, "n1", tmp_path, NOW)
    with pytest.raises(PkiError, match=r"store.embedded.tls.bundle: no CA bundle in /nowhere"):
        node_identity(spec_with("{bundle: /nowhere}"), "n1", tmp_path, NOW)


def test_the_cli_finds_its_files_in_the_environment_the_spec_or_the_node(tmp_path: Path) -> None:
    ca = init_bundle(tmp_path / "ca", "c", NOW)
    op = issue_identity(ca, "alice", "viewer", tmp_path / "alice", NOW)
    env = {"CORRAL_ETCD_CA": op.ca, "CORRAL_ETCD_CERT": op.cert, "CORRAL_ETCD_KEY": op.key}
    spec = spec_with(f"{{bundle: {tmp_path / 'ca'}}}")
    assert client_files(spec, tmp_path / "state", env) == op
    with pytest.raises(PkiError, match="CORRAL_ETCD_KEY missing"):
        client_files(spec, tmp_path / "state", {**env, "CORRAL_ETCD_KEY": ""})
    with pytest.raises(PkiError, match=r"no node identity in .*corral ca issue"):
        client_files(spec, tmp_path / "state", {})
    node = node_identity(spec, "n1", tmp_path / "state", NOW)
    found = client_files(spec, tmp_path / "state", {})
    assert node is not None and found is not None
    assert found.as_tuple() == node.files.as_tuple()
    assert node.files.renew_cert is not None  # the CN-less pair for the gateway renewals
    renew = read_cert(Path(node.files.renew_cert))
    assert renew.subject.rfc4514_string() == "OU=renewal,O=c"
    assert client_files(spec_with("null"), tmp_path, {}) is None


def test_identities_name_nodes_operators_and_root_apart() -> None:
    assert kind_of("node:ctl1") == "node" and kind_of("root") == "root"
    assert kind_of(operator_cn("alice", "viewer")) == "operator"
    with pytest.raises(ValueError, match="letters, digits"):
        operator_cn("node:ctl1", "admin")  # nobody passes for a node
    with pytest.raises(ValueError, match="--role admin"):
        operator_cn("root", "viewer")
    with pytest.raises(ValueError, match="choose one of viewer, operator, admin"):
        operator_cn("bob", "god")
    v = Validity(0.0, 90 * DAY)
    assert expiry_note("x", v, 80 * DAY) == (True, "x expires in 10 days")
    assert expiry_note("x", v, 91 * DAY) == (True, "x EXPIRED 1 days ago")
    assert expiry_note("x", v, 10 * DAY)[0] is False


def test_ca_commands_as_an_operator_sees_them(tmp_path: Path) -> None:
    run = CliRunner().invoke
    bundle = str(tmp_path / "ca")
    out = run(cli, ["ca", "init", "--out", bundle, "--cluster", "cloud1"])
    assert out.exit_code == 0 and "copy" in out.output
    assert run(cli, ["ca", "init", "--out", bundle]).exit_code == 1
    out = run(cli, ["ca", "issue", "alice", "--role", "operator", "--out", str(tmp_path / "a"),
                    "--bundle", bundle])  # fmt: skip
    assert out.exit_code == 0 and "CORRAL_ETCD_CERT=" in out.output
    out = run(cli, ["ca", "issue", "x", "--role", "admin", "--out", str(tmp_path / "x"),
                    "--bundle", str(tmp_path / "missing")])  # fmt: skip
    assert out.exit_code == 1 and "no CA bundle in" in out.output
    # an expired certificate is named as such, with exit status 1
    ca = load_bundle(tmp_path / "ca", NOW)
    cert, key = issue(ca, "old", ou="viewer", now=NOW - 10 * DAY, days=2)
    write_identity(tmp_path / "old", "old", ca, cert, key)
    old = str(tmp_path / "old" / "old.crt")
    out = run(cli, ["ca", "show", "--bundle", bundle, "--state-dir", str(tmp_path),
                    "--cert", str(tmp_path / "a" / "alice.crt"), "--cert", old])  # fmt: skip
    assert out.exit_code == 1
    assert "CN=corral CA cloud1) expires in 3650 days" in out.output
    assert "CN=alice) expires in 365 days" in out.output
    assert f"WARNING: {old} (OU=viewer,O=cloud1,CN=old) EXPIRED 8 days ago" in out.output
    os.chmod(tmp_path / "ca" / "ca.key", 0o644)
    out = run(cli, ["ca", "show", "--bundle", bundle, "--state-dir", str(tmp_path)])
    assert out.exit_code == 1 and "chmod 600" in out.output
