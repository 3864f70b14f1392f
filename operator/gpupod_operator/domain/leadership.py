"""Leader election decisions, pure: the Lease record, its timings and the fence rules.

`controller.leader` does the I/O (reads and writes the Lease); every rule it follows is here,
so it is testable without a cluster. Times are seconds on the local monotonic clock, as in
client-go: a Lease is judged expired from when THIS process last saw it change, never from the
timestamps written in it (clocks of two nodes disagree; the rate of time does not, much).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

# Defaults (reference §5: a cheap, flappy handover costs more than a slow one when creates are
# not idempotent). The retry period is shorter than the reference's 10 s so that a released
# Lease (rolling update) is picked up within about 2 s; it costs one GET every 2 s per replica.
LEASE_SECONDS = 60.0
RENEW_DEADLINE_SECONDS = 40.0
RETRY_SECONDS = 2.0
# A create must end at least this long before the holder's renew deadline.
CREATE_MARGIN_SECONDS = 5.0


@dataclass(frozen=True)
class Timings:
    lease: float = LEASE_SECONDS  # how long others wait after the last renew they saw
    renew_deadline: float = RENEW_DEADLINE_SECONDS  # the holder exits if not renewed by then
    retry: float = RETRY_SECONDS  # renew (holder) and poll (standby) period
    create_margin: float = CREATE_MARGIN_SECONDS

    def problems(self, create_timeout: float) -> list[str]:
        """What is wrong with these timings for this create timeout (empty: usable)."""
        out = []
        if not self.lease > self.renew_deadline:
            out.append("the lease duration must be longer than the renew deadline")
        if not self.renew_deadline > 1.2 * self.retry:
            out.append("the renew deadline must be longer than 1.2 x the retry period")
        if self.retry <= 0 or self.create_margin < 0:
            out.append("the retry period must be positive and the create margin not negative")
        if create_window(self, create_timeout) <= self.retry:
            out.append(
                "the renew deadline must exceed the create timeout + the create margin + the "
                "retry period, or creates would be refused between renews"
            )
        return out


@dataclass(frozen=True)
class Record:
    """The Lease's spec, as this operator reads and writes it."""

    holder: str | None
    lease_seconds: int
    transitions: int = 0
    acquired_at: dt.datetime | None = None
    renewed_at: dt.datetime | None = None


@dataclass(frozen=True)
class Observation:
    """A Lease as this process saw it, and when (monotonic) it last saw it change."""

    record: Record
    changed_at: float


def observe(previous: Observation | None, record: Record, now: float) -> Observation:
    """Remember when the record last changed: expiry counts from then (client-go)."""
    if previous is not None and previous.record == record:
        return previous
    return Observation(record, now)


def is_free(record: Record) -> bool:
    """Released (no holder): anyone may take it at once."""
    return not record.holder


def is_expired(seen: Observation, now: float) -> bool:
    """No renew seen for a whole lease duration (the duration the holder wrote)."""
    return now >= seen.changed_at + max(seen.record.lease_seconds, 1)


def claim(
    seen: Observation | None, me: str, timings: Timings, now: float, wall: dt.datetime
) -> Record | None:
    """The record to write to take or keep the Lease, or None: someone else holds it.

    `seen` None: there is no Lease yet (create it). Our own record is renewed; a free or
    expired one is taken with one more transition.
    """
    lease_seconds = max(1, round(timings.lease))
    if seen is None:
        return Record(me, lease_seconds, 0, wall, wall)
    record = seen.record
    if record.holder == me:
        return replace(record, lease_seconds=lease_seconds, renewed_at=wall)
    if is_free(record) or is_expired(seen, now):
        return Record(me, lease_seconds, record.transitions + 1, wall, wall)
    return None


def released(record: Record, wall: dt.datetime) -> Record:
    """What a holder writes on a clean shutdown: no holder, so a standby takes it at once."""
    return replace(record, holder=None, lease_seconds=1, renewed_at=wall)


def must_exit(now: float, last_renew: float, timings: Timings) -> bool:
    """The holder could not renew in time: another process may hold the Lease soon."""
    return now - last_renew >= timings.renew_deadline


def create_window(timings: Timings, create_timeout: float) -> float:
    """Seconds after a renew during which a create may still start."""
    return timings.renew_deadline - create_timeout - timings.create_margin


def may_start_create(
    now: float, last_renew: float, timings: Timings, create_timeout: float
) -> bool:
    """A POST starts only if it finishes (or times out) `create_margin` before the renew
    deadline, that is before any other process could hold the Lease (reference §5)."""
    return now - last_renew < create_window(timings, create_timeout)
