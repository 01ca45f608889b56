"""The health endpoints' answers as pure functions: what a load balancer is told."""

from __future__ import annotations

import math
from collections.abc import Callable

from hypothesis import given
from hypothesis import strategies as st

from corral.agent.snapshot import AgentSnapshot, InstanceView, take_stall
from corral.api import health

WEB = InstanceView("web", "web", None, "started", "healthy", "healthy", False, False)
DB = InstanceView("db", "db", None, "started", "healthy", "healthy", False, True)
PG = InstanceView("pg", "pg", None, "promoted", "healthy", "healthy", False, True)


def snap(*instances: InstanceView, **kw: object) -> AgentSnapshot:
    base: dict[str, object] = {
        "cluster": "c", "node": "n1", "mono": 100.0, "wall": 1.0e9, "stale_after": 2.5,
        "lease": 7, "lease_deadline": 101.5, "instances": instances,
        "resources": frozenset({"web", "db", "pg", "gone"}),
    }  # fmt: skip
    base.update(kw)
    return AgentSnapshot(**base)  # type: ignore[arg-type]


def no_guard(inst: InstanceView) -> float | None:
    return None


def ask(
    s: AgentSnapshot | None,
    res: str,
    role: health.Role = None,
    now: float = 100.5,
    guard: Callable[[InstanceView], float | None] = no_guard,
) -> health.Answer:
    return health.resource_health(s, res, role, now, guard)


def test_a_healthy_instance_is_200_and_says_so() -> None:
    code, body = ask(snap(WEB), "web")
    assert code == 200 and body["health"] == "healthy" and body["stale"] is False


def test_no_instance_unhealthy_or_unknown_resource_are_refused_with_a_reason() -> None:
    code, body = ask(snap(WEB), "db")
    assert code == 503 and "no instance of db runs here" in body["reason"]
    sick = InstanceView("web", "web", None, "started", "unhealthy", "unhealthy", False, False,
                        "HTTP 500")  # fmt: skip
    code, body = ask(snap(sick), "web")
    assert code == 503 and "unhealthy (HTTP 500)" in body["reason"]
    code, body = ask(snap(WEB), "nosuch")
    assert code == 404 and "nosuch" in body["reason"]


def test_a_draining_instance_is_taken_out_of_the_pool() -> None:
    draining = InstanceView("web", "web", None, "started", "healthy", "draining", False, False)
    assert ask(snap(draining), "web")[0] == 503


def test_role_promoted_needs_the_promoted_role() -> None:
    started = InstanceView("pg", "pg", None, "started", "healthy", "healthy", False, False)
    assert ask(snap(started), "pg", "promoted")[0] == 503
    assert ask(snap(started), "pg", "active")[0] == 200
    assert ask(snap(PG), "pg", "promoted")[0] == 200


def test_a_stale_snapshot_is_503_stale_whatever_it_says() -> None:
    code, body = ask(snap(WEB), "web", now=100.0 + 2.6)
    assert code == 503 and body["stale"] is True and "stalled" in body["reason"]
    assert ask(None, "web")[1]["stale"] is True
    assert health.liveness(snap(WEB), 103.0)[0] == 503
    assert health.liveness(snap(WEB), 101.0)[0] == 200


def test_rule1_an_exclusive_instance_is_never_200_after_the_lease_deadline() -> None:
    assert ask(snap(DB), "db", now=101.4)[0] == 200
    code, body = ask(snap(DB), "db", now=101.5)
    assert code == 503 and "rule 1" in body["reason"]
    assert ask(snap(WEB), "web", now=101.6)[0] == 200  # active-active: no lease needed


def test_rule1_the_guards_record_counts_when_the_guard_lists_the_instance() -> None:
    guarded = snap(DB, guarded=True)
    assert ask(guarded, "db", now=101.0, guard=lambda i: 100.9)[0] == 503  # guard: earlier
    assert ask(guarded, "db", now=101.6, guard=lambda i: 102.0)[0] == 200  # a later renewal
    assert ask(guarded, "db", now=100.1, guard=lambda i: math.nan)[0] == 503  # no record


@given(
    now=st.floats(99, 110),
    deadline=st.floats(90, 110) | st.just(-math.inf),
    guard=st.none() | st.floats(90, 110) | st.just(math.nan),
    age_bound=st.floats(0.1, 5),
)
def test_rule1_never_200_for_an_exclusive_role_after_the_deadline_that_counts(
    now: float, deadline: float, guard: float | None, age_bound: float
) -> None:
    s = snap(DB, PG, guarded=True, lease_deadline=deadline, stale_after=age_bound)
    for res, role in (("db", None), ("db", "active"), ("pg", "promoted")):
        code, _ = ask(s, res, role, now, lambda i: guard)  # type: ignore[arg-type]
        counts = deadline if guard is None else guard
        if code == 200:
            assert now < counts and now - s.mono <= age_bound


def test_readiness_needs_a_lease_and_the_store() -> None:
    assert health.readiness(snap(), 100.5)[0] == 200
    assert health.readiness(snap(lease=None), 100.5)[0] == 503
    code, body = health.readiness(snap(store_ok=False, store_error="no leader"), 100.5)
    assert code == 503 and "no leader" in body["reason"]
    assert "deadline" in health.readiness(snap(), 101.6)[1]["reason"]


def test_the_stall_hook_reads_once_and_refuses_nonsense(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert take_stall(tmp_path) == 0.0
    (tmp_path / "stall-loop").write_text("1.5\n")
    assert take_stall(tmp_path) == 1.5
    assert take_stall(tmp_path) == 0.0  # one request, one stall
    for bad in ("x", "nan", "-3", "inf", ""):
        (tmp_path / "stall-loop").write_text(bad)
        assert take_stall(tmp_path) == 0.0
