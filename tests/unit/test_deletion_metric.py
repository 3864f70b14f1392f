"""gpupod_deletion_oldest_age_seconds: the age of the oldest deletion still waiting, at scrape."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from gpupod_operator.controller.metrics import Metrics
from gpupod_operator.controller.registry import Registry


def _body(name: str, deleted: str | None) -> dict[str, object]:
    meta: dict[str, object] = {"namespace": "ns", "name": name, "uid": f"u-{name}"}
    if deleted:
        meta["deletionTimestamp"] = deleted
    return {"metadata": meta, "spec": {}, "status": {}}


def test_the_oldest_deletion_ages_at_scrape_time_and_is_zero_without_one() -> None:
    registry, now = Registry(), [1_764_633_600.0]  # 2025-12-02T00:00:00Z
    collectors = CollectorRegistry()
    metrics = Metrics(collectors)
    metrics.track_deletions(lambda: [t.deleting_since for t in registry.all()], lambda: now[0])

    def age() -> float | None:
        return collectors.get_sample_value("gpupod_deletion_oldest_age_seconds")

    registry.upsert(_body("alive", None))
    assert age() == 0.0
    registry.upsert(_body("old", "2025-12-01T23:50:00Z"))
    registry.upsert(_body("new", "2025-12-01T23:59:00Z"))
    assert age() == 600.0
    now[0] += 60  # no event in between: the value still moves
    assert age() == 660.0
    registry.remove("ns", "old")
    assert age() == 120.0
