"""The bench's watch bookkeeping: counts kept as events arrive, a stalled wait ends early."""

from __future__ import annotations

from typing import Any

import pytest
from bench.kubeclient import KubeClient, Watcher
from bench.run import RunConfig


def body(name: str, phase: str | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name}, "status": {"phase": phase} if phase else {}}


def watcher() -> Watcher:
    return Watcher(KubeClient.__new__(KubeClient), "ns", clock=lambda: 1.0)


def test_running_and_deleted_are_counted_once_per_object() -> None:
    w = watcher()
    w._apply("ADDED", body("a"), 1.0)
    w._apply("MODIFIED", body("a", "Running"), 2.0)
    w._apply("MODIFIED", body("a", "Running"), 3.0)  # Running again: still one
    w._apply("ADDED", body("b", "Running"), 2.0)
    assert (w.running, w.deleted) == (2, 0)
    w._apply("DELETED", body("a", "Running"), 4.0)
    w._apply("DELETED", body("a", "Running"), 5.0)
    assert (w.running, w.deleted) == (2, 1)
    assert w.running == w.count(lambda t: t.running is not None)


async def test_a_wait_without_progress_ends_at_the_stall_limit() -> None:
    w = watcher()
    ok = await w.wait_for(
        lambda: w.running >= 1,
        limit_seconds=60.0,
        on_tick=lambda: None,
        progress=lambda: w.running,
        stall_seconds=0.05,
    )
    assert ok is False


@pytest.mark.parametrize(
    ("args", "product", "expected"),
    [
        ([], False, ["--qps", "1000", "--burst", "1000"]),
        (["--qps=5"], False, ["--qps=5"]),
        (["--burst", "7"], False, ["--burst", "7"]),
        (["--sync-interval", "10"], True, ["--sync-interval", "10"]),
    ],
)
def test_the_rate_limit_is_lifted_unless_kept_or_given(
    args: list[str], product: bool, expected: list[str]
) -> None:
    cfg = RunConfig(operator_args=args, product_rate_limit=product)
    assert cfg.effective_operator_args == expected
