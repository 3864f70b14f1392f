"""Spend and the two cost guardrails of one GpuPod (lifetime, price cap), as pure functions.

Running time is a checkpoint in `status.cost`: `runningSeconds` counted up to `countedUntil`,
and `running`, whether the remote pod was RUNNING at that instant. The rule (sample and hold):
the pod is taken to stay as it was last observed until the next observation, so an observation
at `now` adds `now - countedUntil` when the pod was RUNNING at the EARLIER one, and moves the
checkpoint to `now`. So:

- A restart or a resync never resets anything: the checkpoint is in the status, and the time
  the operator was down counts if the pod was RUNNING before and is still being observed.
- Re-delivery and concurrent writers are harmless: an observation at or before `countedUntil`
  adds nothing, and every writer projects from the status it read with a resourceVersion
  precondition (`controller.status_writer`), so an interval is counted by one write only.
- The error is at most one poll interval per RUNNING stretch (a pod that starts running between
  two polls counts from the second; one that stops, up to the first poll that sees it).

Only the bulk poller advances the checkpoint (its observations are fresh lists, taken at a time
it knows). The reconciler reads it: the guardrails are decided in `domain.decisions` from the
persisted running time and price, and `status.cost.guard` (kopf's change detection watches it)
is what makes the poller's finding reach the reconciler, which alone pauses or deletes.

Paused time accrues nothing: the Yotta API reports no storage price. `accrued` is an estimate
(price x RUNNING time), not the invoice.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Any

from gpupod_operator.domain.spec import LifetimeAction, parse_duration
from gpupod_operator.domain.status import Observed, Phase, now_iso, price_per_hour
from gpupod_operator.yotta import PodStatus

LIFETIME = "MaxRunDurationReached"
PRICE = "PriceExceeded"
GUARDS = (LIFETIME, PRICE)
# A running pod without a lifetime rewrites its checkpoint this often at most (one status
# patch per pod per ten minutes, not per poll: 10,000 running pods cost 17 writes a second,
# and an operator restarted within it writes nothing); a pod with a lifetime, on every poll,
# so that its running time, expiry warning and guard are exact to a poll interval.
REFRESH = dt.timedelta(minutes=10)
_CENT_FRACTIONS = Decimal("0.000001")  # accrued is kept to a millionth of a dollar
_HOUR = Decimal(3600)
_GONE = frozenset({Phase.TERMINATED.value, Phase.LOST.value})


@dataclass(frozen=True)
class Limits:
    """What the spec allows: running seconds, what happens after, and the price per hour."""

    max_run: int | None = None
    action: LifetimeAction = LifetimeAction.PAUSE
    max_price: Decimal | None = None

    @classmethod
    def of(cls, spec: Mapping[str, Any]) -> Limits:
        """From the spec as stored (already validated by the CRD schema); a value that does
        not parse is no limit here, and GpuPodSpec.parse reports it on the reconcile path."""
        lifetime = spec.get("lifetime") or {}
        max_run: int | None = None
        try:
            if lifetime.get("maxRunDuration"):
                max_run = math.ceil(parse_duration(lifetime["maxRunDuration"]).total_seconds())
        except ValueError:
            pass
        delete = lifetime.get("action") == LifetimeAction.DELETE.value
        action = LifetimeAction.DELETE if delete else LifetimeAction.PAUSE
        return cls(max_run, action, decimal(spec.get("maxPricePerHour")))


def decimal(value: Any) -> Decimal | None:
    if value in (None, ""):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def dollars(value: Decimal) -> str:
    """`0.0125` -> "0.0125", `1.3` -> "1.30": at least cents, no exponent, no float."""
    text = format(value.quantize(_CENT_FRACTIONS), "f").rstrip("0")
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.ljust(2, '0')}"


def _parse_time(value: Any) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))


@dataclass(frozen=True)
class Checkpoint:
    running_seconds: int = 0
    accrued: Decimal = Decimal(0)
    counted_until: dt.datetime | None = None
    running: bool = False
    guard: str | None = None

    @classmethod
    def of(cls, status: Mapping[str, Any]) -> Checkpoint:
        cost = status.get("cost") or {}
        return cls(
            running_seconds=int(cost.get("runningSeconds") or 0),
            accrued=decimal(cost.get("accrued")) or Decimal(0),
            counted_until=_parse_time(cost.get("countedUntil")),
            running=bool(cost.get("running")),
            guard=cost.get("guard") or None,
        )

    def render(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "runningSeconds": self.running_seconds,
            "accrued": dollars(self.accrued),
        }
        if self.counted_until is not None:
            out["countedUntil"] = now_iso(self.counted_until)
            out["running"] = self.running
        if self.guard:
            out["guard"] = self.guard
        return out

    def seconds_at(self, now: dt.datetime) -> int:
        """Running seconds at `now` if the pod stays as last observed."""
        if not self.running or self.counted_until is None:
            return self.running_seconds
        return self.running_seconds + max(0, int((now - self.counted_until).total_seconds()))


def advance(cp: Checkpoint, running: bool, price: Decimal | None, now: dt.datetime) -> Checkpoint:
    """The checkpoint after observing the pod (RUNNING or not) at `now` (see the module doc)."""
    now = now.replace(microsecond=0)
    if cp.counted_until is None:
        return replace(cp, counted_until=now, running=running)
    if now <= cp.counted_until:
        return cp  # an older or repeated observation: its time is counted already
    seconds = int((now - cp.counted_until).total_seconds()) if cp.running else 0
    accrued = cp.accrued + (price * seconds / _HOUR if price is not None else Decimal(0))
    return replace(
        cp,
        running_seconds=cp.running_seconds + seconds,
        accrued=accrued.quantize(_CENT_FRACTIONS),
        counted_until=now,
        running=running,
    )


def guard(
    limits: Limits,
    running_seconds: int,
    price: Decimal | None,
    previous: str | None,
    live: bool,
) -> str | None:
    """The guardrail that applies, if any. PriceExceeded stays once the pod is gone (or its
    price is no longer known): that pod was deleted for its price and is not brought back.
    The lifetime follows the spec: raising maxRunDuration above the running time lifts it."""
    if limits.max_price is not None and price is not None and price > limits.max_price:
        return PRICE
    if previous == PRICE and (not live or price is None):
        return PRICE
    if limits.max_run is not None and running_seconds >= limits.max_run:
        return LIFETIME
    return None


def price_of(seen: Observed | None, gpu_count: int, recorded: Any) -> Decimal | None:
    """The pod's price per hour as observed now, else as the status recorded it."""
    pod = seen.pod if seen is not None else None
    observed = price_per_hour(pod, gpu_count) if pod is not None else None
    return decimal(observed if observed is not None else recorded)


