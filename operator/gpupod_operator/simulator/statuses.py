"""The simulator's own words for a pod's status (reference §4.1).

Deliberately not the client's table (gpupod_operator.yotta.PodStatus): the simulator stands in
for the API, so if it borrowed the client's words a wrong word would be wrong on both sides and
every test would still pass. tests/unit/test_simulator_tables.py pins this table to the
reference and checks the client reads every word the simulator writes.
"""

from __future__ import annotations

from enum import StrEnum


class SimStatus(StrEnum):
    """Backend names: what v2 most likely returns (reference §4.1), the default dialect."""

    INITIALIZE = "INITIALIZE"
    RUNNING = "RUNNING"
    PAUSING = "PAUSING"
    PAUSED = "PAUSED"
    TERMINATING = "TERMINATING"
    TERMINATED = "TERMINATED"
    FAILED = "FAILED"

    @property
    def code(self) -> int:
        """The backend integer (v1, SDK-V1, SKY), as `statusList` takes it."""
        return CODES[self]


CODES: dict[SimStatus, int] = {
    SimStatus.INITIALIZE: 0,
    SimStatus.RUNNING: 1,
    SimStatus.PAUSING: 2,
    SimStatus.PAUSED: 3,
    SimStatus.TERMINATING: 4,
    SimStatus.TERMINATED: 5,
    SimStatus.FAILED: 6,
}
#: The v2 guide / v2 SDK enum names; the guide has no word for the others.
GUIDE_NAMES: dict[SimStatus, str] = {
    SimStatus.INITIALIZE: "INITIALIZING",
    SimStatus.PAUSED: "STOPPED",
}
#: The console's labels.
CONSOLE_NAMES: dict[SimStatus, str] = {
    SimStatus.INITIALIZE: "Initializing",
    SimStatus.RUNNING: "Running",
    SimStatus.PAUSING: "Stopping",
    SimStatus.PAUSED: "Stopped",
    SimStatus.TERMINATING: "Terminating",
    SimStatus.TERMINATED: "Terminated",
    SimStatus.FAILED: "Failed",
}

# Every word the simulator itself can write, upper-cased: a filter accepts any of them.
_BY_WORD: dict[str, SimStatus] = {
    **{s.value: s for s in SimStatus},
    **{word.upper(): s for s, word in GUIDE_NAMES.items()},
    **{word.upper(): s for s, word in CONSOLE_NAMES.items()},
    **{str(code): s for s, code in CODES.items()},
}


def parse_status(word: str | int) -> SimStatus | None:
    """A `statusList` entry or an admin status: an int 0-6 or a word of any vocabulary above."""
    if isinstance(word, bool):
        return None
    return _BY_WORD.get(str(word).strip().upper())
