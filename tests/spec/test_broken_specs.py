"""Every broken spec is refused whole, with its own message and the line it is on."""

from __future__ import annotations

import textwrap

import pytest

from corral.spec import SpecError, load_spec_text

HEAD = """\
cluster: c1
nodes:
  n1: {address: 198.18.0.11, roles: [lb, api]}
  n2: {address: 198.18.0.12, roles: [lb, api]}
  n3: {address: 198.18.0.13, roles: [lb]}
"""  # lines 1-5; the cases below start on line 6

CASES: list[tuple[str, str, str, int]] = [
    # (id, text after HEAD, expected message part, expected line)
    ("unknown-top-key", "resourcez: {}\n", "unknown field 'resourcez'", 6),
    (
        "unknown-resource-key",
        "resources:\n  a:\n    systemd: a.service\n    colour: red\n",
        "resources.a.colour: unknown field 'colour'",
        9,
    ),
    (
        "no-kind",
        "resources:\n  a:\n    mode: active-passive\n",
        "a resource needs exactly one kind",
        7,
    ),
    (
        "two-kinds",
        "resources:\n  a:\n    systemd: a.service\n    process: /bin/a\n",
        "(got process, systemd)",
        7,
    ),
    (
        "bad-mode",
        "resources:\n  a:\n    systemd: a.service\n    mode: hot-standby\n",
        "resources.a.mode: got 'hot-standby'",
        9,
    ),
    (
        "unknown-role",
        "resources:\n  a:\n    systemd: a.service\n    on: {role: db}\n",
        "unknown role 'db': no node has it",
        9,
    ),
    (
        "unknown-order-resource",
        "resources:\n  a: {systemd: a.service}\norder:\n  - a -> b\n",
        "order[0]: unknown resource 'b'",
        9,
    ),
    (
        "gossip-probe-too-short",
        "gossip:\n  port: 7946\n  probe_interval: 10ms\n",
        "gossip.probe_interval: probe_interval 0.01s: use 50ms to 10s",
        8,
    ),
    (
        "gossip-probe-not-a-duration",
        "gossip: {probe_interval: often}\n",
        "invalid duration 'often'",
        6,
    ),
    (
        "gossip-probe-under-the-wan-timeout",
        "profile: wan\ngossip:\n  probe_interval: 400ms\n",
        "must be longer than the probe timeout (0.5s) of the wan profile",
        8,
    ),
    (
        "order-cycle",
        "resources:\n  a: {systemd: a.service}\n  b: {systemd: b.service}\n"
        "order:\n  - a -> b\n  - b -> a\n",
        "ordering cycle: a -> b -> a",
        10,
    ),
    (
        "order-syntax",
        "resources:\n  a: {systemd: a.service}\norder:\n  - a before b\n",
        "cannot read order 'a before b'",
        9,
    ),
    (
        "vip-outside-subnet",
        "resources:\n  v: {vip: 198.19.5.1/24}\n",
        "outside the subnet of every eligible node",
        7,
    ),
    (
        "vip-not-an-address",
        "resources:\n  v:\n    vip: 198.18.0.300/24\n",
        "'198.18.0.300/24' is not an IP address with prefix",
        8,
    ),
    (
        "duplicate-vip",
        "resources:\n  v: {vip: 198.18.0.100/24}\n  w:\n    vip-set: [198.18.0.101/24, 198.18.0.100/24]\n",
        "VIP 198.18.0.100 is also used by 'v'",
        9,
    ),
    (
        "vip-is-node-address",
        "resources:\n  v: {vip: 198.18.0.12/24}\n",
        "VIP 198.18.0.12 is the address of node 'n2'",
        7,
    ),
    (
        "duplicate-resource-key",
        "resources:\n  a: {systemd: a.service}\n  a: {systemd: b.service}\n",
        "duplicate key 'a' (first written on line 7)",
        8,
    ),
    (
        "duplicate-node-address",
        "  n4: {address: 198.18.0.11}\n",
        "nodes.n4.address: address 198.18.0.11 is also the address of node 'n1'",
        6,
    ),
    (
        "vip-set-with-mode",
        "resources:\n  v:\n    vip-set: [198.18.0.100/24]\n    mode: active-passive\n",
        "a vip-set places one exclusive VIP per node by itself; 'mode' does not apply",
        9,
    ),
    (
        "vip-active-active",
        "resources:\n  v:\n    vip: 198.18.0.100/24\n    mode: active-active\n",
        "a vip is held by one node at a time",
        9,
    ),
    (
        "promoted-without-promotable",
        "resources:\n  a:\n    systemd: a.service\n    promoted: 1\n",
        "'promoted' only applies to mode promotable",
        9,
    ),
    (
        "ap-two-instances",
        "resources:\n  a:\n    systemd: a.service\n    mode: active-passive\n    instances: 2\n",
        "an active-passive resource has exactly one instance",
        10,
    ),
    (
        "too-many-instances",
        "resources:\n  a:\n    systemd: a.service\n    on: {role: api}\n    instances: 5\n",
        "5 instances cannot fit: 2 eligible node(s)",
        10,
    ),
    (
        "bad-duration",
        "resources:\n  a:\n    systemd: a.service\n    health: {tcp: 'x:1', interval: soon}\n",
        "resources.a.health.interval: invalid duration 'soon'",
        9,
    ),
    (
        "check-two-kinds",
        "resources:\n  a:\n    systemd: a.service\n    health: {tcp: 'x:1', exec: /bin/true}\n",
        "a health check needs exactly one of http, tcp, exec (got tcp, exec)",
        9,
    ),
    (
        "rise-zero",
        "resources:\n  a:\n    systemd: a.service\n    health: {tcp: 'x:1', rise: 0}\n",
        "resources.a.health.rise",
        9,
    ),
    (
        "balance-via-unknown",
        "resources:\n  h: {haproxy: {}}\n  a:\n    systemd: a.service\n"
        "    balance: {port: 80, via: vips}\n",
        "resources.a.balance.via: unknown resource 'vips'",
        10,
    ),
    (
        "balance-via-service",
        "resources:\n  h: {haproxy: {}}\n  b: {systemd: b.service}\n  a:\n    systemd: a.service\n"
        "    balance: {port: 80, via: b}\n",
        "'b' is a systemd; balance.via names a vip or vip-set",
        11,
    ),
    (
        "balance-without-haproxy",
        "resources:\n  v: {vip: 198.18.0.100/24}\n  a:\n    systemd: a.service\n"
        "    balance: {port: 80, via: v}\n",
        "balance needs a resource of kind haproxy",
        10,
    ),
    (
        "with-unknown",
        "resources:\n  a:\n    systemd: a.service\n    with: [ghost]\n",
        "resources.a.with[0]: unknown resource 'ghost'",
        9,
    ),
    (
        "ticket-unknown",
        "resources:\n  a:\n    systemd: a.service\n    ticket: dc1\n",
        "unknown ticket 'dc1'",
        9,
    ),
    ("bad-node-name", "  Node_4: {address: 198.18.0.14}\n", "bad name 'Node_4'", 6),
    ("bad-systemd-unit", "resources:\n  a: {systemd: 'not a unit'}\n", "resources.a.systemd", 7),
    (
        "even-core-count",
        "  n4: {address: 198.18.0.14}\n",
        "4 core nodes: an even number of etcd members",
        2,
    ),
    (
        "lease-below-etcd-minimum",
        "timing: {lease_ttl: 500ms}\n",
        "lease_ttl 0.5s is below etcd's minimum lease",
        6,
    ),
    ("store-typo", "store: embeded\n", "store must be 'embedded'", 6),
    (
        "unknown-fence-device",
        "  n4: {address: 198.18.0.14, fence: [ipmi]}\n",
        "unknown fence device 'ipmi'",
        6,
    ),
    ("yaml-syntax", "resources: [a\n", "YAML syntax", 7),
    (
        "dns-on-vip",
        "resources:\n  v:\n    vip: 198.18.0.100/24\n    dns: api.example\n",
        "dns names the VIPs of a vip-set",
        9,
    ),
    (
        "dns-bad-name",
        "resources:\n  v:\n    vip-set: [198.18.0.100/24]\n    dns: 'api..example'\n",
        "not a DNS name: A DNS label is empty",
        9,
    ),
    (
        "dns-name-twice",
        "resources:\n  v:\n    vip-set: [198.18.0.100/24]\n    dns: api.example\n"
        "  w:\n    vip-set: [198.18.0.101/24]\n    dns: API.example.\n",
        "is already the name of v",
        12,
    ),
    (
        "systemic-share-one",
        "defaults:\n  failure: {systemic_share: 1}\n",
        "defaults.failure.systemic_share: must be a number more than 0 and less than 1",
        7,
    ),
    (
        "systemic-share-zero",
        "defaults:\n  failure:\n    systemic_share: 0\n",
        "defaults.failure.systemic_share: must be a number more than 0 and less than 1",
        8,
    ),
    (
        "systemic-share-boolean",
        "resources:\n  a:\n    systemd: a.service\n    failure: {systemic_share: true}\n",
        "resources.a.failure.systemic_share: must be a number more than 0 and less than 1 "
        "(0.5: more than half of the resource's nodes), not True",
        9,
    ),
    (
        "systemic-share-text",
        "resources:\n  a:\n    systemd: a.service\n    failure: {systemic_share: most}\n",
        "not 'most'; to turn systemic failures off set systemic_window: 0",
        9,
    ),
    (
        "systemic-window-negative",
        "resources:\n  a:\n    systemd: a.service\n    failure: {systemic_window: -5s}\n",
        "resources.a.failure.systemic_window: invalid duration '-5s'",
        9,
    ),
    (
        "systemic-window-not-a-duration",
        "defaults:\n  failure: {systemic_window: soon}\n",
        "defaults.failure.systemic_window: invalid duration 'soon'",
        7,
    ),
]


