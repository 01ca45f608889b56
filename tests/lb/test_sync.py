"""sync.plan (pure) and the runtime API's parsers."""

from __future__ import annotations

import pytest

from corral.lb.config import Backend, Check, Server
from corral.lb.runtime import parse_servers_state, parse_show_proc
from corral.lb.sync import plan

CHECK = Check("tcp", 1.0, 0.5, 2, 2)
KNOWN = {
    "api": Backend(
        "api", "http", 80, ("127.0.0.150:80",), (Server("n4", "127.0.0.164", 81),), CHECK
    )
}


def test_no_change_no_commands() -> None:
    p = plan(
        {"api": {"n1": "ready", "n2": "maint"}}, {("api", "n1"): "ready", ("api", "n2"): "maint"}
    )
    assert p.empty and p.commands == () and not p.reload_needed


def test_state_changes_sorted() -> None:
    p = plan(
        {"web": {"b": "drain"}, "api": {"n2": "maint", "n1": "ready"}},
        {("web", "b"): "ready", ("api", "n1"): "drain", ("api", "n2"): "ready"},
    )
    assert p.commands == (
        "set server api/n1 state ready",
        "set server api/n2 state maint",
        "set server web/b state drain",
    )
    assert not p.reload_needed


def test_new_server_without_address_needs_reload_but_other_changes_still_run() -> None:
    p = plan({"api": {"n1": "maint", "n9": "ready"}}, {("api", "n1"): "ready"})
    assert p.reload_needed and "api/n9" in p.reason
    assert p.commands == ("set server api/n1 state maint",)


def test_new_server_with_known_address_is_added_first_and_set_last() -> None:
    p = plan({"api": {"n1": "maint", "n4": "drain"}}, {("api", "n1"): "ready"}, known=KNOWN)
    assert not p.reload_needed
    assert p.commands[0].startswith("add server api/n4 127.0.0.164:81 check inter 1000ms")
    assert p.commands[1:] == (
        "enable health api/n4",
        "set server api/n4 state drain",
        "set server api/n1 state maint",
    )


def test_gone_server_is_drained_out_and_deleted_or_needs_reload() -> None:
    observed = {("api", "n1"): "ready", ("api", "n2"): "ready"}
    p = plan({"api": {"n1": "ready"}}, observed)
    assert p.commands == (
        "set server api/n2 state maint",
        "shutdown sessions server api/n2",
        "del server api/n2",
    )
    p = plan({"api": {"n1": "ready"}}, {**observed, ("api", "n2"): "maint"})
    assert p.commands == ("shutdown sessions server api/n2", "del server api/n2")
    p = plan({"api": {"n1": "ready"}}, observed, allow_delete=False)
    assert p.reload_needed and p.commands == ()


def test_structural_differences_need_reload() -> None:
    p = plan({"api": {"n1": "ready"}}, {("api", "n1"): "ready", ("old", "x"): "ready"})
    assert p.reload_needed and "backend old runs" in p.reason
    p = plan({"api": {"n1": "ready"}, "new": {"a": "ready"}}, {("api", "n1"): "ready"})
    assert p.reload_needed and "backend new is not in the running configuration" in p.reason
    assert plan({"new": {}}, {}).empty  # a desired backend without servers asks for nothing


@pytest.mark.parametrize(
    "bad", [{"api": {"n1": "up"}}, {"api": {"n1;shutdown": "ready"}}, {"a b": {"n1": "ready"}}]
)
def test_bad_input_is_refused(bad: dict[str, dict[str, str]]) -> None:
    with pytest.raises(ValueError):
        plan(bad, {})


def test_plan_is_deterministic_under_input_order() -> None:
    obs = {("api", f"n{i}"): "ready" for i in range(5)}
    want = {"api": {f"n{i}": "drain" for i in range(5)}}
    rev_obs = dict(reversed(list(obs.items())))
    rev_want = {"api": dict(reversed(list(want["api"].items())))}
    assert plan(want, obs) == plan(rev_want, rev_obs)


STATE = """1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port
3 web 1 a 127.0.0.202 0 1 1 1 618 8 2 0 14 0 0 0 - 18081 - 0 0 - - 0
3 web 2 b 127.0.0.203 2 8 1 1 611 1 0 0 2 0 0 0 - 18082 - 0 0 - - 0
3 web 3 c 127.0.0.204 2 0 1 1 611 1 0 0 2 0 0 0 - 18083 - 0 0 - - 0

"""


def test_parse_servers_state() -> None:
    got = parse_servers_state(STATE)
    assert [(k, s.admin, s.operational, s.port) for k, s in got.items()] == [
        (("web", "a"), "maint", "down", 18081),
        (("web", "b"), "drain", "up", 18082),
        (("web", "c"), "ready", "up", 18083),
    ]
    assert parse_servers_state("") == {}
    with pytest.raises(ValueError):
        parse_servers_state("2\n")


def test_parse_show_proc() -> None:
    text = """#<PID>          <type>          <reloads>       <uptime>        <version>
11734           master          1 [failed: 0]   0d00h10m19s     2.6.12-1+deb12u4
# workers
4165            worker          0               0d00h00m01s     2.6.12-1+deb12u4
4100            worker          1               0d00h00m09s     2.6.12-1+deb12u4
# programs
"""
    procs = parse_show_proc(text)
    assert [(p.pid, p.kind, p.reloads, p.failed, p.old) for p in procs] == [
        (11734, "master", 1, 0, False),
        (4165, "worker", 0, None, False),
        (4100, "worker", 1, None, True),
    ]


def test_a_cut_backend_ends_the_sessions_of_a_server_leaving_rotation() -> None:
    """One writer (rule 6): the old writer's sessions end when the record moves."""
    desired = {"galera": {"db1": "maint", "db2": "ready", "db3": "maint"}}
    observed = {("galera", "db1"): "ready", ("galera", "db2"): "maint", ("galera", "db3"): "maint"}
    assert plan(desired, observed, cut=["galera"]).commands == (
        "set server galera/db1 state maint",
        "shutdown sessions server galera/db1",
        "set server galera/db2 state ready",
    )
    assert "shutdown" not in " ".join(plan(desired, observed).commands)  # other services
    drained = {("galera", "db1"): "drain", **{k: v for k, v in observed.items() if k[1] != "db1"}}
    assert "shutdown sessions server galera/db1" in plan(desired, drained, cut=["galera"]).commands
