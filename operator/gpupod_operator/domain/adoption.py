"""`spec.adopt`: who owns a remote pod that GpuPods claim, decided without a cluster.

A remote pod has at most one GpuPod. Claimants are the GpuPods that record the pod's ID in
their status and those whose `spec.adopt.podId` names it. The owner is, deterministically:
the GpuPod that created the pod itself (its status records it without `adopt`), else an
adopter that has CONFIRMED its adoption, else the oldest adopter by (creationTimestamp, UID).

An adoption is confirmed on a second look a moment after the pod ID was recorded (the
reconciler's ADOPT_CONFIRM): by then a claimant applied at the same moment, whose watch event
had not arrived at the first look, is seen. Two claimants can never both win: if each sees the
other unconfirmed they order the same way, and one that sees the other confirmed gives way.
Giving way before confirmation is harmless: adopting only recorded an ID, it did nothing
remotely, and nothing acts on the pod before the confirmation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Claim:
    namespace: str
    name: str
    uid: str
    created: str  # metadata.creationTimestamp (RFC 3339 UTC: sorts as time)
    adopts: bool  # claims through spec.adopt (else: records a pod it created)
    confirmed: bool = False  # an adopter whose adoption was confirmed (see the module doc)

    @property
    def key(self) -> tuple[bool, bool, str, str]:
        return (self.adopts, not self.confirmed, self.created, self.uid)


@dataclass(frozen=True)
class Adoption:
    """What reconcile and finalize need to know about `spec.adopt`."""

    pod_id: str
    observe: bool = False  # mode Observe: mirror only, never pause, resume or delete
    owned_by: str | None = None  # `<namespace>/<name>` of the GpuPod that owns the pod instead


def owner(claims: Iterable[Claim]) -> Claim | None:
    return min(claims, key=lambda c: c.key, default=None)


def owned_elsewhere(me: Claim, others: Iterable[Claim]) -> str | None:
    """`<namespace>/<name>` of the GpuPod that owns the pod `me` claims, if not `me`."""
    winner = owner([me, *(c for c in others if c.uid != me.uid)])
    if winner is None or winner.uid == me.uid:
        return None
    return f"{winner.namespace}/{winner.name}"


CONFIRMING = "ConfirmingOwnership"  # the Synced reason of a recorded, unconfirmed adoption


def claim_of(body: Any) -> Claim:
    """The claim a GpuPod body makes (on `spec.adopt.podId`, or on the pod it recorded)."""
    meta, status = body["metadata"], body.get("status") or {}
    adopt_id = ((body.get("spec") or {}).get("adopt") or {}).get("podId")
    synced: dict[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Synced"), {}
    )
    confirmed = (
        bool(adopt_id)
        and status.get("podId") == adopt_id
        and synced.get("reason") not in (None, CONFIRMING)
    )
    created = str(meta.get("creationTimestamp") or "")
    return Claim(meta["namespace"], meta["name"], meta["uid"], created, bool(adopt_id), confirmed)
