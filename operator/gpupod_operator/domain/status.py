"""The GpuPod status as one pure projection, used by every writer (reconciler and poller).

`project(current, ...)` takes the status the GpuPod shows now and what the writer knows (the
remote pod it observed, the facts it recorded, the outcome of a reconcile, whether the provider
is reachable) and returns the merge patch that brings the status there, or None when nothing a
user can see would change. Ready is derived here and nowhere else; each writer only passes what
it knows, so neither can undo the other's conditions (the patch is written with a
resourceVersion precondition and recomputed on a conflict, `controller.status_writer`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from gpupod_operator.yotta import Pod, PodStatus


class Phase(StrEnum):
    PENDING = "Pending"
    CREATING = "Creating"
    INITIALIZING = "Initializing"
    RUNNING = "Running"
    PAUSING = "Pausing"
    PAUSED = "Paused"
    TERMINATING = "Terminating"
    TERMINATED = "Terminated"
    FAILED = "Failed"
    LOST = "Lost"


PHASE_OF_REMOTE: dict[PodStatus, Phase] = {
    PodStatus.INITIALIZE: Phase.INITIALIZING,
    PodStatus.RUNNING: Phase.RUNNING,
    PodStatus.PAUSING: Phase.PAUSING,
    PodStatus.PAUSED: Phase.PAUSED,
    PodStatus.TERMINATING: Phase.TERMINATING,
    PodStatus.TERMINATED: Phase.TERMINATED,
    PodStatus.FAILED: Phase.FAILED,
}

# Phases that change by themselves soon: the poller looks more often while any GpuPod is in one.
TRANSITIONAL = frozenset(
    {Phase.PENDING, Phase.CREATING, Phase.INITIALIZING, Phase.PAUSING, Phase.TERMINATING}
)

READY = "Ready"
SYNCED = "Synced"
_ORDER = (READY, SYNCED)


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


@dataclass(frozen=True)
class Condition:
    type: str
    status: ConditionStatus
    reason: str
    message: str
    observed_generation: int | None = None

    def render(self, previous: list[dict[str, Any]], now: dt.datetime) -> dict[str, Any]:
        """As stored; lastTransitionTime moves only when the status flips."""
        since = now_iso(now)
        for old in previous:
            if old.get("type") == self.type and old.get("status") == self.status.value:
                since = old.get("lastTransitionTime") or since
        out: dict[str, Any] = {
            "type": self.type,
            "status": self.status.value,
            "reason": self.reason,
            "message": self.message,
            "lastTransitionTime": since,
        }
        if self.observed_generation is not None:
            out["observedGeneration"] = self.observed_generation
        return out


@dataclass(frozen=True)
class Sync:
    """How the last reconcile of a generation ended: the Synced condition."""

    status: ConditionStatus
    reason: str
    message: str

    @classmethod
    def ok(cls, message: str = "the remote pod matches the spec") -> Sync:
        return cls(ConditionStatus.TRUE, "Reconciled", message)

    @classmethod
    def failed(cls, reason: str, message: str) -> Sync:
        return cls(ConditionStatus.FALSE, reason, message)

    @classmethod
    def unknown(cls, reason: str, message: str) -> Sync:
        return cls(ConditionStatus.UNKNOWN, reason, message)


@dataclass(frozen=True)
class Observed:
    """The pod by ID as the API reports it; `pod=None` means the API does not know it."""

    pod: Pod | None


def now_iso(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def price_per_hour(pod: Pod, gpu_count: int) -> str | None:
    """`singleCardPrice * gpuCount`, as a string so no float rounding reaches the status."""
    if pod.singleCardPrice is None:
        return None
    count = pod.gpuCount or gpu_count
    return str((Decimal(pod.singleCardPrice) * count).normalize().quantize(Decimal("0.01")))


def endpoints(pod: Pod) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for port in pod.expose:
        item: dict[str, Any] = {"port": port.port}
        if port.protocol:
            item["protocol"] = port.protocol
        if port.host:
            item["host"] = port.host
        if port.proxyPort is not None:
            item["proxyPort"] = port.proxyPort
        url = port.ingressUrl or (
            f"{port.host}:{port.proxyPort}" if port.host and port.proxyPort is not None else None
        )
        if url:
            item["url"] = url
        if port.healthy is not None:
            item["healthy"] = port.healthy
        out.append(item)
    return out


def remote_word(pod: Pod) -> str:
    """The provider's own word for the pod's status (shown as status.remoteStatus)."""
    if pod.status != PodStatus.UNKNOWN:
        return pod.status.value
    return str(pod.statusText) if pod.statusText not in (None, "") else "UNKNOWN"


def failed_message(pod: Pod) -> str:
    if pod.failureReason:
        return f"the provider reports the pod FAILED: {pod.failureReason}"
    return "the provider reports the pod FAILED and gives no reason"


def unknown_status_message(pod: Pod) -> str:
    return (
        f"the provider reports status {remote_word(pod)!r} for remote pod {pod.id}, which this "
        "operator does not know; the GpuPod is left as it is until the status is one it knows"
    )


def _remote_fields(seen: Observed, gpu_count: int, replacing: bool) -> dict[str, Any]:
    """The status fields that follow the remote pod. Unknown facts are None, so the merge
    patch clears stale values (e.g. endpoints after a pause)."""
    pod = seen.pod
    gone = pod is None or pod.status in (PodStatus.TERMINATED, PodStatus.TERMINATING)
    if replacing and gone:
        # The old pod of a Recreate going away is the plan, not an outside termination.
        return {
            "phase": Phase.TERMINATING.value,
            "remoteStatus": remote_word(pod) if pod is not None else None,
            "endpoints": None,
            "sshCommand": None,
            "message": "replacing the remote pod (updatePolicy: Recreate)",
        }
    if pod is None:
        return {
            "phase": Phase.LOST.value,
            "remoteStatus": None,
            "endpoints": None,
            "sshCommand": None,
            "message": "the remote pod no longer exists at the provider",
        }
    fields: dict[str, Any] = {
        "remoteStatus": remote_word(pod),
        "region": pod.region,
        "sshCommand": pod.sshCmd or None,
        "endpoints": endpoints(pod) or None,
        "pricePerHour": price_per_hour(pod, gpu_count),
        "createdAt": (
            now_iso(dt.datetime.fromtimestamp(pod.createdAt / 1000, dt.UTC))
            if pod.createdAt
            else None
        ),
        "message": None,
    }
    phase = PHASE_OF_REMOTE.get(pod.status)
    if phase is not None:  # an unknown status leaves the phase as it was
        fields["phase"] = phase.value
    if pod.status == PodStatus.FAILED:
        fields["message"] = failed_message(pod)
    elif pod.status == PodStatus.TERMINATED:
        fields["message"] = "the remote pod was terminated outside this GpuPod"
    elif pod.status == PodStatus.UNKNOWN:
        fields["message"] = unknown_status_message(pod)
    return fields


def ready(phase: str | None, seen: Observed | None, unreachable: str | None) -> Condition:
    """Ready: True only while the remote pod is RUNNING; Unknown when we cannot tell."""
    if unreachable is not None:
        return Condition(READY, ConditionStatus.UNKNOWN, "ProviderUnreachable", unreachable)
    pod = seen.pod if seen is not None else None
    if pod is not None and pod.status == PodStatus.UNKNOWN:
        return Condition(
            READY, ConditionStatus.UNKNOWN, "UnknownRemoteStatus", unknown_status_message(pod)
        )
    if phase == Phase.RUNNING.value:
        return Condition(READY, ConditionStatus.TRUE, "Running", "the remote pod is RUNNING")
    what = phase or "not created yet"
    return Condition(READY, ConditionStatus.FALSE, phase or "Unknown", f"the GpuPod is {what}")


def project(
    current: Mapping[str, Any],
    *,
    now: dt.datetime,
    gpu_count: int,
    generation: int | None = None,
    seen: Observed | None = None,
    facts: Mapping[str, Any] | None = None,
    sync: Sync | None = None,
    unreachable: str | None = None,
) -> dict[str, Any] | None:
    """The merge patch from `current` to what the writer knows, or None if nothing changes.

    - `seen`: the remote pod as observed now (None: not looked at).
    - `facts`: fields the writer recorded or decided (podId, the create marker, phase ...);
      they win over what `seen` implies.
    - `sync`: the outcome of a reconcile of `generation` (None: leave Synced as it is).
    - `unreachable`: the provider cannot be reached (Ready becomes Unknown).
    """
    facts = facts or {}
    replacing = bool(facts.get("replacing", current.get("replacing")))
    update: dict[str, Any] = {}
    if seen is not None:
        update.update(_remote_fields(seen, gpu_count, replacing))
    update.update(facts)

    previous = list(current.get("conditions") or [])
    phase = update.get("phase", current.get("phase"))
    conditions = {c.get("type"): c for c in previous}
    # Ready changes only with news about the pod; a Synced outcome alone (e.g. a failed call
    # during an outage) must not undo the poller's Ready=Unknown.
    if seen is not None or unreachable is not None or "phase" in update:
        conditions[READY] = ready(phase, seen, unreachable).render(previous, now)
    if sync is not None:
        conditions[SYNCED] = Condition(
            SYNCED, sync.status, sync.reason, sync.message, generation
        ).render(previous, now)
        if sync.status == ConditionStatus.TRUE and generation is not None:
            update["observedGeneration"] = generation
    update["conditions"] = sorted(
        conditions.values(),
        key=lambda c: (_ORDER.index(c["type"]) if c.get("type") in _ORDER else 9, str(c["type"])),
    )
    if not _changes(current, update):
        return None
    update["lastSyncTime"] = now_iso(now)
    return update


def _changes(current: Mapping[str, Any], update: Mapping[str, Any]) -> bool:
    """True when applying `update` as a merge patch would change `current` (None = absent),
    ignoring the times that move on every write."""
    for key, value in update.items():
        if key == "lastSyncTime":
            continue
        if key == "conditions":
            if _strip_times(current.get(key)) != _strip_times(value):
                return True
        elif current.get(key) != value:
            return True
    return False


def _strip_times(conditions: Any) -> list[tuple[Any, ...]]:
    return sorted(
        (c.get("type"), c.get("status"), c.get("reason"), c.get("message"))
        for c in conditions or []
    )


# Phase changes worth an Event: (reason, is it bad news).
_TRANSITION_EVENTS = {
    Phase.RUNNING.value: ("Running", False),
    Phase.PAUSED.value: ("Paused", False),
    Phase.FAILED.value: ("RemotePodFailed", True),
    Phase.LOST.value: ("RemotePodLost", True),
    Phase.TERMINATED.value: ("RemotePodTerminated", True),
}


_GUARDED_PHASES = frozenset({Phase.PAUSED.value, Phase.FAILED.value, Phase.TERMINATED.value})


def transition_event(
    old_phase: str | None, fields: Mapping[str, Any], pod_id: str | None
) -> tuple[str, bool, str] | None:
    """(reason, warning?, message) when `fields` move the GpuPod into a phase worth an Event."""
    phase = fields.get("phase")
    if phase is None or phase == old_phase or phase not in _TRANSITION_EVENTS:
        return None
    if pod_id is None:
        return None  # no remote pod to report on (e.g. a create the API refused)
    reason, bad = _TRANSITION_EVENTS[phase]
    guard = (fields.get("cost") or {}).get("guard")
    if guard and phase in _GUARDED_PHASES:
        # Stopped by a cost guardrail (domain.cost), not by the provider or outside.
        return guard, True, str(fields.get("message") or f"remote pod {pod_id} is {phase}")
    if phase == Phase.RUNNING.value:
        where = f" in {fields['region']}" if fields.get("region") else ""
        price = f" at ${fields['pricePerHour']}/h" if fields.get("pricePerHour") else ""
        message = f"remote pod {pod_id} is RUNNING{where}{price}"
    elif phase == Phase.PAUSED.value:
        message = f"remote pod {pod_id} is PAUSED"
    else:
        message = str(fields.get("message") or f"remote pod {pod_id} is {phase}")
    return reason, bad, message