def duration(seconds: int) -> str:
    """`4530` -> "1h15m30s"."""
    hours, rest = divmod(max(0, seconds), 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{n}{u}" for n, u in ((hours, "h"), (minutes, "m"), (secs, "s")) if n]
    return "".join(parts) or "0s"


def message(reason: str, limits: Limits, running_seconds: int, price: Decimal | None) -> str:
    """What the user reads in status.message, the Synced condition and the Events."""
    if reason == PRICE:
        shown = f"${dollars(price)}/h" if price is not None else "(no longer reported)"
        return (
            f"the provider's price {shown} is above spec.maxPricePerHour "
            f"${dollars(limits.max_price or Decimal(0))}/h: the remote pod is deleted before it "
            "runs and not created again; delete the GpuPod and apply it again (with a higher cap "
            "or a cheaper gpuType) to retry"
        )
    limit = duration(limits.max_run or 0)
    if limits.action == LifetimeAction.DELETE:
        return (
            f"ran {duration(running_seconds)} of maxRunDuration {limit}: the remote pod is "
            "deleted (spec.lifetime.action: Delete); the GpuPod is kept"
        )
    return (
        f"ran {duration(running_seconds)} of maxRunDuration {limit}: the remote pod is paused "
        "and stays paused; raise spec.lifetime.maxRunDuration above the running time to resume"
    )


def _implied_phase(current: Mapping[str, Any], seen: Observed | None, phase: str | None) -> Any:
    if phase is not None:
        return phase
    if seen is not None:
        if seen.pod is None:
            return Phase.LOST.value
        if seen.pod.status == PodStatus.TERMINATED:
            return Phase.TERMINATED.value
        if seen.pod.status == PodStatus.PAUSED:
            return Phase.PAUSED.value
    return current.get("phase")


@dataclass(frozen=True)
class Projection:
    """Status fields from this module (merged as facts) and the warning to post, if any."""

    fields: dict[str, Any]
    expiring: str | None = None


def project(
    current: Mapping[str, Any],
    *,
    now: dt.datetime,
    limits: Limits,
    gpu_count: int,
    seen: Observed | None = None,
    accrue: bool = False,
    phase: str | None = None,
    warn_within: float = 0,
) -> Projection:
    """The cost fields from `current` and an observation `seen` at `now`.

    - `accrue`: advance the checkpoint (the poller); otherwise only the guard is evaluated.
    - `phase`: the phase the writer is about to record, when it knows one.
    - `warn_within`: seconds; the first observation with less running time left than this
      returns an `expiring` message (the Event one poll interval before the lifetime acts).
    """
    old = Checkpoint.of(current)
    pod = seen.pod if seen is not None else None
    price = price_of(seen, gpu_count, current.get("pricePerHour"))
    cp = old
    if accrue and seen is not None:
        running = pod is not None and pod.status == PodStatus.RUNNING
        # The interval is billed as the pod was at its start: at the price recorded then.
        earlier = decimal(current.get("pricePerHour"))
        moved = advance(old, running, earlier if earlier is not None else price, now)
        due = old.counted_until is None or running != old.running
        if due or limits.max_run is not None or now - (old.counted_until or now) >= REFRESH:
            cp = moved
    advanced = cp.counted_until != old.counted_until
    live = pod is not None and pod.status not in (PodStatus.TERMINATED, PodStatus.TERMINATING)
    if seen is None:
        live = current.get("phase") not in _GONE
    cp = replace(cp, guard=guard(limits, cp.running_seconds, price, old.guard, live))
    if cp == Checkpoint() and "cost" not in current:
        return Projection({})  # nothing counted yet and no guardrail: leave the status alone

    rendered = cp.render()
    for key in current.get("cost") or {}:
        rendered.setdefault(key, None)  # a merge patch removes a field only with an explicit null
    fields: dict[str, Any] = {"cost": rendered, "expiresAt": None}
    if limits.max_run is not None and cp.running and cp.counted_until is not None:
        left = limits.max_run - cp.running_seconds
        fields["expiresAt"] = now_iso(cp.counted_until + dt.timedelta(seconds=left))
    if cp.guard is not None:
        shown = _implied_phase(current, seen, phase)
        text = message(cp.guard, limits, cp.running_seconds, price)
        if cp.guard == PRICE:
            if shown in _GONE:
                fields.update(phase=Phase.FAILED.value, message=text)
            elif shown in (Phase.FAILED.value, Phase.TERMINATING.value):
                fields["message"] = text
        elif limits.action == LifetimeAction.DELETE:
            if shown in _GONE:
                fields.update(phase=Phase.TERMINATED.value, message=text)
        elif shown == Phase.PAUSED.value:
            fields["message"] = text

    expiring = None
    if limits.max_run is not None and cp.running and cp.guard is None:
        left = limits.max_run - cp.running_seconds
        before = limits.max_run - old.running_seconds
        fresh = not old.running or old.counted_until is None or before > warn_within
        if 0 < left <= warn_within and fresh and advanced:
            what = "deleted" if limits.action == LifetimeAction.DELETE else "paused"
            expiring = (
                f"maxRunDuration {duration(limits.max_run)} runs out in {duration(left)} "
                f"(at {fields['expiresAt']}): the remote pod will be {what}"
            )
    return Projection(fields, expiring)


def accrued_delta(before: Mapping[str, Any], patch: Mapping[str, Any]) -> Decimal:
    """How much a status patch adds to the accrued estimate (0 when it adds nothing)."""
    new = decimal((patch.get("cost") or {}).get("accrued"))
    if new is None:
        return Decimal(0)
    old = decimal((before.get("cost") or {}).get("accrued")) or Decimal(0)
    return max(Decimal(0), new - old)


def next_deadline(
    statuses: list[Mapping[str, Any]], now: dt.datetime, warn_within: float
) -> float | None:
    """Seconds until the poller should look again for a lifetime to warn about or enforce
    (one second after the instant, so the count has reached it); 0 when one is overdue (its
    guard is not recorded yet); None when there is none."""
    soonest: float | None = None
    margin = dt.timedelta(seconds=1)
    for status in statuses:
        expires = _parse_time(status.get("expiresAt"))
        if expires is None or (status.get("cost") or {}).get("guard"):
            continue
        waits = [
            (at - now).total_seconds()
            for at in (expires - dt.timedelta(seconds=warn_within) + margin, expires + margin)
        ]
        wait = next((w for w in waits if w > 0), 0.0)
        soonest = wait if soonest is None else min(soonest, wait)
    return soonest
