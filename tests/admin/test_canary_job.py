"""The CANARY job through the one job API (JobRegistry): started, shown step by step,
audited with its decision, refused without touching the traffic, cancelled (rolled back)."""

from __future__ import annotations

import pytest

from tests.support.canary_traffic import Pool, World
from webapp.admin.audit import AuditLog
from webapp.admin.canary import CanaryPlan
from webapp.admin.canary_job import CANARY, CanaryDetail, CanaryRequest, canary_split
from webapp.admin.errors import InvalidCanaryPlan, JobBusy
from webapp.admin.jobs import JobRegistry
from webapp.admin.messages import admin_error_message
from webapp.cluster.errors import InvalidPool
from webapp.cluster.pools import Backend

PLAN = CanaryPlan(soak_s=30, min_requests=10)


@pytest.fixture
def audit(tmp_path):
    return AuditLog.from_url(f"sqlite:///{tmp_path / 'audit.db'}")


def _request(world: World, plan: CanaryPlan = PLAN, **changes) -> CanaryRequest:
    fields = {"model": "mistral-7b", "stable": "mistral-a", "canary": "mistral-b", "plan": plan,
              "set_weights": world.set_weights, "scrape": world.scrape, "sleep": world.sleep,
              "clock": lambda: world.now} | changes  # fmt: skip
    return CanaryRequest(**fields)


def _audited(audit):
    return [(e.actor, e.action, e.result) for e in reversed(audit.recent())]


def test_a_good_canary_job_shows_every_step_and_is_audited_promoted(audit):
    world = World()
    job = JobRegistry().start(CANARY, _request(world), actor="ann@example.com", audit=audit)
    assert job.wait(20)
    view = job.view()
    assert view.error is None and view.result.promoted
    detail: CanaryDetail = view.detail
    assert [s.share for s in detail.steps] == [5, 25, 50, 100]
    assert detail.weights == (0, 100) and detail.result is view.result
    assert view.messages[0] == (
        "Canary of mistral-7b: mistral-b will take 5%, 25%, 50%, 100% of the traffic."
    )
    assert "mistral-b now takes 5% of mistral-7b's traffic, mistral-a 95%." in view.messages
    assert any(m.startswith("Step 1 (5% on the canary): The canary's error rate 0.0%")
               for m in view.messages)  # fmt: skip
    assert view.messages[-1] == "Promoted: mistral-b serves all of mistral-7b's traffic."
    assert _audited(audit) == [
        ("ann@example.com", "canary.start", "started"),
        ("ann@example.com", "canary.result", "promoted"),
    ]
    end = audit.recent()[0]
    assert end.target == "mistral-7b: mistral-a -> mistral-b"
    assert end.details["canary_weight"] == 100 and end.details["steps"] == [5, 25, 50, 100]


def test_a_slow_canary_job_rolls_back_and_the_audit_keeps_the_decision(audit):
    world = World(canary=Pool(ttft_s=0.9), stable=Pool(ttft_s=0.3))
    job = JobRegistry().start(CANARY, _request(world), actor="ann@example.com", audit=audit)
    assert job.wait(20)
    result = job.view().result
    assert result.outcome == "rolled_back" and world.shares == [5, 0]
    assert job.view().detail.weights == (100, 0)
    assert job.view().messages[-3:] == (
        "Rolling back: all of mistral-7b's traffic goes to mistral-a again.",
        f"Step 1 (5% on the canary): {result.reason}",
        "Rolled back: mistral-b takes none of mistral-7b's traffic.",
    )
    end = audit.recent()[0]
    assert (end.action, end.result) == ("canary.result", "rolled_back")
    assert end.details["decision"].startswith("TTFT p95 of the canary 988 ms is 2.0×")
    assert end.details["stable_weight"] == 100


@pytest.mark.parametrize(
    ("changes", "error", "words"),
    [
        ({"plan": CanaryPlan(steps=(5, 50))}, InvalidCanaryPlan, "100% of the traffic"),
        ({"plan": CanaryPlan(max_ttft_ratio=0)}, InvalidCanaryPlan, "TTFT ratio must be"),
        ({"plan": None}, InvalidCanaryPlan, "needs a plan"),
        ({"canary": "Mistral_B"}, InvalidPool, "pool name 'Mistral_B' is not allowed"),
        ({"canary": "mistral-a"}, InvalidPool, "another pool than the stable one"),
    ],
)
def test_a_bad_request_is_refused_before_any_traffic_moves(audit, changes, error, words):
    world = World()
    reg = JobRegistry()
    with pytest.raises(error) as refused:
        reg.start(CANARY, _request(world, **changes), actor="ann@example.com", audit=audit)
    assert words in admin_error_message(refused.value)
    assert world.shares == [] and reg.current("canary") is None
    assert _audited(audit) == [("ann@example.com", "canary.start", "refused")]


def test_a_second_canary_is_refused_and_cancel_rolls_the_first_back(audit):
    world = World()
    reg = JobRegistry()
    waiting = _request(world, sleep=None, plan=CanaryPlan(soak_s=600))  # soaks until cancelled
    job = reg.start(CANARY, waiting, actor="ann@example.com", audit=audit)
    with pytest.raises(JobBusy) as busy:
        reg.start(CANARY, _request(World()), actor="bob@example.com", audit=audit)
    assert "ann@example.com is already changing mistral-7b" in admin_error_message(busy.value)
    assert reg.cancel(CANARY, "bob@example.com", audit)
    assert job.wait(20)
    view = job.view()
    assert view.result.outcome == "cancelled" and view.detail.weights == (100, 0)
    assert world.shares == [5, 0]
    assert "Cancel requested by bob@example.com; sending all traffic back to the stable pool." in (
        view.messages
    )
    assert _audited(audit) == [
        ("ann@example.com", "canary.start", "started"),
        ("bob@example.com", "canary.start", "refused"),
        ("bob@example.com", "canary.cancel", "requested"),
        ("ann@example.com", "canary.result", "cancelled"),
    ]


def test_a_weight_change_that_fails_is_audited_as_an_error_after_rolling_back(audit):
    world = World()

    def set_weights(share: int) -> None:
        world.shares.append(share)
        if share == 50:
            raise InvalidPool("weights", "The traffic shares of 'mistral-7b' add up to 90%")

    req = _request(world, set_weights=set_weights)
    job = JobRegistry().start(CANARY, req, actor="ann@example.com", audit=audit)
    assert job.wait(20)
    assert isinstance(job.view().error, InvalidPool)
    assert world.shares == [5, 25, 50, 0]
    end = audit.recent()[0]
    assert (end.action, end.result) == ("canary.result", "error")
    assert "add up to 90%" in end.details["reason"]


@pytest.mark.parametrize(
    ("share", "want"),
    [
        (5, (Backend("mistral-a", 95), Backend("mistral-b", 5))),
        (0, (Backend("mistral-a", 100), Backend("mistral-b", 0))),
        (100, (Backend("mistral-a", 0), Backend("mistral-b", 100))),
    ],
)
def test_canary_split_is_the_backends_the_fleet_writes(share, want):
    assert canary_split("mistral-7b", "mistral-a", "mistral-b", share) == want


@pytest.mark.parametrize(
    ("share", "words"), [(101, "must be 0 to 100"), (-5, "must be 0 to 100"), (5.5, "0 to 100")]
)
def test_canary_split_refuses_a_share_outside_0_to_100(share, words):
    with pytest.raises(InvalidPool, match=words):
        canary_split("mistral-7b", "mistral-a", "mistral-b", share)
