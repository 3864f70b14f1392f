"""Seeded fault injection: every request of an operation draws once per matching rule."""

from __future__ import annotations

import random

from gpupod_operator.simulator.config import FaultRule


class FaultInjector:
    def __init__(self, rules: list[FaultRule], seed: int | None) -> None:
        self._seed = seed
        self.rules = list(rules)
        self.reseed()

    def reseed(self) -> None:
        # A dedicated stream, so changing faults never shifts ids or provisioning failures.
        self._rng = random.Random(None if self._seed is None else f"{self._seed}:faults")
        # `lost` alternates between a 500 and a dropped connection; the seed picks the first.
        self._lost_drops = self._rng.random() < 0.5

    def replace(self, rules: list[FaultRule]) -> None:
        self.rules = list(rules)

    def draw(self, op: str) -> str | None:
        """The fault kind to inject into this request of `op`, or None."""
        for rule in self.rules:
            if rule.op in (op, "*") and self._rng.random() < rule.rate:
                return rule.kind
        return None

    def lost_mode(self) -> str:
        """ "drop" (close the connection) or "500", alternating."""
        self._lost_drops = not self._lost_drops
        return "500" if self._lost_drops else "drop"
