"""The alerts' pure core (:mod:`corral.core.alerts`): which events are alerts, the filters,
Pacemaker's environment, the retry schedule, who does what with a duty; and the spec's
``alerts:`` section, with the errors an operator reads."""

from __future__ import annotations

import pytest

from corral.actions import ActionError, alert_test
from corral.core import alerts as core
from corral.core.health import CheckOutcome, HealthTracker
from corral.spec import SpecError, load_spec_text
from corral.spec.alerts import AlertSink

FENCED = core.Facts(
    "fence", "ctl1", "", "ctl2 fenced by ipmi (off, 0.40s): lost", 1700000000.25, "ctl2"
)
FENCE_FAILED = core.Facts("fence", "ctl1", "", "fencing ctl2 failed, waiting", 1.0, "ctl2")
STARTED = core.Facts("start", "ctl2", "web", "started web: assigned", 2.0)
FAILED = core.Facts("failed", "ctl2", "web", "stop of web failed: boom", 3.0)
UNHEALTHY = core.Facts("health", "ctl2", "web", "web is unhealthy: HTTP 500", 4.0)
HEALTHY = core.Facts("health", "ctl2", "web", "web is healthy", 5.0)
LEASE = core.Facts("lease", "ctl3", "", "node lease lost (expired)", 6.0)


def sink(**fields: object) -> AlertSink:
    return AlertSink.model_validate({"webhook": "http://127.0.0.1:9/h", **fields})


def test_events_map_to_pacemaker_kinds() -> None:
    fence = core.classify(FENCED)
    assert fence is not None
    assert (fence.kind, fence.node, fence.task, fence.rc, fence.severity) == (
        "fencing", "ctl2", "off", 0, "warning",
    )  # fmt: skip
    failed = core.classify(FENCE_FAILED)
    assert failed is not None and (failed.rc, failed.severity) == (1, "critical")
    start = core.classify(STARTED)
    assert start is not None and (start.kind, start.task, start.rc, start.desc) == (
        "resource", "start", 0, "ok",
    )  # fmt: skip
    stop_failed = core.classify(FAILED)
    assert stop_failed is not None and (stop_failed.task, stop_failed.rc) == ("stop", 1)
    down = core.classify(UNHEALTHY)
    assert down is not None and (down.task, down.rc, down.desc) == ("monitor", 7, "not running")
    up = core.classify(HEALTHY)
    assert up is not None and (up.rc, up.severity) == (0, "info")
    node = core.classify(LEASE)
    assert node is not None and (node.kind, node.node, node.desc) == ("node", "ctl3", "lost")
    for not_alert in ("assign", "audit", "spec", "waiting", "record"):
        assert core.classify(core.Facts(not_alert, "ctl1", "web", "x", 1.0)) is None


def test_a_monitor_that_keeps_passing_writes_no_event_so_never_alerts() -> None:
    """The agent writes a ``health`` event on a transition only (``Actuator``): 50 passes
    make one (starting -> healthy), five failures one more (healthy -> unhealthy)."""
    tracker = HealthTracker(rise=2, fall=2, grace=0.0, started_at=0.0)
    ok, bad = CheckOutcome("ok", "fine"), CheckOutcome("critical", "HTTP 500")
    ups = [tracker.judge(ok, now=float(t), lag=0.0).transition for t in range(50)]
    assert [(t.old, t.new) for t in ups if t] == [("starting", "healthy")]
    downs = [tracker.judge(bad, now=50.0 + t, lag=0.0).transition for t in range(5)]
    assert [(t.old, t.new) for t in downs if t] == [("healthy", "unhealthy")]


def test_filters_kind_resource_node_and_least_severity() -> None:
    start, fence = core.classify(STARTED), core.classify(FENCED)
    assert start is not None and fence is not None
    assert core.wants("s", sink(), start) and core.wants("s", sink(), fence)
    assert not core.wants("s", sink(kinds=["fencing"]), start)
    assert core.wants("s", sink(resources=["web"]), start)
    assert not core.wants("s", sink(resources=["db"]), start)
    assert not core.wants("s", sink(resources=["web"]), fence)  # not a resource alert
    assert core.wants("s", sink(nodes=["ctl2"]), fence)  # the fenced node, not the fencer
    assert not core.wants("s", sink(nodes=["ctl1"]), fence)
    assert not core.wants("s", sink(severity="warning"), start)
    assert core.wants("s", sink(severity="warning"), fence)
    test = core.classify(core.Facts(core.TEST_KIND, "ctl1", "s", "test", 1.0))
    assert test is not None
    assert core.wants("s", sink(kinds=["resource"], severity="critical"), test)
    assert not core.wants("other", sink(), test)


