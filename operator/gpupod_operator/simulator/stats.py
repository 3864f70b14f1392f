"""Request and fault counters behind `GET /_sim/stats`."""

from __future__ import annotations

from collections import defaultdict


class Stats:
    def __init__(self) -> None:
        self.requests: defaultdict[str, defaultdict[str, int]] = defaultdict(
            lambda: defaultdict(int)
        )
        self.faults: defaultdict[str, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))
        # Requests with an accepted key, by account (the key's index) and op.
        self.accounts: defaultdict[str, defaultdict[str, int]] = defaultdict(
            lambda: defaultdict(int)
        )

    def request(self, op: str, result: str) -> None:
        self.requests[op][result] += 1

    def account(self, account: int, op: str) -> None:
        self.accounts[str(account)][op] += 1

    def fault(self, op: str, kind: str) -> None:
        self.faults[op][kind] += 1

    def reset(self) -> None:
        self.requests.clear()
        self.faults.clear()
        self.accounts.clear()

    def snapshot(self) -> dict[str, dict[str, dict[str, int]]]:
        return {
            "requests": {op: dict(r) for op, r in self.requests.items()},
            "faults": {op: dict(f) for op, f in self.faults.items()},
            "byAccount": {a: dict(ops) for a, ops in self.accounts.items()},
        }
