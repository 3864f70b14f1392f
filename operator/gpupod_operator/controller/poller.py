"""The bulk status poller: ONE List call per interval for all GpuPods, whatever their number.

Each round maps every listed remote pod to its GpuPod through the registry, computes the status
the GpuPod should show (pure mapping in `domain.status`) and patches only the GpuPods whose
status would change. It polls faster while any GpuPod is in a transitional phase, and reports a
provider outage on the GpuPods (Ready=Unknown, an Event) and in metrics, then recovers by itself.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gpupod_operator.controller.events import EventRecorder
from gpupod_operator.controller.kube import Conflict, Gone, KubeApi, KubeError
from gpupod_operator.controller.metrics import Metrics
from gpupod_operator.controller.registry import Registry, Tracked
from gpupod_operator.domain import status as st
from gpupod_operator.domain.decisions import LIVE
from gpupod_operator.yotta import NotFound, Pod, PodStatus, YottaClient, YottaError

log = logging.getLogger(__name__)

OUTAGE_AFTER = 3  # consecutive failed polls before GpuPods are told the provider is unreachable
PATCH_CONCURRENCY = 16


@dataclass(frozen=True)
class Snapshot:
    """One List answer; `taken_at` is when the request was SENT, so anything we did to a pod
    after that time may be missing from it."""

    pods: dict[str, Pod]
    taken_at: dt.datetime


class Poller:
    def __init__(
        self,
        yotta: YottaClient,
        kube: KubeApi,
        events: EventRecorder,
        registry: Registry,
        metrics: Metrics,
        *,
        interval: float,
        fast_interval: float,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._yotta, self._kube, self._events = yotta, kube, events
        self._registry, self._metrics = registry, metrics
        self.interval, self.fast_interval = interval, fast_interval
        self._clock = clock
        self._wake = asyncio.Event()
        self.snapshot: Snapshot | None = None
        # pod ID (or remote name, for a create) -> when we last acted on it
        self._touched: dict[str, dt.datetime] = {}
        self.failures = 0
        self.last_success: float | None = None

    def touch(self, pod_id: str) -> None:
        """We are acting on this pod: snapshots sent before now no longer describe it."""
        self._touched[pod_id] = self._clock()

    def snapshot_after(self, since: dt.datetime, key: str) -> Snapshot | None:
        """The latest list if it was sent after `since` AND after our last `touch(key)`, else
        None. (Survival suite fix: a create's lookup must not trust a list that may have been
        answered before its POST landed; see `reconciler.Attempt.create`.)"""
        snap = self.snapshot
        if snap is None or snap.taken_at <= since:
            return None
        touched = self._touched.get(key)
        if touched is not None and touched >= snap.taken_at:
            return None
        return snap

    def cached(self, pod_id: str) -> Pod | None:
        """The pod as the latest list showed it, if that list is recent (one sync interval)
        and was sent after our last action on the pod; else None (the caller GETs it).

        Absence from a list is never an answer: only a GET may say a pod is gone. Deciding on
        a view a few seconds old is safe: the API refuses a pause/resume of a pod in another
        state (InvalidState -> we look again), and TERMINATED is final.
        """
        snap = self.snapshot
        if snap is None or self._clock() - snap.taken_at > dt.timedelta(seconds=self.interval):
            return None
        touched = self._touched.get(pod_id)
        if touched is not None and touched >= snap.taken_at:
            return None
        return snap.pods.get(pod_id)

    def poke(self) -> None:
        """Something just changed remotely: poll at the fast pace from now on."""
        self._wake.set()

    async def run(self) -> None:
        """Poll forever; the first round is the one `startup` already did, if any."""
        while True:
            if self.snapshot is not None:
                pace = self.fast_interval if self._registry.any_transitional() else self.interval
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=pace)
                    await asyncio.sleep(self.fast_interval)  # poked: let the change land first
                except TimeoutError:
                    pass
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # the poller must outlive any single bad round
                log.exception("status poll failed")

    async def poll_once(self) -> None:
        sent = self._clock()
        try:
            pods = await self._yotta.list_pods()
        except YottaError as e:
            await self._on_failure(e)
            return
        now = self._clock()
        recovered = self.failures >= OUTAGE_AFTER
        self.failures = 0
        self.last_success = time.time()
        self._metrics.remote_up.set(1)
        self._metrics.last_poll.set(self.last_success)
        by_id = {p.id: p for p in pods}
        self.snapshot = Snapshot(by_id, sent)
        self._touched = {k: v for k, v in self._touched.items() if v >= sent}

        gate = asyncio.Semaphore(PATCH_CONCURRENCY)

        async def one(t: Tracked) -> None:
            async with gate:
                await self._sync(t, by_id, now, recovered)

        await asyncio.gather(*(one(t) for t in self._registry.all() if t.pod_id and not t.deleting))
        await self._sweep_duplicates(pods)
        self._update_inventory(by_id)

    async def _sync(
        self, t: Tracked, by_id: dict[str, Pod], now: dt.datetime, recovered: bool
    ) -> None:
        assert t.pod_id is not None
        pod = by_id.get(t.pod_id)
        if pod is None:
            # Not listed: the list may omit finished pods. Only the pod's own GET says "gone".
            try:
                pod = await self._yotta.get_pod(t.pod_id)
            except NotFound:
                pod = None
            except YottaError as e:
                log.info("could not confirm pod %s: %s", t.pod_id, e)
                return
        update: dict[str, Any] = st.observed_status(pod, t.gpu_count)
        if update.get("phase") is None:
            update.pop("phase")
        phase = update.get("phase", t.status.get("phase"))
        update["conditions"] = st.merge_conditions(
            t.status.get("conditions"), st.ready_condition(phase, now, t.status.get("conditions"))
        )
        if not st.status_changed(t.status, update) and not recovered:
            return
        update["lastSyncTime"] = st.now_iso(now)
        try:
            result = await self._kube.patch_status(t.ref, update, precondition=True)
        except Conflict:
            return  # someone wrote meanwhile; the next round compares with the fresher status
        except Gone:
            self._registry.remove(t.ref.namespace, t.ref.name)
            return
        except KubeError as e:
            log.warning("status patch of %s/%s failed: %s", t.ref.namespace, t.ref.name, e)
            return
        self._metrics.status_patches.inc()
        self._registry.upsert(result)
        await self._events.transition(t.ref, t.status.get("phase"), update, t.pod_id)

    async def _sweep_duplicates(self, pods: list[Pod]) -> None:
        """Delete live pods that carry a GpuPod's exact remote name but are not its pod.

        Only possible when a create's answer was lost AND the provider listed the pod too late
        for the lookup: the name includes the GpuPod's uid, so such a pod is ours and unwanted.
        """
        names = self._registry.remote_names()
        live_ids = {p.id for p in pods if p.status in LIVE}
        for pod in pods:
            t = names.get(pod.name or "")
            if (
                t is None
                or t.pending
                or t.deleting
                or t.pod_id is None
                or pod.id == t.pod_id
                or pod.status not in LIVE
                or t.pod_id not in live_ids
            ):
                continue
            try:
                await self._yotta.delete_pod(pod.id)
            except NotFound:
                continue
            except YottaError as e:
                log.warning("could not delete duplicate pod %s: %s", pod.id, e)
                continue
            await self._events.warning(
                t.ref,
                "DuplicateDeleted",
                f"deleted duplicate remote pod {pod.id} (kept {t.pod_id})",
            )

    async def _on_failure(self, error: YottaError) -> None:
        self.failures += 1
        self._metrics.remote_up.set(0)
        log.warning("listing remote pods failed (%d in a row): %s", self.failures, error)
        if self.failures != OUTAGE_AFTER:
            return
        now = self._clock()
        for t in self._registry.all():
            if t.deleting or not t.pod_id:
                continue
            ready = st.condition(
                st.READY,
                False,
                "ProviderUnreachable",
                f"the Yotta API cannot be reached: {error}",
                None,
                now,
                None,
            )
            ready["status"] = "Unknown"
            conditions = st.merge_conditions(t.status.get("conditions"), ready)
            try:
                result = await self._kube.patch_status(t.ref, {"conditions": conditions})
                self._registry.upsert(result)
            except KubeError:
                continue
            await self._events.warning(
                t.ref, "ProviderUnreachable", "the Yotta API cannot be reached; status is stale"
            )

    def _update_inventory(self, by_id: dict[str, Pod]) -> None:
        tracked = self._registry.all()
        phases = [t.status.get("phase") or st.Phase.PENDING.value for t in tracked]
        gpus: list[tuple[str, int]] = []
        prices: list[str] = []
        for t in tracked:
            pod = by_id.get(t.pod_id or "")
            if pod is None or pod.status not in LIVE:
                continue
            gpus.append((pod.gpuType or t.gpu_type or "unknown", pod.gpuCount or t.gpu_count))
            price = st.price_per_hour(pod, t.gpu_count)
            if price is not None and pod.status != PodStatus.PAUSED:
                prices.append(price)
        self._metrics.set_inventory(phases, gpus, prices)