def test_the_crm_alert_environment() -> None:
    fence = core.classify(FENCED)
    assert fence is not None
    env = core.crm_env(fence, "/tmp/log", 7, {"ctl1": 1, "ctl2": 2}, "0.1.0", 1700000001.0)
    assert env["CRM_alert_kind"] == "fencing" and env["CRM_alert_node"] == "ctl2"
    assert (env["CRM_alert_task"], env["CRM_alert_rc"]) == ("off", "0")
    assert env["CRM_alert_timestamp_epoch"] == "1700000000"
    assert env["CRM_alert_timestamp_usec"] == "250000"
    assert env["CRM_alert_timestamp"] == "22:13:20.250000"
    assert env["CRM_alert_recipient"] == "/tmp/log" and env["CRM_alert_node_sequence"] == "7"
    assert env["CRM_notify_kind"] == "fencing"  # the older prefix too
    assert "CRM_alert_rsc" not in env and "CRM_alert_nodeid" not in env
    start = core.classify(STARTED)
    assert start is not None
    env = core.crm_env(start, "", 1, {}, "0.1.0", 2.0)
    assert (env["CRM_alert_rsc"], env["CRM_alert_task"], env["CRM_alert_interval"]) == (
        "web", "start", "0",
    )  # fmt: skip
    assert (env["CRM_alert_target_rc"], env["CRM_alert_status"]) == ("0", "0")
    node = core.classify(LEASE)
    assert node is not None
    assert core.crm_env(node, "", 1, {"ctl3": 3}, "v", 0.0)["CRM_alert_nodeid"] == "3"


def test_retries_back_off_exponentially_to_the_cap_then_give_up() -> None:
    s = sink(attempts=6, backoff="1s", max_backoff="5s")
    waits, tried, now = [], 0, 100.0
    while True:
        nxt = core.after_try(False, tried, s, now)
        if nxt.verdict != "retry":
            break
        waits.append(nxt.at - now)
        tried, now = nxt.tried, nxt.at
    assert waits == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert (nxt.verdict, nxt.tried) == ("failed", 6)
    assert core.after_try(True, 3, s, now) == core.Next("delivered", 4)
    exec_sink = AlertSink.model_validate({"exec": "/bin/true"})
    assert exec_sink.tries == 1 and sink().tries == 10  # Pacemaker: fire and forget
    assert core.after_try(False, 0, exec_sink, 0.0).verdict == "failed"
    assert core.backoff(10_000, 1.0, 60.0) == 60.0  # no overflow


def test_the_dedup_id_is_the_same_from_any_agent() -> None:
    assert core.dedup_id("c1", "hook", "0001-ctl1") == "c1/hook/0001-ctl1"
    start = core.classify(STARTED)
    assert start is not None
    body = core.webhook_body("c1", "hook", "0001-ctl1", start, "why")
    assert body["id"] == "c1/hook/0001-ctl1" and body["kind"] == "resource"


def test_who_does_what_with_a_duty() -> None:
    mine = core.DutyView("a", 10, 5.0, True)
    regs = {"a": 10, "b": 11}
    assert core.duty_action(mine, "a", 10, regs, 6.0) == "send"
    assert core.duty_action(mine, "a", 10, regs, 4.0) == "wait"
    assert core.duty_action(mine, "b", 11, regs, 6.0) == "leave"  # its owner lives
    assert core.duty_action(mine, "b", 11, {"b": 11}, 6.0) == "take"  # owner's lease gone
    assert core.duty_action(mine, "b", 11, {"a": 12, "b": 11}, 6.0) == "take"  # re-registered
    assert core.duty_action(mine, "a", 12, {"a": 12}, 6.0) == "take"  # own earlier life
    assert core.duty_action(mine, "b", None, {}, 6.0) == "leave"  # unregistered: nothing
    gone_sink = core.DutyView("a", 10, 0.0, False)
    assert core.duty_action(gone_sink, "a", 10, regs, 6.0) == "drop"


