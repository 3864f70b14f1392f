"""What the operator knows of every GpuPod, kept current from kopf's watch stream.

The poller needs, for each remote pod it lists, the GpuPod it belongs to and the status the
GpuPod shows now, so it can patch only what changed: this is that index (podId -> GpuPod).
Only the few fields it needs are kept, never whole bodies.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from gpupod_operator.controller.kube import ObjectRef
from gpupod_operator.domain.adoption import Claim, claim_of
from gpupod_operator.domain.cost import Limits
from gpupod_operator.domain.status import TRANSITIONAL

_TRANSITIONAL = frozenset(p.value for p in TRANSITIONAL)


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
            status={k: v for k, v in status.items() if k != "createPending"},
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

    def upsert(self, body: Any) -> Tracked:
        tracked = Tracked.of(body)
        self._by_key[(tracked.ref.namespace, tracked.ref.name)] = tracked
        return tracked

    def remove(self, namespace: str, name: str) -> None:
        self._by_key.pop((namespace, name), None)

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

    def any_transitional(self) -> bool:
        return any(t.transitional for t in self._by_key.values())

    def __len__(self) -> int:
        return len(self._by_key)
