"""The roles' etcd permissions: a golden table, and a walk over the keys each role must and
must not reach (so a change of the key layout that forgets a role shows here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.auth.roles import (
    ROLES,
    Perm,
    Role,
    Span,
    allowed,
    cut,
    permissions,
    public_spans,
    table_text,
)
from corral.records.rabbit import RabbitKeys
from corral.records.rabbit_plan import plan_key
from corral.store import Keys

GOLDEN = Path(__file__).parent / "data" / "roles.txt"
KEYS = Keys("c1")
TABLE = permissions(KEYS)

# every key corral writes, by who writes it (grep of the agent, controller, CLI: DESIGN)
AGENT_WRITES = [
    KEYS.node("n1"),
    KEYS.status("n1", "web"),
    KEYS.members("n1"),
    KEYS.lb("n1"),
    KEYS.controller,
    KEYS.assign("web"),
    KEYS.fenced("n2"),
    KEYS.systemic("web"),
    KEYS.failcount("n1", "web"),  # counted by the agent, rewritten by the controller
    KEYS.request("n1", "web"),  # deleted by the agent once done
    KEYS.event_key(1, "n1"),
    KEYS.gossip_key,  # created by the first agent
    KEYS.key_ack("n1"),  # the keyring version it applied
    KEYS.galera_report("db", "n1"),  # a Galera node's state
    KEYS.galera_bootstrap("db"),  # the controller's bootstrap claim (rule 6)
    KEYS.galera_writer("db"),  # the controller's one writer
    RabbitKeys(KEYS, "mq").report("n1"),  # a RabbitMQ node's broker state
    RabbitKeys(KEYS, "mq").running("n1"),  # the nodes it ran with
    RabbitKeys(KEYS, "mq").claim(7),  # the controller's force-boot claim (rule 6)
    plan_key(RabbitKeys(KEYS, "mq")),  # the controller's plan
]
OPERATOR_WRITES = [
    KEYS.admin("maintenance"),
    KEYS.admin("standby"),
    KEYS.admin("bans"),
    KEYS.admin("moves"),
    KEYS.failcount("n1", "web"),  # corral cleanup
    KEYS.request("n1", "web"),  # corral resource restart
    KEYS.event_key(1, "audit.alice"),
]
ADMIN_ONLY = [
    KEYS.spec,
    KEYS.user("alice"),
    KEYS.token("0123456789ab"),
    KEYS.admin("tickets"),
    KEYS.key_rotation,  # corral keys rotate
]
SECRETS = [KEYS.gossip_key, KEYS.token("0123456789ab")]
PUBLIC = [
    KEYS.spec,
    KEYS.controller,
    KEYS.node("n1"),
    KEYS.status("n1", "web"),
    KEYS.admin("maintenance"),
    KEYS.event_key(1, "n1"),
    KEYS.user("alice"),
    KEYS.members("n1"),
    KEYS.systemic("web"),
]


def may(role: Role, access: str, key: bytes) -> bool:
    return allowed(TABLE[role], access, Span.key(key))  # type: ignore[arg-type]


def test_the_table_is_the_golden_one(request: pytest.FixtureRequest) -> None:
    text = table_text(KEYS, TABLE)
    if request.config.getoption("--update"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "run with --update and review the diff"


def test_agents_write_what_agents_write_and_nothing_else() -> None:
    assert all(may("agent", "write", k) for k in AGENT_WRITES)
    assert all(may("agent", "read", k) for k in [*PUBLIC, *SECRETS])
    refused = [KEYS.spec, KEYS.admin("maintenance"), KEYS.user("alice"), KEYS.token("0123456789ab")]
    assert not any(may("agent", "write", k) for k in refused)


def test_operators_write_admin_records_not_the_spec_nor_a_secret() -> None:
    assert all(may("operator", "write", k) for k in OPERATOR_WRITES)
    assert all(may("operator", "read", k) for k in PUBLIC)
    assert not any(may("operator", "read", k) for k in SECRETS)
    for key in [*ADMIN_ONLY, KEYS.assign("web"), KEYS.status("n1", "web"), KEYS.node("n1")]:
        if key != KEYS.admin("tickets"):
            assert not may("operator", "write", key), key


def test_viewers_read_all_but_secrets_and_write_nothing() -> None:
    assert all(may("viewer", "read", k) for k in PUBLIC)
    assert not any(may("viewer", "read", k) for k in SECRETS)
    everything = [*AGENT_WRITES, *OPERATOR_WRITES, *ADMIN_ONLY]
    assert not any(may("viewer", "write", k) for k in everything)
    assert not allowed(TABLE["viewer"], "read", Span.prefix(KEYS.root_prefix))  # whole root: no


def test_admins_do_everything_in_their_cluster_only() -> None:
    everything = [*AGENT_WRITES, *OPERATOR_WRITES, *ADMIN_ONLY, *SECRETS]
    assert all(may("admin", "readwrite", k) for k in everything)
    other = Keys("c10")  # a cluster whose name extends ours: no key of it
    for role in ROLES:
        assert not may(role, "read", other.spec)
        assert not may(role, "read", b"/corral/c1")


def test_no_role_grants_one_span_twice() -> None:
    # etcd keeps one permission per (key, range_end): a second grant would replace the first
    for perms in TABLE.values():
        assert len({p.span for p in perms}) == len(perms)


def test_the_public_spans_cover_the_root_but_the_secrets() -> None:
    spans = public_spans(KEYS)
    assert allowed([Perm(s, "read") for s in spans], "read", Span.prefix(KEYS.users()))
    assert cut(Span(b"a", b"z"), [Span(b"a", b"c"), Span(b"x", b"zz")]) == (Span(b"c", b"x"),)
    assert cut(Span(b"a", b"z"), []) == (Span(b"a", b"z"),)
