"""Running-time accounting and the guardrail rules of domain.cost, without I/O."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from gpupod_operator.domain import cost
from gpupod_operator.domain.spec import LifetimeAction
from gpupod_operator.domain.status import Observed
from gpupod_operator.yotta import Pod

T0 = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
PRICE = Decimal("0.45")
NO_LIMITS = cost.Limits()


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def seen(status: str | None, price: str = "0.45") -> Observed:
    if status is None:
        return Observed(None)
    return Observed(Pod.model_validate({"id": "1", "status": status, "singleCardPrice": price}))


def apply(current: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """The status after a merge patch of `fields` (None clears)."""
    out = {**current, **fields}
    return {k: v for k, v in out.items() if v is not None}


def observe(
    current: dict[str, Any],
    status: str | None,
    when: float,
    limits: cost.Limits = NO_LIMITS,
    **kw: Any,
) -> tuple[dict[str, Any], cost.Projection]:
    p = cost.project(
        current, now=at(when), limits=limits, gpu_count=1, seen=seen(status), accrue=True, **kw
    )
    return apply(current, p.fields), p


# ---------------------------------------------------------------- the checkpoint


def test_an_interval_counts_only_when_the_pod_was_running_at_its_start() -> None:
    cp = cost.advance(cost.Checkpoint(), True, PRICE, at(0))
    assert (cp.running_seconds, cp.counted_until, cp.running) == (0, at(0), True)
    cp = cost.advance(cp, False, PRICE, at(10))  # RUNNING at 0: 0..10 counts
    assert (cp.running_seconds, cp.running) == (10, False)
    cp = cost.advance(cp, True, PRICE, at(25))  # paused at 10: 10..25 does not
    assert cp.running_seconds == 10
    cp = cost.advance(cp, True, PRICE, at(30))
    assert cp.running_seconds == 15
    assert cp.accrued == (PRICE * 15 / 3600).quantize(Decimal("0.000001"))


def test_a_repeated_or_older_observation_adds_nothing() -> None:
    cp = cost.advance(cost.advance(cost.Checkpoint(), True, PRICE, at(0)), True, PRICE, at(10))
    assert cost.advance(cp, True, PRICE, at(10)) == cp  # re-delivered
    assert cost.advance(cp, False, PRICE, at(5)) == cp  # an older view, written late


def test_fractions_of_seconds_are_never_lost_or_counted_twice() -> None:
    cp = cost.advance(cost.Checkpoint(), True, PRICE, at(0.7))
    for i in range(1, 101):
        cp = cost.advance(cp, True, PRICE, at(0.7 + i * 1.3))
    # From second 0 (0.7 truncated) to second 130 (130.7 truncated): exactly 130 s.
    assert cp.running_seconds == 130


def test_the_checkpoint_survives_the_status_round_trip() -> None:
    cp = cost.advance(cost.advance(cost.Checkpoint(), True, PRICE, at(0)), True, PRICE, at(3600))
    back = cost.Checkpoint.of({"cost": cp.render()})
    assert back == cp and cp.render()["accrued"] == "0.45"
    assert back.seconds_at(at(3700)) == 3700


# ---------------------------------------------------------------- the projection


def test_no_limits_and_nothing_observed_leaves_the_status_alone() -> None:
    p = cost.project({}, now=T0, limits=cost.Limits(), gpu_count=1, seen=seen("RUNNING"))
    assert p.fields == {}  # the reconciler: it never counts


def test_a_restart_keeps_counting_from_the_stored_checkpoint() -> None:
    status, _ = observe({}, "RUNNING", 0)
    status, _ = observe(status, "RUNNING", 600)
    assert status["cost"]["runningSeconds"] == 600
    # The operator was down for 20 minutes; the pod kept running.
    status, _ = observe(status, "RUNNING", 1800)
    assert status["cost"]["runningSeconds"] == 1800
    assert status["cost"]["countedUntil"] == "2026-11-27T12:30:00Z"


def test_without_a_lifetime_a_running_pod_is_rewritten_every_ten_minutes_at_most() -> None:
    status, _ = observe({}, "RUNNING", 0)
    same, _ = observe(status, "RUNNING", 599)
    assert same == status  # nothing to write: the checkpoint still holds
    moved, _ = observe(status, "RUNNING", 601)
    assert moved["cost"]["runningSeconds"] == 601
    flipped, _ = observe(status, "PAUSED", 30)  # a flip is always written
    assert flipped["cost"]["runningSeconds"] == 30 and flipped["cost"]["running"] is False


def test_concurrent_writers_count_an_interval_once() -> None:
    """Two projections from the same status; the second loses the precondition and is
    projected again onto the winner's status: it adds only what came after."""
    status, _ = observe({}, "RUNNING", 0, cost.Limits(max_run=3600))
    won, _ = observe(status, "RUNNING", 10, cost.Limits(max_run=3600))
    again, _ = observe(won, "RUNNING", 10, cost.Limits(max_run=3600))
    assert again["cost"] == won["cost"] and won["cost"]["runningSeconds"] == 10
    later, _ = observe(won, "RUNNING", 12, cost.Limits(max_run=3600))
    assert later["cost"]["runningSeconds"] == 12


