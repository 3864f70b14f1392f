"""What the operator knows of every GpuPod, kept current from kopf's watch stream.

The poller needs, for each remote pod it lists, the GpuPod it belongs to and the status the
GpuPod shows now, so it can patch only what changed: this is that index (podId -> GpuPod).
Only the few fields it needs are kept, never whole bodies.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from gpupod_operator.controller.kube import ObjectRef
from gpupod_operator.domain.accounts import AccountId
from gpupod_operator.domain.adoption import Claim, claim_of
from gpupod_operator.domain.cost import Limits
from gpupod_operator.domain.status import TRANSITIONAL

_TRANSITIONAL = frozenset(p.value for p in TRANSITIONAL)


def _shared(value: Any) -> Any:
    """`value` (parsed JSON) rebuilt with its keys and short strings interned: one copy of
    "lastTransitionTime", "True", "Running"... for all GpuPods instead of one per GpuPod (the
    JSON decoder makes new ones for every object). A status is held per GpuPod for as long as
    it exists: 4.9 -> 1.8 KiB each, measured on a Running GpuPod's status."""
    if isinstance(value, dict):
        return {sys.intern(k): _shared(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shared(v) for v in value]
    if type(value) is str and len(value) <= 64:
        return sys.intern(value)
    return value


def _unix(timestamp: str | None) -> float | None:
    """An RFC 3339 timestamp of the API (``2026-12-02T00:00:00Z``) as Unix seconds."""
    if not timestamp:
        return None
    return dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


@dataclass
class Tracked:
    ref: ObjectRef
    generation: int
    gpu_count: int
    gpu_type: str | None
    pod_id: str | None
    remote_name: str | None
    pending: bool
    deleting: bool
    status: dict[str, Any] = field(default_factory=dict)
    # The pinned account (status.account); a pod created before accounts existed: the
    # operator's key. None: nothing created yet.
    account: AccountId | None = None
    adopt_pod_id: str | None = None  # spec.adopt.podId: the pod's name is not ours
    claim: Claim | None = None  # what it claims, on adopt_pod_id or pod_id (domain.adoption)
    deleting_since: float | None = None  # deletionTimestamp, Unix seconds
    limits: Limits = field(default_factory=Limits)  # lifetime and price cap (domain.cost)

    @classmethod
    def of(cls, body: Any) -> Tracked:
        meta, spec, status = body["metadata"], body.get("spec") or {}, body.get("status") or {}
        return cls(
            ref=ObjectRef.of(body),
            generation=int(meta.get("generation") or 0),
            gpu_count=int(spec.get("gpuCount") or 1),
            gpu_type=spec.get("gpuType"),
            pod_id=status.get("podId"),
            remote_name=status.get("remoteName"),
            pending=bool(status.get("createPending")),
            deleting=bool(meta.get("deletionTimestamp")),
            status=_shared({k: v for k, v in status.items() if k != "createPending"}),
            account=AccountId.pinned(status.get("account"), meta["namespace"])
            or (
                AccountId.operator() if status.get("podId") or status.get("createPending") else None
            ),
            adopt_pod_id=(spec.get("adopt") or {}).get("podId"),
            claim=claim_of(body),
            deleting_since=_unix(meta.get("deletionTimestamp")),
            limits=Limits.of(spec),
        )

    @property
    def adopts(self) -> bool:
        return self.adopt_pod_id is not None

    @property
    def transitional(self) -> bool:
        phase = self.status.get("phase")
        return self.pending or self.deleting or phase is None or phase in _TRANSITIONAL


class Registry:
    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str], Tracked] = {}
        # GpuPods being deleted that no longer need their account (remote pod gone).
        self._released: set[tuple[str, str]] = set()
        # GpuPods per account that still need it, kept with every change: a mass delete asks
        # on each release, and counting then was O(N) each, O(N^2) in all (make bench N=10000).
        self._users: Counter[AccountId] = Counter()

    def _count(self, key: tuple[str, str], sign: int) -> None:
        tracked = self._by_key.get(key)
        if tracked is not None and tracked.account is not None and key not in self._released:
            self._users[tracked.account] += sign
            if not self._users[tracked.account]:
                del self._users[tracked.account]

    def upsert(self, body: Any) -> Tracked:
        tracked = Tracked.of(body)
        key = (tracked.ref.namespace, tracked.ref.name)
        self._count(key, -1)
        self._by_key[key] = tracked
        self._count(key, +1)
        return tracked

    def remove(self, namespace: str, name: str) -> None:
        self._count((namespace, name), -1)
        self._by_key.pop((namespace, name), None)
        self._released.discard((namespace, name))

    def release(self, namespace: str, name: str) -> None:
        """This GpuPod needs its account no more (see `users`)."""
        self._count((namespace, name), -1)
        self._released.add((namespace, name))

    def get(self, namespace: str, name: str) -> Tracked | None:
        return self._by_key.get((namespace, name))

    def all(self) -> list[Tracked]:
        return list(self._by_key.values())

    def by_pod_id(self) -> dict[str, Tracked]:
        return {t.pod_id: t for t in self._by_key.values() if t.pod_id}

    def remote_names(self) -> dict[str, Tracked]:
        """GpuPods by the remote name they created under (an adopted pod's name is not ours:
        another pod may carry the same one)."""
        return {t.remote_name: t for t in self._by_key.values() if t.remote_name and not t.adopts}

    def claims(self, pod_id: str) -> list[Claim]:
        """Every GpuPod that records or adopts this remote pod (domain.adoption)."""
        return [
            t.claim
            for t in self._by_key.values()
            if t.claim is not None and pod_id in (t.pod_id, t.adopt_pod_id)
        ]

    def users(self, account: AccountId) -> int:
        """GpuPods pinned to `account` that still need it. Call right after `release` (no
        await between): of several GpuPods released at once, the last one then sees 0."""
        return self._users[account]

    def any_transitional(self) -> bool:
        return any(t.transitional for t in self._by_key.values())

    def __len__(self) -> int:
        return len(self._by_key)
