"""The bulk status poller: ONE List call per interval for all GpuPods, whatever their number.

Each round maps every listed remote pod to its GpuPod through the registry and hands what it
saw to the status writer, which projects it (`domain.status.project`, the same function the
reconciler uses) and writes only what changed. It polls faster while any GpuPod is in a
transitional phase, and reports a provider outage on the GpuPods (Ready=Unknown, an Event)
and in metrics, then recovers by itself.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from gpupod_operator.controller.events import EventRecorder
from gpupod_operator.controller.kube import KubeError
from gpupod_operator.controller.metrics import Metrics
from gpupod_operator.controller.registry import Registry, Tracked
from gpupod_operator.controller.status_writer import StatusWriter
from gpupod_operator.domain import cost
from gpupod_operator.domain import status as st
from gpupod_operator.domain.decisions import LIVE
from gpupod_operator.domain.failures import ProviderError
from gpupod_operator.provider import Provider
from gpupod_operator.yotta import Pod, PodStatus

log = logging.getLogger(__name__)

OUTAGE_AFTER = 3  # consecutive failed polls before GpuPods are told the provider is unreachable
PATCH_CONCURRENCY = 16


class Poller:
    def __init__(
        self,
        provider: Provider,
        writer: StatusWriter,
        events: EventRecorder,
        registry: Registry,
        metrics: Metrics,
        *,
        interval: float,
        fast_interval: float,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._provider, self._writer, self._events = provider, writer, events
        self._registry, self._metrics = registry, metrics
        self.interval, self.fast_interval = interval, fast_interval
        self._clock = clock
        self._wake = asyncio.Event()
        self.polled = False
        self.failures = 0
        self.last_success: float | None = None
        # The orphan sweep (controller.orphans), run on each round's list; None: off.
        self.orphans: Callable[[list[Pod]], Awaitable[None]] | None = None

    def poke(self) -> None:
        """Something just changed remotely: poll at the fast pace from now on."""
        self._wake.set()

    async def run(self) -> None:
        """Poll forever; the first round is the one `startup` already did, if any."""
        while True:
            if self.polled:
                pace = self.fast_interval if self._registry.any_transitional() else self.interval
                deadline = cost.next_deadline(
                    [t.status for t in self._registry.all()], self._clock(), self.interval
                )
                if deadline is not None:  # a lifetime to warn about or enforce: be there
                    pace = min(pace, deadline or self.fast_interval)
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
        self.polled = True
        try:
            snap = await self._provider.list_all()
        except ProviderError as e:
            await self._on_failure(e)
            return
        self.failures = 0
        self.last_success = time.time()
        self._metrics.remote_up.set(1)
        self._metrics.last_poll.set(self.last_success)
        await self._each(self._sync, snap.pods)
        await self._sweep_duplicates(list(snap.pods.values()))
        self._update_inventory(snap.pods)
        if self.orphans is not None:
            try:
                await self.orphans(list(snap.pods.values()))
            except (KubeError, ProviderError) as e:
                log.warning("orphan sweep skipped this round: %s", e)

    async def _each(self, one: Callable[[Tracked, Any], Any], arg: Any) -> None:
        """`one(t, arg)` for every GpuPod with a pod that is not being deleted, a few at a
        time; one GpuPod's failure never ends the round for the others."""
        gate = asyncio.Semaphore(PATCH_CONCURRENCY)

        async def guarded(t: Tracked) -> None:
            async with gate:
                try:
                    await one(t, arg)
                except (KubeError, ProviderError) as e:
                    log.warning("status of %s/%s not synced: %s", t.ref.namespace, t.ref.name, e)

        live = [t for t in self._registry.all() if t.pod_id and not t.deleting and not t.pending]
        await asyncio.gather(*(guarded(t) for t in live))

    async def _sync(self, t: Tracked, by_id: dict[str, Pod]) -> None:
        assert t.pod_id is not None
        pod = by_id.get(t.pod_id)
        if pod is None:
            # Not listed: the list may omit finished pods. Only the pod's own GET says "gone".
            pod = await self._provider.get(t.pod_id)
        seen = st.Observed(pod)
        now = self._clock()
        counted: list[cost.Projection] = []

        def compute(current: Any, _gen: int) -> dict[str, Any] | None:
            # Running time and spend are counted here, from this list (domain.cost).
            counted[:] = [
                cost.project(
                    current,
                    now=now,
                    limits=t.limits,
                    gpu_count=t.gpu_count,
                    seen=seen,
                    accrue=True,
                    warn_within=self.interval,
                )
            ]
            return st.project(
                current, now=now, gpu_count=t.gpu_count, seen=seen, facts=counted[0].fields
            )

        # On a conflict, someone wrote meanwhile; the next round counts from that.
        written = await self._writer.write(t.ref, t.status, t.generation, compute, reread=False)
        if written is not None and counted[0].expiring is not None:
            self._events.warning(t.ref, "MaxRunDurationExpiring", counted[0].expiring)

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
                await self._provider.delete(pod.id)
            except ProviderError as e:
                log.warning("could not delete duplicate pod %s: %s", pod.id, e)
                continue
            self._events.warning(
                t.ref,
                "DuplicateDeleted",
                f"deleted duplicate remote pod {pod.id} (kept {t.pod_id})",
            )

    async def _on_failure(self, error: ProviderError) -> None:
        self.failures += 1
        self._metrics.remote_up.set(0)
        log.warning("listing remote pods failed (%d in a row): %s", self.failures, error)
        if self.failures == OUTAGE_AFTER:
            await self._each(self._report_outage, f"the Yotta API cannot be reached: {error}")

    async def _report_outage(self, t: Tracked, message: str) -> None:
        now = self._clock()
        written = await self._writer.write(
            t.ref,
            t.status,
            t.generation,
            lambda current, _gen: st.project(
                current, now=now, gpu_count=t.gpu_count, unreachable=message
            ),
        )
        if written is not None:
            self._events.warning(
                t.ref, "ProviderUnreachable", "the Yotta API cannot be reached; status is stale"
            )

    def _update_inventory(self, by_id: dict[str, Pod]) -> None:
        tracked = self._registry.all()
        phases = [t.status.get("phase") or st.Phase.PENDING.value for t in tracked]
        gpus: list[tuple[str, int]] = []
        prices: list[str] = []
        per_pod: dict[tuple[str, str], str] = {}
        for t in tracked:
            pod = by_id.get(t.pod_id or "")
            if pod is None or pod.status not in LIVE:
                continue
            gpus.append((pod.gpuType or t.gpu_type or "unknown", pod.gpuCount or t.gpu_count))
            price = st.price_per_hour(pod, t.gpu_count)
            if price is not None:
                billed = price if pod.status != PodStatus.PAUSED else "0"
                per_pod[(t.ref.namespace, t.ref.name)] = billed
                if pod.status != PodStatus.PAUSED:
                    prices.append(price)
        self._metrics.set_inventory(phases, gpus, prices)
        self._metrics.set_pod_prices(per_pod)