def test_expires_at_and_one_warning_one_interval_before() -> None:
    limits = cost.Limits(max_run=20)
    status, p = observe({}, "RUNNING", 0, limits, warn_within=5)
    assert status["expiresAt"] == "2026-11-27T12:00:20Z" and p.expiring is None
    status, p = observe(status, "RUNNING", 10, limits, warn_within=5)
    assert p.expiring is None
    status, p = observe(status, "RUNNING", 16, limits, warn_within=5)
    assert p.expiring is not None and "runs out in 4s" in p.expiring and "paused" in p.expiring
    status, p = observe(status, "RUNNING", 18, limits, warn_within=5)
    assert p.expiring is None  # once
    assert "guard" not in status["cost"]
    status, p = observe(status, "RUNNING", 21, limits, warn_within=5)
    assert status["cost"]["guard"] == cost.LIFETIME and p.expiring is None


def test_a_paused_pod_has_no_expiry_and_its_time_does_not_count() -> None:
    limits = cost.Limits(max_run=20)
    status, _ = observe({}, "RUNNING", 0, limits)
    status, _ = observe(status, "PAUSED", 5, limits)
    assert "expiresAt" not in status
    status, _ = observe(status, "PAUSED", 500, limits)
    assert status["cost"]["runningSeconds"] == 5 and status["cost"]["accrued"] == "0.000625"
    status, _ = observe(status, "RUNNING", 501, limits)
    assert status["expiresAt"] == "2026-11-27T12:08:36Z"  # 15 s left from 501


def test_lifetime_paused_message_and_delete_keeps_terminated() -> None:
    spent = {"cost": {"runningSeconds": 20, "accrued": "0.01"}, "phase": "Running"}
    paused, _ = observe(spent, "PAUSED", 30, cost.Limits(max_run=20))
    assert "raise spec.lifetime.maxRunDuration" in paused["message"]
    delete = cost.Limits(max_run=20, action=LifetimeAction.DELETE)
    for status in ("TERMINATED", None):
        gone, _ = observe(spent, status, 30, delete)
        assert gone["phase"] == "Terminated" and "deleted" in gone["message"]


def test_price_above_the_cap_fails_the_gpupod_once_the_pod_is_gone() -> None:
    limits = cost.Limits(max_price=Decimal("0.30"))
    status, _ = observe({}, "INITIALIZE", 0, limits)
    assert status["cost"]["guard"] == cost.PRICE and "phase" not in status
    status["pricePerHour"] = "0.45"  # as status.project records it from the same observation
    for remote in ("TERMINATED", None):
        gone, _ = observe(status, remote, 5, limits)
        assert gone["phase"] == "Failed"
        assert "$0.45/h" in gone["message"] and "$0.30/h" in gone["message"]


@pytest.mark.parametrize(
    ("limits", "seconds", "price", "previous", "live", "want"),
    [
        (cost.Limits(), 10**6, "99", None, True, None),
        (cost.Limits(max_price=Decimal("0.45")), 0, "0.45", None, True, None),  # equal: allowed
        (cost.Limits(max_price=Decimal("0.44")), 0, "0.45", None, True, cost.PRICE),
        # Deleted for its price: raising the cap afterwards does not bring it back.
        (cost.Limits(max_price=Decimal("9")), 0, "0.45", cost.PRICE, False, cost.PRICE),
        (cost.Limits(max_price=Decimal("9")), 0, None, cost.PRICE, True, cost.PRICE),
        # A live pod under the cap (a Recreate onto a cheaper type) is fine again.
        (cost.Limits(max_price=Decimal("9")), 0, "0.45", cost.PRICE, True, None),
        (cost.Limits(max_run=20), 19, None, None, True, None),
        (cost.Limits(max_run=20), 20, None, None, True, cost.LIFETIME),
        # Raising maxRunDuration above the running time lifts the lifetime.
        (cost.Limits(max_run=60), 20, None, cost.LIFETIME, False, None),
    ],
)
def test_guard(
    limits: cost.Limits,
    seconds: int,
    price: str | None,
    previous: str | None,
    live: bool,
    want: str | None,
) -> None:
    assert cost.guard(limits, seconds, cost.decimal(price), previous, live) == want


def test_limits_from_the_spec() -> None:
    spec = {"lifetime": {"maxRunDuration": "1h30m", "action": "Delete"}, "maxPricePerHour": "2.5"}
    assert cost.Limits.of(spec) == cost.Limits(5400, LifetimeAction.DELETE, Decimal("2.5"))
    assert cost.Limits.of({"lifetime": {"maxRunDuration": "1.5s"}}).max_run == 2
    assert cost.Limits.of({}) == cost.Limits()


def test_dollars_are_decimal_strings() -> None:
    assert cost.dollars(Decimal("1.3")) == "1.30"
    assert cost.dollars(Decimal("0.000625")) == "0.000625"
    assert cost.dollars(Decimal("12")) == "12.00"


def test_accrued_delta_is_what_a_patch_adds() -> None:
    before = {"cost": {"accrued": "0.10"}}
    assert cost.accrued_delta(before, {"cost": {"accrued": "0.25"}}) == Decimal("0.15")
    assert cost.accrued_delta(before, {"phase": "Running"}) == 0
    assert cost.accrued_delta({}, {"cost": {"accrued": "0.05"}}) == Decimal("0.05")


def test_next_deadline_is_the_warning_then_the_expiry() -> None:
    status = {"expiresAt": "2026-11-27T12:00:20Z", "cost": {"running": True}}
    assert cost.next_deadline([status], T0, 5) == 16  # 20 - 5, plus a second
    assert cost.next_deadline([status], at(17), 5) == 4
    assert cost.next_deadline([status], at(22), 5) == 0  # overdue: the guard is not set yet
    spent = {**status, "cost": {"guard": cost.LIFETIME}}
    assert cost.next_deadline([spent, {}], T0, 5) is None