@pytest.mark.parametrize(
    ("body", "expected", "line"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_broken_spec_names_problem_and_line(body: str, expected: str, line: int) -> None:
    with pytest.raises(SpecError) as caught:
        load_spec_text(HEAD + body, "cluster.yaml")
    matching = [i for i in caught.value.issues if expected in str(i)]
    assert matching, f"no issue contains {expected!r}:\n{caught.value}"
    assert matching[0].line == line, str(caught.value)
    assert matching[0].file == "cluster.yaml"
    assert str(matching[0]).startswith(f"cluster.yaml:{line}:")


def test_head_alone_is_valid() -> None:
    spec = load_spec_text(HEAD)
    assert list(spec.nodes) == ["n1", "n2", "n3"]


def test_all_problems_are_reported_at_once() -> None:
    body = textwrap.dedent("""\
        resources:
          a:
            systemd: a.service
            on: {role: db}
            with: [ghost]
        order:
          - a -> nowhere
        """)
    with pytest.raises(SpecError) as caught:
        load_spec_text(HEAD + body)
    text = str(caught.value)
    assert "unknown role 'db'" in text
    assert "unknown resource 'ghost'" in text
    assert "unknown resource 'nowhere'" in text
    assert text.startswith("spec refused: 3 problems")


def test_yaml_11_booleans_stay_strings() -> None:
    # `on:` is a key here (not True), and `yes` is not silently turned into a boolean.
    spec = load_spec_text(HEAD + "resources:\n  a:\n    systemd: a.service\n    on: {role: lb}\n")
    assert spec.resources["a"].on.role == "lb"


def test_systemic_fields_have_documented_defaults_and_resources_override_them_one_by_one() -> None:
    body = textwrap.dedent("""\
        defaults:
          failure: {systemic_window: 2m}
        resources:
          a: {systemd: a.service}
          b: {systemd: b.service, failure: {systemic_share: 0.75}}
          c: {systemd: c.service, failure: {systemic_window: 0}}
        """)
    res = load_spec_text(HEAD + body).resources
    assert (res["a"].failure.systemic_share, res["a"].failure.systemic_window) == (0.5, 120.0)
    assert (res["b"].failure.systemic_share, res["b"].failure.systemic_window) == (0.75, 120.0)
    assert (res["c"].failure.systemic_share, res["c"].failure.systemic_window) == (0.5, 0.0)
    plain = load_spec_text(HEAD + "resources:\n  a: {systemd: a.service}\n").resources["a"]
    assert (plain.failure.systemic_share, plain.failure.systemic_window) == (0.5, 60.0)
