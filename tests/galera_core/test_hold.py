"""Rule 1g (:mod:`corral.core.galera.hold`): which Galera members (and RabbitMQ brokers) rule 1
holds to the node lease. A joined member keeps running past the keep deadline (a store outage
does not stop the database or the queues); a bootstrap node stays held until a read of the
claim shows it gone; no other kind of resource can take itself off the lease, whatever its
driver says."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from corral.core.agent.core import AgentCore
from corral.core.agent.effects import Promote, Restart, Start, Stop, Why
from corral.core.galera.hold import StartedAs, joined
from corral.core.reconcile import LocalInstance
from corral.spec import load_spec_text

SPEC = """
cluster: c1
nodes:
  db1: {address: 198.18.0.11}
  db2: {address: 198.18.0.12}
  db3: {address: 198.18.0.13}
resources:
  galera: {galera: {}}
  other-galera: {galera: {port: 3307}}
  mq: {rabbitmq: {erlang_cookie: {file: /etc/corral/cookie}}}
  svc: {process: /bin/true, mode: active-passive}
  web: {process: /bin/true}
  vip: {vip: {address: 198.18.0.100/24}}
"""
KEYS = ("galera", "other-galera", "mq", "svc", "web", "vip")


def test_only_a_running_joiner_or_a_bootstrap_node_whose_claim_is_gone_is_joined() -> None:
    starts: tuple[StartedAs | None, ...] = (None, "bootstrap", "join", "adopted")
    for running, started_as, names in itertools.product((False, True), starts, (True, False, None)):
        got = joined(running, started_as, names)
        want = running and (started_as == "join" or (started_as is not None and names is False))
        assert got == want, (running, started_as, names)


def test_a_joined_member_is_kept_past_the_deadline_and_a_bootstrapping_one_is_not() -> None:
    core = AgentCore(load_spec_text(SPEC), "db1")
    assert core.member_joined("galera", True)
    stops = core.self_fence(1e9, ["galera", "other-galera"], keep_deadline=0.0)
    assert [(s.key, s.why) for s in stops] == [("other-galera", Why.SELF_FENCE)]
    assert core.fence_deadline(1e9, ["galera"], 0.0, 0.5) == float("inf")
    assert not core.member_joined("galera", True)  # unchanged
    assert core.member_joined("galera", False)  # the driver says held again
    assert [s.key for s in core.self_fence(1e9, ["galera"], keep_deadline=0.0)] == ["galera"]


@settings(max_examples=200, deadline=None)
@given(
    running=st.sets(st.sampled_from(KEYS)),
    says_joined=st.sets(st.sampled_from(KEYS)),
    promote=st.sets(st.sampled_from(KEYS)),
)
def test_past_the_deadline_every_exclusive_instance_stops_but_joined_quorum_members(
    running: set[str], says_joined: set[str], promote: set[str]
) -> None:
    core = AgentCore(load_spec_text(SPEC), "db1")
    for key in running:
        core.member_joined(key, key in says_joined)
    galera = {"galera", "other-galera", "mq"}  # quorum members: Galera and RabbitMQ
    kept = running & says_joined & galera
    stopped = {s.key for s in core.self_fence(1e9, running, keep_deadline=0.0)}
    assert stopped == (running & (galera | {"svc", "vip"})) - kept
    # a round with a stale lease stops the same, and starts or promotes nothing exclusive
    desired = dict.fromkeys(running, "started") | dict.fromkeys(promote, "promoted")
    here = {k: LocalInstance() for k in running}
    effects = core.round(1e9, desired, set(), here, keep_deadline=0.0)
    assert {e.key for e in effects if isinstance(e, Stop)} == stopped
    ups = {e.key for e in effects if isinstance(e, Start | Promote | Restart)}
    assert not ups & (galera | {"svc", "vip"})
