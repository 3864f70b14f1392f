"""`spec.adopt`: who owns a remote pod that GpuPods claim, decided without a cluster.

A remote pod has at most one GpuPod. Claimants are the GpuPods that record the pod's ID in
their status and those whose `spec.adopt.podId` names it. The owner is, deterministically:
the GpuPod that created the pod itself (its status records it without `adopt`), else the
oldest adopter by (creationTimestamp, UID). Every claimant computes the same owner from the
same claims, so two GpuPods applied at once cannot both keep the pod: each reconcile sees at
least the claimants tracked before it, and a claimant that finds an older one gives way
before it acts (a reconcile that adopted too early only recorded an ID: adoption has no
remote effect).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Claim:
    namespace: str
    name: str
    uid: str
    created: str  # metadata.creationTimestamp (RFC 3339 UTC: sorts as time)
    adopts: bool  # claims through spec.adopt (else: records a pod it created)

    @property
    def key(self) -> tuple[bool, str, str]:
        return (self.adopts, self.created, self.uid)


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
