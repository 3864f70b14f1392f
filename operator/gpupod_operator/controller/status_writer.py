"""The one way status reaches the API server: a projection written with a precondition.

A writer hands over a function from the status the GpuPod shows now to the patch it wants
(`domain.status.project` underneath). The patch carries the resourceVersion it was computed
from; on a 409 the writer reads the object again and computes again from the fresher status,
so a writer only ever changes what it knows about and never undoes another writer's fields
(a merge patch replaces the whole `conditions` list: without the precondition it would).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from gpupod_operator.controller.events import EventRecorder
from gpupod_operator.controller.kube import Conflict, Gone, ObjectRef
from gpupod_operator.controller.metrics import Metrics
from gpupod_operator.controller.registry import Registry
from gpupod_operator.domain.cost import accrued_delta

log = logging.getLogger(__name__)

Compute = Callable[[Mapping[str, Any], int], dict[str, Any] | None]
CONFLICT_RETRIES = 4


class StatusApi(Protocol):
    """The part of `kube.KubeApi` the writer uses."""

    async def get(self, ref: ObjectRef) -> dict[str, Any]: ...
    async def patch_status(self, ref: ObjectRef, status: dict[str, Any]) -> dict[str, Any]: ...


class StatusWriter:
    def __init__(
        self, kube: StatusApi, registry: Registry, events: EventRecorder, metrics: Metrics
    ) -> None:
        self._kube, self._registry = kube, registry
        self._events, self._metrics = events, metrics

    async def write(
        self,
        ref: ObjectRef,
        status: Mapping[str, Any],
        generation: int,
        compute: Compute,
        *,
        reread: bool = True,
    ) -> dict[str, Any] | None:
        """Write `compute(status, generation)` at `ref.resource_version`. After a conflict
        `status` is the fresh one but `generation` stays: it is the one the writer acted on,
        and a newer spec it has not seen must not be claimed as observed.

        Posts the Event of a phase change it wrote. Returns the object as written (None
        when there was nothing to write, or when the object is gone). With `reread=False` a
        conflict is returned as None instead of recomputed: the poller's next round compares
        with the fresher status anyway.
        Raises Conflict when the object keeps changing, KubeError when the API fails.
        """
        for _ in range(CONFLICT_RETRIES):
            patch = compute(status, generation)
            if patch is None:
                return None
            try:
                result = await self._kube.patch_status(ref, patch)
            except Gone:
                self._registry.remove(ref.namespace, ref.name)
                return None
            except Conflict:
                if not reread:
                    return None
                try:
                    fresh = await self._kube.get(ref)
                except Gone:
                    self._registry.remove(ref.namespace, ref.name)
                    return None
                if fresh["metadata"].get("uid") != ref.uid:
                    return None  # a new object with the same name: not ours to write
                ref = ObjectRef.of(fresh)
                status = fresh.get("status") or {}
                continue
            self._metrics.status_patches.inc()
            # The patch applied to exactly `status` (the precondition): its spend is new.
            self._metrics.add_cost(ref.namespace, accrued_delta(status, patch))
            self._registry.upsert(result)
            # The phase change as written, whoever wrote it: one place for these Events.
            pod_id = patch.get("podId", status.get("podId"))
            self._events.transition(ref, status.get("phase"), patch, pod_id)
            return result
        raise Conflict(409, f"{ref.namespace}/{ref.name} kept changing; status not written")
