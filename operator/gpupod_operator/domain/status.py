"""The remote pod as the GpuPod status: phase, endpoints, price and the two conditions."""

from __future__ import annotations

import datetime as dt
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
# Remote states from which the pod never comes back.
GONE = frozenset({PodStatus.TERMINATED})

READY = "Ready"
SYNCED = "Synced"


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


def observed_status(pod: Pod | None, gpu_count: int) -> dict[str, Any]:
    """The status fields that follow the remote pod. `None` means the API says it is gone.

    Only facts from the API: the caller adds conditions and timestamps. Fields that are unknown
    are set to None so a merge patch clears stale values (e.g. endpoints after a pause).
    """
    if pod is None:
        return {
            "phase": Phase.LOST.value,
            "remoteStatus": None,
            "endpoints": None,
            "sshCommand": None,
            "message": "the remote pod no longer exists at the provider",
        }
    phase = PHASE_OF_REMOTE.get(pod.status)
    created = (
        now_iso(dt.datetime.fromtimestamp(pod.createdAt / 1000, dt.UTC)) if pod.createdAt else None
    )
    return {
        "phase": phase.value if phase else None,
        "remoteStatus": str(pod.status.value if pod.status != PodStatus.UNKNOWN else "UNKNOWN"),
        "region": pod.region,
        "sshCommand": pod.sshCmd or None,
        "endpoints": endpoints(pod) or None,
        "pricePerHour": price_per_hour(pod, gpu_count),
        "createdAt": created,
        "message": _message_for(pod),
    }


def _message_for(pod: Pod) -> str | None:
    if pod.status == PodStatus.FAILED:
        return "the provider reports the pod FAILED (insufficient capacity or a bad image)"
    if pod.status == PodStatus.TERMINATED:
        return "the remote pod was terminated outside this GpuPod"
    return None


def condition(
    type_: str,
    ok: bool,
    reason: str,
    message: str,
    generation: int | None,
    now: dt.datetime,
    previous: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    """A condition whose lastTransitionTime moves only when its status flips."""
    status = "True" if ok else "False"
    since = now_iso(now)
    for old in previous or []:
        if old.get("type") == type_ and old.get("status") == status:
            since = old.get("lastTransitionTime") or since
    cond: dict[str, Any] = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
    }
    if generation is not None:
        cond["observedGeneration"] = generation
    return cond


def ready_condition(
    phase: str | None, now: dt.datetime, previous: list[dict[str, Any]] | None
) -> dict[str, Any]:
    ok = phase == Phase.RUNNING.value
    reason = "Running" if ok else (phase or "Unknown")
    message = "the remote pod is RUNNING" if ok else f"the GpuPod is {phase or 'not created yet'}"
    return condition(READY, ok, reason, message, None, now, previous)


def merge_conditions(
    previous: list[dict[str, Any]] | None, *updates: dict[str, Any]
) -> list[dict[str, Any]]:
    """Replace conditions by type, keep the others, in a stable order."""
    by_type = {c.get("type"): c for c in previous or []}
    for u in updates:
        by_type[u["type"]] = u
    order = [READY, SYNCED]
    return sorted(
        by_type.values(),
        key=lambda c: (order.index(c["type"]) if c.get("type") in order else 9, str(c.get("type"))),
    )


def status_changed(current: dict[str, Any], update: dict[str, Any]) -> bool:
    """True when applying `update` as a merge patch would change `current` (None = absent)."""
    for key, value in update.items():
        if key in ("lastSyncTime",):
            continue
        if key == "conditions":
            if _strip_times(current.get(key)) != _strip_times(value):
                return True
            continue
        if current.get(key) != value:
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


def transition_event(
    old_phase: str | None, fields: dict[str, Any], pod_id: str | None
) -> tuple[str, bool, str] | None:
    """(reason, warning?, message) when `fields` move the GpuPod into a phase worth an Event."""
    phase = fields.get("phase")
    if phase is None or phase == old_phase or phase not in _TRANSITION_EVENTS:
        return None
    reason, bad = _TRANSITION_EVENTS[phase]
    if phase == Phase.RUNNING.value:
        where = f" in {fields['region']}" if fields.get("region") else ""
        price = f" at ${fields['pricePerHour']}/h" if fields.get("pricePerHour") else ""
        message = f"remote pod {pod_id} is RUNNING{where}{price}"
    elif phase == Phase.PAUSED.value:
        message = f"remote pod {pod_id} is PAUSED"
    else:
        message = str(fields.get("message") or f"remote pod {pod_id} is {phase}")
    return reason, bad, message