def test_new_duties_follow_create_revisions_and_filters() -> None:
    sinks = {"all": sink(), "fence": sink(kinds=["fencing"])}
    events = [("e1", 5, STARTED), ("e2", 9, FENCED), ("e3", 12, core.Facts("spec", "a", "", "", 1))]
    assert core.new_duties(sinks, events, 5) == [("all", "e2"), ("fence", "e2")]
    assert core.new_duties(sinks, events, 0)[0] == ("all", "e1")
    keys = [f"/c/alerts/log/s/{i:04d}-n".encode() for i in range(10)]
    assert core.to_trim(keys, 0, 8) == keys[:2] and core.to_trim(keys, 0, 20) == []


@pytest.mark.parametrize(
    ("sink_yaml", "where", "says"),
    [
        ("{exec: /bin/true, webhook: 'http://x/'}", "alerts.s", "exactly one of"),
        ("{}", "alerts.s", "exactly one of"),
        ("{webhook: 'ftp://x/'}", "alerts.s.webhook", "http:// or https://"),
        ("{webhook: 'http://x/', kinds: [dns]}", "alerts.s.kinds", "node"),
        ("{webhook: 'http://x/', severity: loud}", "alerts.s.severity", "critical"),
        ("{webhook: 'http://x/', timeout: -1s}", "alerts.s.timeout", "duration"),
        ("{webhook: 'http://x/', nodes: [ctl9]}", "alerts.s.nodes", "no node named 'ctl9'"),
        ("{webhook: 'http://x/', resources: [db]}", "alerts.s.resources", "no resource"),
        ("{webhook: 'http://x/', colour: red}", "alerts.s.colour", "unknown field"),
    ],
)
def test_bad_alert_specs_name_the_field(sink_yaml: str, where: str, says: str) -> None:
    text = (
        "cluster: c1\nnodes: {ctl1: {address: 198.18.0.11}}\n"
        'resources: {web: {process: "sleep 1"}}\n'
        f"alerts:\n  s: {sink_yaml}\n"
    )
    with pytest.raises(SpecError) as caught:
        load_spec_text(text)
    message = str(caught.value)
    assert where in message and says in message and ":5:" in message, message


def test_a_good_alerts_section_loads() -> None:
    spec = load_spec_text(
        "cluster: c1\nnodes: {ctl1: {address: 198.18.0.11}}\n"
        "alerts:\n"
        "  file: {exec: /usr/share/pacemaker/alerts/alert_file.sh.sample, recipient: /tmp/x}\n"
        "  hook: {webhook: 'http://127.0.0.1:9000/', kinds: [fencing, node], backoff: 500ms}\n"
    )
    assert spec.alerts["file"].tries == 1 and spec.alerts["file"].timeout == 30.0
    assert spec.alerts["hook"].backoff == 0.5 and spec.alerts["hook"].tries == 10


def test_a_test_alert_names_a_sink_of_the_spec() -> None:
    spec = load_spec_text(
        "cluster: c1\nnodes: {ctl1: {address: 198.18.0.11}}\n"
        "alerts: {hook: {webhook: 'http://127.0.0.1:9/'}}\n"
    )
    with pytest.raises(ActionError, match="no alert sink 'nosuch' \\(known: hook\\)") as caught:
        alert_test(spec, "nosuch")
    assert caught.value.field == "sink"
    with pytest.raises(ActionError, match="timeout"):
        alert_test(spec, "hook", timeout=0)
    assert alert_test(spec, "hook").said == "alert test: hook"


def test_the_controllers_node_events_are_node_alerts_about_their_target() -> None:
    lost = core.classify(core.Facts("node", "ctl1", "", "lost: ctl2 is unclean (...)", 7.0, "ctl2"))
    back = core.classify(
        core.Facts("node", "ctl1", "", "member: ctl2 is online (...)", 8.0, "ctl2")
    )
    assert lost is not None and back is not None
    assert (lost.kind, lost.node, lost.desc, lost.severity) == ("node", "ctl2", "lost", "critical")
    assert (back.kind, back.node, back.desc, back.severity) == ("node", "ctl2", "member", "info")
