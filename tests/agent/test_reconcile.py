"""Local reconcile (pure): the node-side half of the safety rules."""

from __future__ import annotations

from corral.core.reconcile import LocalInstance, reconcile


def kinds(actions: list) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    return [(a.kind, a.resource) for a in actions]


def test_starts_what_is_assigned_in_rank_order_and_stops_the_rest() -> None:
    actions = reconcile(
        {"db": "started", "api": "started"},
        {"old": LocalInstance(health="healthy")},
        may_hold_exclusive=True,
        exclusive=set(),
        rank={"db": 0, "api": 1, "old": 2},
    )
    assert kinds(actions) == [("stop", "old"), ("start", "db"), ("start", "api")]


def test_stale_lease_stops_exclusive_and_starts_none() -> None:
    actions = reconcile(
        {"vip": "started", "ap": "started", "web": "started"},
        {"ap": LocalInstance(health="healthy"), "web": LocalInstance(health="healthy")},
        may_hold_exclusive=False,
        exclusive={"vip", "ap"},
    )
    assert kinds(actions) == [("stop", "ap")]
    assert actions[0].reason.startswith("self-fence")


def test_unhealthy_or_failed_is_restarted_in_place() -> None:
    actions = reconcile(
        {"a": "started", "b": "started", "c": "started"},
        {
            "a": LocalInstance(health="unhealthy"),
            "b": LocalInstance(failed=True),
            "c": LocalInstance(health="starting"),
        },
        may_hold_exclusive=True,
        exclusive=set(),
    )
    assert kinds(actions) == [("restart", "a"), ("restart", "b")]


def test_maintenance_freezes_everything_for_that_resource() -> None:
    actions = reconcile(
        {"a": "started"},
        {"a": LocalInstance(health="unhealthy"), "gone": LocalInstance()},
        may_hold_exclusive=False,
        exclusive={"a", "gone"},
        frozen={"a", "gone"},
    )
    assert actions == []


def test_promotion_and_demotion() -> None:
    actions = reconcile(
        {"db": "promoted", "pg": "started"},
        {"db": LocalInstance(health="healthy"), "pg": LocalInstance(role="promoted")},
        may_hold_exclusive=True,
        exclusive={"db", "pg"},
    )
    assert kinds(actions) == [("demote", "pg"), ("promote", "db")]


def test_a_move_drains_a_self_fence_does_not() -> None:
    """Whether a stop first takes the instance out of the load balancers is decided here, not
    read from the wording of its reason: a self-fence must not wait for a drain (rule 1)."""
    moved = reconcile(
        {}, {"web": LocalInstance(health="healthy")}, may_hold_exclusive=True, exclusive=set()
    )
    fenced = reconcile(
        {"ap": "started"},
        {"ap": LocalInstance(health="healthy")},
        may_hold_exclusive=False,
        exclusive={"ap"},
    )
    assert [(a.kind, a.why.drain) for a in moved] == [("stop", True)]
    assert [(a.kind, a.why.drain) for a in fenced] == [("stop", False)]


def test_keep_without_start_while_the_store_has_no_leader() -> None:
    """A proof that no store member has a leader keeps what runs (may_keep_exclusive) but
    starts, restarts and promotes nothing exclusive (may_hold_exclusive is False)."""
    actions = reconcile(
        {"ap": "started", "vip": "started", "db": "promoted"},
        {"ap": LocalInstance(health="unhealthy"), "db": LocalInstance(health="healthy")},
        may_hold_exclusive=False,
        may_keep_exclusive=True,
        exclusive={"ap", "vip", "db"},
    )
    assert actions == []
