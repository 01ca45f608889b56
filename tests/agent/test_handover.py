"""The guard's side of a lease handover (:class:`corral.agent.guard.Renewals`), with etcd's
answers replaced by a scripted renewal; the real path is in ``test_cluster.py``."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest

from corral.agent import handover as ho
from corral.agent.guard import Renewals
from corral.core.guard import Listing

TTL, MARGIN, INTERVAL = 3, 1.0, 0.4
HANDOVER = ho.Handover(
    node="n1", lease=0xABC, token=7, until=100.0, endpoints=("http://127.0.0.1:1",),
    ttl=TTL, margin=MARGIN, interval=INTERVAL,
)  # fmt: skip
OLD = Listing(node="n1", deadline=10.0, exclusive=("vip",), token=7)  # the stopped agent's


class Etcd:
    """Scripted answers to the guard's renewals: a TTL, or an exception to raise."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.answers: list[int | Exception] = []
        self.calls = 0
        monkeypatch.setattr(ho, "renew", self.renew)

    def renew(self, handover: ho.Handover, timeout: float) -> int:
        self.calls += 1
        answer = self.answers.pop(0) if self.answers else TTL
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture
def etcd(monkeypatch: pytest.MonkeyPatch) -> Etcd:
    return Etcd(monkeypatch)


def renewals(tmp_path: Path, handover: ho.Handover | None = HANDOVER) -> Renewals:
    if handover is not None:
        ho.write(tmp_path, handover)
    return Renewals(tmp_path, tmp_path / "guard.log")


def test_the_guard_renews_and_guards_the_handed_over_listing_by_its_own_renewals(
    tmp_path: Path, etcd: Etcd
) -> None:
    r = renewals(tmp_path)
    assert r.step(OLD, 10.5).deadline == 10.5 + TTL - MARGIN  # renewed at 10.5
    assert r.step(OLD, 10.7).deadline == 10.5 + TTL - MARGIN  # not due yet: no renewal
    assert etcd.calls == 1
    assert r.step(OLD, 10.9).deadline == 10.9 + TTL - MARGIN
    assert r.pause(10.9) == pytest.approx(INTERVAL)


def test_another_lifetimes_listing_is_not_extended(tmp_path: Path, etcd: Etcd) -> None:
    new = replace(OLD, token=8, deadline=11.0)  # the next agent's, under its own renewals
    assert renewals(tmp_path).step(new, 10.5).deadline == 11.0


def test_a_renewal_that_fails_does_not_move_the_deadline_and_is_logged_once(
    tmp_path: Path, etcd: Etcd
) -> None:
    r = renewals(tmp_path)
    etcd.answers = [TTL, OSError("refused"), OSError("refused")]
    r.step(OLD, 10.0)
    assert r.step(OLD, 10.4).deadline == 10.0 + TTL - MARGIN
    assert r.step(OLD, 10.8).deadline == 10.0 + TTL - MARGIN
    assert (tmp_path / "guard.log").read_text().count("refused") == 1


def test_a_lease_etcd_no_longer_knows_ends_the_handover(tmp_path: Path, etcd: Etcd) -> None:
    r = renewals(tmp_path)
    etcd.answers = [TTL, 0]
    r.step(OLD, 10.0)
    assert r.step(OLD, 10.4).deadline == 10.0 + TTL - MARGIN  # the last accepted one
    r.step(OLD, 10.8)
    r.step(OLD, 20.0)
    assert etcd.calls == 2 and r.pause(20.0) == math.inf
    assert "is gone" in (tmp_path / "guard.log").read_text()


def test_no_renewal_after_the_window(tmp_path: Path, etcd: Etcd) -> None:
    r = renewals(tmp_path, replace(HANDOVER, until=10.2))
    r.step(OLD, 10.0)
    assert r.step(OLD, 10.4).deadline == 10.0 + TTL - MARGIN  # then nobody renews: it passes
    assert etcd.calls == 1


def test_the_last_accepted_renewal_still_guards_after_the_next_agent_took_over(
    tmp_path: Path, etcd: Etcd
) -> None:
    r = renewals(tmp_path)
    r.step(OLD, 10.0)
    ho.remove(tmp_path)  # the next agent took the lease (its listing may come a read later)
    assert r.step(OLD, 10.5).deadline == 10.0 + TTL - MARGIN  # not the stale 10.0
    assert etcd.calls == 1


@pytest.mark.parametrize(
    "text",
    [
        "",
        "[]",
        '{"node": "n1"}',
        HANDOVER.dump().replace('"lease": 2748', '"lease": true'),
        HANDOVER.dump().replace('"ttl": 3', '"ttl": 0'),
        HANDOVER.dump().replace('"endpoints": ["http://127.0.0.1:1"]', '"endpoints": []'),
    ],
)
def test_anything_but_a_whole_handover_file_is_none(text: str) -> None:
    assert ho.Handover.parse(text) is None


def test_no_file_no_renewal(tmp_path: Path, etcd: Etcd) -> None:
    r = renewals(tmp_path, None)
    assert r.step(OLD, 10.5) == OLD
    assert etcd.calls == 0 and r.pause(10.5) == math.inf
