"""Rendering: haproxy -c accepts what we render; deterministic; checks and binds as specified."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from corral.drivers.base import NodeContext
from corral.lb.config import Server, backends, render, structure
from corral.spec.loader import load_spec
from tests.lb.helpers import LB, make_spec, spec_text

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "openstack.yaml"


def haproxy_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["haproxy", "-c", "-f", str(path)], capture_output=True, text=True, timeout=30
    )


def test_openstack_example_renders_a_valid_config(short_dir: Path) -> None:
    spec = load_spec(EXAMPLE)
    node = NodeContext("ctl1", "198.18.0.11")
    text = render(spec, node, {}, short_dir)
    (short_dir / "haproxy.cfg").write_text(text)
    done = haproxy_check(short_dir / "haproxy.cfg")
    assert done.returncode == 0, done.stdout + done.stderr
    # one frontend and one backend per balanced service, every VIP bound on every LB node
    for svc, port in [
        ("keystone", 5000),
        ("glance-api", 9292),
        ("nova-api", 8774),
        ("neutron-server", 9696),
        ("placement", 8778),
    ]:
        assert f"frontend {svc}\n" in text and f"backend {svc}\n" in text
        for vip in ("198.18.0.100", "198.18.0.101", "198.18.0.102"):
            assert f"bind {vip}:{port} transparent" in text
        for i in (1, 2, 3):
            assert f"server ctl{i} 198.18.0.1{i}:{port} check" in text
    assert "frontend rabbitmq" not in text  # not balanced
    assert "http-check expect rstatus ^(200|300)$" in text  # keystone's two statuses
    assert "http-check send meth GET uri /healthcheck" in text
    assert "bind 198.18.0.11:8404" in text and "monitor-uri /health" in text
    assert f"stats socket {short_dir}/haproxy.sock mode 600 level admin expose-fd listeners" in text
    assert f"server-state-file {short_dir}/haproxy.state" in text
    assert "load-server-state-from-file global" in text
    assert "option redispatch 1" in text and "retry-on conn-failure empty-response" in text


def test_render_is_deterministic_and_independent_of_server_order(short_dir: Path) -> None:
    spec = make_spec(spec_text(8080, 8081, 8404))
    node = NodeContext("lb1", LB)
    a = [Server("n2", "127.0.0.162", 1), Server("n1", "127.0.0.161", 1)]
    one = render(spec, node, {"api": a}, short_dir)
    two = render(spec, node, {"api": list(reversed(a))}, short_dir)
    assert one == two
    assert one.index("server n1 ") < one.index("server n2 ")
    assert render(spec, node, {}, short_dir) == render(spec, node, {}, short_dir)


def test_check_timing_comes_from_the_service_check(short_dir: Path) -> None:
    spec = make_spec(spec_text(8080, 8081, 8404, url_path="/v3?x=1"))
    (b,) = backends(spec)
    assert b.check.kind == "http" and b.check.path == "/v3?x=1"
    assert (b.check.interval, b.check.fall, b.check.rise) == (0.3, 2, 1)
    assert b.check.port is None  # the check URL's port is the backend port
    text = render(spec, NodeContext("lb1", LB), {}, short_dir)
    assert "inter 300ms" in text and "fall 2 " in text and "rise 1 " in text
    assert "timeout check 250ms" in text


def test_check_on_another_port_and_tcp_and_exec_checks(short_dir: Path) -> None:
    text = spec_text(8080, 8081, 8404).replace(
        'health: {http: "http://{node.address}:8081/"', 'health: {tcp: "{node.address}:9000"'
    )
    (b,) = backends(make_spec(text))
    assert b.check.kind == "tcp" and b.check.port == 9000
    text = spec_text(8080, 8081, 8404).replace(
        'health: {http: "http://{node.address}:8081/"', 'health: {exec: "/bin/true"'
    )
    (b,) = backends(make_spec(text))
    assert b.check.kind == "tcp" and b.check.port is None  # layer-4 on the server port
    rendered = render(make_spec(text), NodeContext("lb1", LB), {}, short_dir)
    (short_dir / "c.cfg").write_text(rendered)
    assert haproxy_check(short_dir / "c.cfg").returncode == 0


def test_bad_names_and_long_socket_paths_are_refused(short_dir: Path) -> None:
    spec = make_spec(spec_text(8080, 8081, 8404))
    with pytest.raises(ValueError, match="cannot be an HAProxy name"):
        render(
            spec, NodeContext("lb1", LB), {"api": [Server("bad name", "127.0.0.1", 1)]}, short_dir
        )
    with pytest.raises(ValueError, match="unix socket"):
        render(spec, NodeContext("lb1", LB), {}, short_dir / ("x" * 120))


def test_structure_ignores_comments_and_spacing() -> None:
    assert structure("global\n    # c\n  maxconn   5 # why\n\n") == ["global", "maxconn 5"]
    assert structure("global\n maxconn 5\n") != structure("global\n maxconn 6\n")
