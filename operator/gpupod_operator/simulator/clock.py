"""A manually advanced clock, so tests drive the lifecycle without sleeping."""

from __future__ import annotations


class ManualClock:
    """Callable like `time.time`; starts at a realistic epoch so createdAt looks real."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
