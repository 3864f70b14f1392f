"""domain/quota.py: fits or waits, reservations reused after a crash, oldest first, prices."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from gpupod_operator.domain import quota as dq

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
PRICES = {"RTX": Decimal("0.45")}


def body(
    hard: dict[str, Any], reservations: list[dict[str, Any]] | None = None, **status: Any
) -> dict[str, Any]:
    return {
        "metadata": {"name": "q", "namespace": "ns", "resourceVersion": "7"},
        "spec": {"hard": hard},
        "status": {"reservations": list(reservations or []), **status},
    }


def held(
    uid: str, gpus: int = 1, price: str = "0.45", since: str = "2026-12-01T11:00:00Z"
) -> dict[str, Any]:
    return {
        "uid": uid,
        "name": f"pod-{uid}",
        "gpus": gpus,
        "pods": 1,
        "pricePerHour": price,
        "since": since,
    }


def request(
    uid: str, gpus: int = 1, created: str = "2026-12-01T10:00:00Z", price: str | None = "0.45"
) -> dq.Request:
    return dq.Request(uid, f"pod-{uid}", created, "RTX", gpus, Decimal(price) if price else None)


def quota(hard: dict[str, Any], *reservations: dict[str, Any], **status: Any) -> dq.Quota:
    return dq.Quota.parse(body(hard, list(reservations), **status))


def test_a_request_that_fits_is_one_new_status_with_used_recomputed() -> None:
    q = quota({"gpus": 4}, held("a"), held("b", gpus=2))
    outcome = dq.admit(q, request("c"), now=NOW, prices=PRICES)
    assert isinstance(outcome, dq.Admitted) and outcome.status is not None
    assert outcome.status["used"] == {"gpus": 4, "pods": 3, "pricePerHour": "1.35"}
    new = [r for r in outcome.status["reservations"] if r["uid"] == "c"]
    assert new == [
        {
            "uid": "c",
            "name": "pod-c",
            "gpus": 1,
            "pods": 1,
            "pricePerHour": "0.45",
            "estimated": True,
            "since": "2026-12-01T12:00:00Z",
        }
    ]
    assert outcome.status["prices"] == {"RTX": "0.45"}


def test_a_request_that_does_not_fit_waits_with_used_and_hard_in_the_message() -> None:
    q = quota({"gpus": 4, "pods": 10}, *(held(u) for u in "abcd"))
    outcome = dq.admit(q, request("e"), now=NOW)
    assert outcome == dq.Refused(
        "QuotaExceeded",
        "GpuQuota q is full: gpus 4/4 used (this GpuPod needs 1), pods 4/10 used (this GpuPod "
        "needs 1); waiting until capacity frees (oldest first)",
    )


@pytest.mark.parametrize(
    ("hard", "fits"),
    [
        ({"gpus": 3}, True),
        ({"gpus": 2}, False),
        ({"pods": 2}, True),
        ({"pods": 1}, False),
        ({"pricePerHour": "0.90"}, True),
        ({"pricePerHour": "0.89"}, False),
        ({"gpus": 0}, False),
    ],
)
def test_each_dimension_is_used_plus_request_at_most_hard(hard: dict[str, Any], fits: bool) -> None:
    q = quota(hard, held("a"))
    assert (
        isinstance(dq.admit(q, request("b", gpus=2 if "gpus" in hard else 1)), dq.Admitted) is fits
    )


def test_a_reservation_already_held_is_reused_never_counted_twice() -> None:
    """After a crash between the admission and the create: admitted, nothing to write, even
    if the quota was lowered meanwhile."""
    q = quota({"gpus": 1}, held("a"), held("b"))
    assert dq.admit(q, request("a")) == dq.Admitted(None)


def test_a_recreate_with_another_gpu_count_is_admitted_without_its_old_reservation() -> None:
    q = quota({"gpus": 4}, held("a", gpus=2), held("b", gpus=2))
    outcome = dq.admit(q, request("a", gpus=4), now=NOW)
    assert isinstance(outcome, dq.Refused)  # 2 (b) + 4 > 4, its own 2 not counted
    assert "gpus 2/4 used (this GpuPod needs 4)" in outcome.message
    outcome = dq.admit(q, request("a", gpus=1), now=NOW)
    assert isinstance(outcome, dq.Admitted) and outcome.status is not None
    assert outcome.status["used"]["gpus"] == 3


def test_older_waiting_requests_go_first_but_one_that_cannot_fit_blocks_nobody() -> None:
    q = quota({"gpus": 4}, held("a", gpus=2))
    older_small = request("old", created="2026-12-01T09:00:00Z")
    older_big = request("big", gpus=4, created="2026-12-01T08:00:00Z")  # cannot fit at all now
    young = request("young", gpus=1, created="2026-12-01T10:00:00Z")
    # 2 used + old(1) = 3; young(1) still fits after it.
    assert isinstance(dq.admit(q, young, [older_small, older_big]), dq.Admitted)
    # 2 used + old(1) + young2(2) > 4: young2 waits for the older one.
    young2 = request("young2", gpus=2, created="2026-12-01T10:00:00Z")
    outcome = dq.admit(q, young2, [older_small, older_big])
    assert isinstance(outcome, dq.Refused) and "older GpuPods waiting" in outcome.message
    # The older one itself is admitted: nobody older is waiting.
    assert isinstance(dq.admit(q, older_small, [young2, older_big]), dq.Admitted)
    # Same creationTimestamp: the UID breaks the tie, so every process orders alike.
    twin_a = request("a2", created="2026-12-01T10:00:00Z")
    twin_b = request("b2", created="2026-12-01T10:00:00Z")
    full = quota({"gpus": 3}, held("a", gpus=2))
    assert isinstance(dq.admit(full, twin_b, [twin_a]), dq.Refused)
    assert isinstance(dq.admit(full, twin_a, [twin_b]), dq.Admitted)


def test_an_unknown_price_is_refused_only_where_the_price_is_limited() -> None:
    unknown = request("x", price=None)
    outcome = dq.admit(quota({"pricePerHour": "5"}), unknown)
    assert isinstance(outcome, dq.Refused)
    assert "no price is known yet for GPU type RTX" in outcome.message
    assert isinstance(dq.admit(quota({"gpus": 4}), unknown), dq.Admitted)


def test_estimate_is_the_last_quote_per_gpu_times_the_count() -> None:
    assert dq.estimate("RTX", 4, PRICES) == Decimal("1.80")
    assert dq.estimate("H100", 1, PRICES) is None
    assert dq.estimate(None, 1, PRICES) is None
    assert dq.learn(PRICES, "H100", Decimal("2.1")) == {**PRICES, "H100": Decimal("2.1")}
    assert dq.learn(PRICES, "H100", None) == PRICES


def test_release_removes_only_that_reservation() -> None:
    q = quota({"gpus": 4}, held("a"), held("b", gpus=2))
    status = dq.release(q, "a")
    assert status is not None
    assert [r["uid"] for r in status["reservations"]] == ["b"]
    assert status["used"] == {"gpus": 2, "pods": 1, "pricePerHour": "0.45"}
    assert dq.release(q, "zzz") is None


def test_correct_replaces_the_estimate_with_the_quoted_price() -> None:
    q = quota({"pricePerHour": "5"}, {**held("a"), "estimated": True})
    status = dq.correct(q, "a", Decimal("0.50"), {"RTX": Decimal("0.50")})
    assert status is not None
    assert status["reservations"][0]["pricePerHour"] == "0.50"
    assert status["reservations"][0]["estimated"] is False
    assert status["prices"] == {"RTX": "0.50"}
    corrected = dq.Quota.parse(
        body({"pricePerHour": "5"}, status["reservations"], prices=status["prices"])
    )
    assert dq.correct(corrected, "a", Decimal("0.50"), {"RTX": Decimal("0.50")}) is None


def test_upkeep_drops_gone_reservations_and_reports_spend_and_waiting() -> None:
    q = quota({"gpus": 4}, held("a"), held("gone"))
    up = dq.upkeep(q, ["gone", "never-held"], PRICES, Decimal("1.2345"), 3, {})
    assert up.dropped == ["gone"]
    assert up.status is not None
    assert [r["uid"] for r in up.status["reservations"]] == ["a"]
    assert up.status["spend"] == "1.2345" and up.status["waiting"] == 3
    # Once written, the next pass has nothing to write.
    written = dq.Quota.parse({**body({"gpus": 4}), "status": up.status})
    assert dq.upkeep(written, [], PRICES, Decimal("1.2345"), 3, up.status).status is None


@pytest.mark.parametrize(
    ("value", "shown"),
    [("0.9", "0.90"), ("1", "1.00"), ("0.4500", "0.45"), ("1.2345", "1.2345"), ("0", "0.00")],
)
def test_money_shows_cents_and_keeps_finer_digits(value: str, shown: str) -> None:
    assert dq.money(Decimal(value)) == shown


def test_tightest_quota_is_what_the_metrics_show() -> None:
    loose = dq.Quota.parse(
        {**body({"gpus": 8}, [held("a")]), "metadata": {"name": "a", "namespace": "ns"}}
    )
    tight = dq.Quota.parse(
        {**body({"gpus": 2}, [held("a")]), "metadata": {"name": "b", "namespace": "ns"}}
    )
    out = dq.tightest([loose, tight])
    assert out["gpus"] == (1.0, 2.0)
    assert out["pods"] == (1.0, None)
