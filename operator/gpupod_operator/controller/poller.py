"""The bulk status poller: ONE List call per account per interval, whatever the number of GpuPods.

Each round binds every account a GpuPod is pinned to (plus the operator's own key), lists its
pods with its current key, maps each listed remote pod to its GpuPod within that account
through the registry and hands what it saw to the status writer, which projects it
(`domain.status.project`, the same function the reconciler uses) and writes only what
changed. It polls faster while any GpuPod is in a transitional phase, and reports a provider
outage on the GpuPods (Ready=Unknown, an Event) and in metrics, then recovers by itself.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from gpupod_operator.controller.accounts import Accounts, Binding
from gpupod_operator.controller.events import EventRecorder
from gpupod_operator.controller.kube import KubeError
from gpupod_operator.controller.metrics import Metrics
from gpupod_operator.controller.registry import Registry, Tracked
from gpupod_operator.controller.status_writer import StatusWriter
from gpupod_operator.domain import accounts as acc
from gpupod_operator.domain import cost
from gpupod_operator.domain import status as st
from gpupod_operator.domain.accounts import AccountId, AccountUnavailable
from gpupod_operator.domain.decisions import LIVE, Forget
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
        accounts: Accounts | None = None,
    ) -> None:
        # `provider` is the operator's own key's; `accounts` (if given) has it and the others.
        self._writer, self._events = writer, events
        self._accounts = accounts or Accounts.static(provider)
        self._registry, self._metrics = registry, metrics
        self.interval, self.fast_interval = interval, fast_interval
        self._clock = clock
        self._wake = asyncio.Event()
        self.polled = False
        self.failures = 0  # consecutive failed rounds of the account failing longest
        self._failures: dict[AccountId, int] = {}
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

    def _groups(self) -> dict[AccountId, list[Tracked]]:
        """The GpuPods of each account to list (the operator's own key always)."""
        groups: dict[AccountId, list[Tracked]] = {AccountId.operator(): []}
        for t in self._registry.all():
            if t.account is not None:
                groups.setdefault(t.account, []).append(t)
        return groups

    async def poll_once(self) -> None:
        self.polled = True
        listed: dict[str, Pod] = {}
        ok = True
        for account, tracked in sorted(self._groups().items()):
            pods = await self._poll_account(account, tracked)
            if pods is None:
                ok = False
                continue
            listed.update(pods)
            if self.orphans is not None and account == AccountId.operator():
                # The sweep knows the operator's own account only (controller.orphans).
                try:
                    await self.orphans(list(pods.values()))
                except (KubeError, ProviderError) as e:
                    log.warning("orphan sweep skipped this round: %s", e)
        self.failures = max(self._failures.values(), default=0)
        self._metrics.remote_up.set(1 if ok else 0)
        if ok or len(listed):
            self.last_success = time.time()
            self._metrics.last_poll.set(self.last_success)
        self._update_inventory(listed)

    async def _poll_account(
        self, account: AccountId, tracked: list[Tracked]
    ) -> dict[str, Pod] | None:
        """One List with the account's current key; its pods by ID (None: failed)."""
        try:
            binding = await self._accounts.bind(account)
        except (AccountUnavailable, KubeError) as e:
            # Its GpuPods show why on their next reconcile; nothing is judged without a key.
            log.warning("not polling %s: %s", account, e)
            return {}
        try:
            snap = await binding.provider.list_all()
        except ProviderError as e:
            await self._on_failure(account, tracked, e)
            return None
        self._failures.pop(account, None)
        await self._each(lambda t, by_id: self._sync(binding, t, by_id), snap.pods, tracked)
        await self._sweep_duplicates(binding, list(snap.pods.values()), tracked)
        if binding.source is not None and self._registry.users(account):
            try:
                # A held account stays held while in use (after a lost race at create).
                await self._accounts.hold(binding)
            except (AccountUnavailable, KubeError) as e:
                log.warning("account %s not held: %s", account, e)
        return snap.pods

    async def _each(
        self, one: Callable[[Tracked, Any], Any], arg: Any, tracked: list[Tracked]
    ) -> None:
        """`one(t, arg)` for every GpuPod of `tracked` with a pod that is not being deleted, a
        few at a time; one GpuPod's failure never ends the round for the others."""
        gate = asyncio.Semaphore(PATCH_CONCURRENCY)

        async def guarded(t: Tracked) -> None:
            async with gate:
                # As it is now: a GpuPod whose deletion began during the round (its finalizer
                # is about to go) needs no status write, and the newest status is the base.
                now = self._registry.get(t.ref.namespace, t.ref.name)
                if now is None or now.ref.uid != t.ref.uid or not _polled(now):
                    return
                try:
                    await one(now, arg)
                except (KubeError, ProviderError) as e:
                    log.warning("status of %s/%s not synced: %s", t.ref.namespace, t.ref.name, e)

        await asyncio.gather(*(guarded(t) for t in tracked if _polled(t)))

    async def _sync(self, binding: Binding, t: Tracked, by_id: dict[str, Pod]) -> None:
        assert t.pod_id is not None
        pod = by_id.get(t.pod_id)
        if pod is None:
            # Not listed: the list may omit finished pods. Only the pod's own GET says "gone".
            pod = await binding.provider.get(t.pod_id)
        pinned = (t.status.get("account") or {}).get("keyFingerprint")
        changed = acc.key_changed(pinned, binding.fingerprint)
        seen: st.Observed | None = st.Observed(pod)
        sync: st.Sync | None = None
        facts: dict[str, Any] = {}
        if pod is None and changed:
            # Not found under another key proves nothing: never "Lost" on its word.
            wait = acc.absence_unproven(Forget(), seen, None, account=binding.account, changed=True)
            assert wait is not None
            seen, sync = None, st.Sync.failed(wait.reason, wait.message)
        elif pod is not None and changed:
            facts["account"] = binding.account.pin(binding.fingerprint)  # rotated: pin it
        synced: dict[str, Any] = next(
            (c for c in t.status.get("conditions") or [] if c.get("type") == st.SYNCED), {}
        )
        if pod is not None and synced.get("reason") == acc.ACCOUNT_CHANGED:
            sync = st.Sync.ok()  # the pod is visible again
        now = self._clock()
        counted: list[cost.Projection] = []

        def compute(current: Any, gen: int) -> dict[str, Any] | None:
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
                current,
                now=now,
                gpu_count=t.gpu_count,
                generation=gen if sync is not None else None,
                seen=seen,
                facts={**counted[0].fields, **facts},
                sync=sync,
            )

        # On a conflict, someone wrote meanwhile; the next round counts from that.
        written = await self._writer.write(t.ref, t.status, t.generation, compute, reread=False)
        if written is not None and counted[0].expiring is not None:
            self._events.warning(t.ref, "MaxRunDurationExpiring", counted[0].expiring)
        if written is not None and sync is not None and sync.reason == acc.ACCOUNT_CHANGED:
            self._events.warning(t.ref, sync.reason, sync.message)

    async def _sweep_duplicates(
        self, binding: Binding, pods: list[Pod], tracked: list[Tracked]
    ) -> None:
        """Delete live pods that carry a GpuPod's exact remote name but are not its pod.

        Only possible when a create's answer was lost AND the provider listed the pod too late
        for the lookup: the name includes the GpuPod's uid, so such a pod is ours and unwanted.
        """
        names = {t.remote_name: t for t in tracked if t.remote_name}
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
                await binding.provider.delete(pod.id)
            except ProviderError as e:
                log.warning("could not delete duplicate pod %s: %s", pod.id, e)
                continue
            self._events.warning(
                t.ref,
                "DuplicateDeleted",
                f"deleted duplicate remote pod {pod.id} (kept {t.pod_id})",
            )

    async def _on_failure(
        self, account: AccountId, tracked: list[Tracked], error: ProviderError
    ) -> None:
        failures = self._failures[account] = self._failures.get(account, 0) + 1
        log.warning("listing remote pods of %s failed (%d in a row): %s", account, failures, error)
        if failures == OUTAGE_AFTER:
            message = f"the Yotta API cannot be reached: {error}"
            await self._each(self._report_outage, message, tracked)

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


def _polled(t: Tracked) -> bool:
    """The poller writes the status of a GpuPod with a pod that is not being deleted."""
    return bool(t.pod_id) and not t.deleting and not t.pending
