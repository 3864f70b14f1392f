"""GpuQuota admission, release and upkeep: the I/O around domain/quota.py.

- `admit` runs before the create marker: for every GpuQuota of the namespace (as kopf's watch
  shows it, or as our last write returned it: controller.listers), decide, and write the new
  status with the resourceVersion read as a precondition (a 409 is another writer that got
  there first: read it fresh and decide again). One lock per
  namespace serialises this process's admissions, so a burst causes no conflict storm; the
  precondition still holds against any other writer (a second operator during a handover).
- `release` removes a reservation once the remote pod is confirmed gone, then wakes the
  upkeep loop, which reconciles the oldest waiting GpuPods that fit now (`kick`), without
  waiting for kopf's retry timer.
- The loop (every PASS_INTERVAL, or when woken) also drops reservations whose GpuPod no
  longer exists, remembers the prices the provider quoted, reports status.spend and
  status.waiting, and sets the gpupod_quota_* metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from decimal import Decimal, InvalidOperation
from typing import Any

from gpupod_operator.controller.kube import Conflict, Gone, KubeApi, KubeError, ObjectRef
from gpupod_operator.controller.listers import Lister, LiveLister
from gpupod_operator.controller.metrics import Metrics
from gpupod_operator.controller.registry import Registry
from gpupod_operator.domain import quota as dq
from gpupod_operator.domain.spec import GpuPodSpec
from gpupod_operator.yotta import GpuType, Pod

log = logging.getLogger(__name__)

PLURAL = "gpuquotas"
MAX_SWAPS = 10  # compare-and-swap rounds per quota and call before giving up (kopf retries)
PASS_INTERVAL = 10.0  # seconds between upkeep passes when nothing wakes the loop
WAIT_DELAY = 30.0  # kopf's retry of a waiting GpuPod: the fallback; a release kicks at once

QUOTE_EVERY = 60.0  # seconds between asks for the provider's price list, at most
Kick = Callable[[ObjectRef], Awaitable[None]]
Quote = Callable[[], Awaitable[list[GpuType]]]  # the provider's GPU types, with prices


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)) if value not in (None, "") else None
    except InvalidOperation:
        return None


class QuotaController:
    def __init__(
        self,
        kube: KubeApi,
        registry: Registry,
        metrics: Metrics,
        namespaces: tuple[str, ...] = (),
        clock: Callable[[], dt.datetime] = _now,
        quote: Quote | None = None,
        lister: Lister | None = None,
    ) -> None:
        self._kube, self._registry, self._metrics = kube, registry, metrics
        self._lister = lister or LiveLister(kube, PLURAL)
        self._quote, self._quoted_at = quote, -QUOTE_EVERY
        self._namespaces = namespaces  # empty: every namespace
        self._clock = clock
        self._locks: dict[str, asyncio.Lock] = {}
        self.prices: dict[str, Decimal] = {}  # GPU type -> USD per GPU-hour, last quoted
        self._waiting: dict[str, dict[str, tuple[dq.Request, ObjectRef]]] = {}
        self._kicking: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._seen: set[str] = set()  # namespaces where quotas were found
        self.kick: Kick | None = None  # set at startup: reconcile one GpuPod now

    def _lock(self, namespace: str) -> asyncio.Lock:
        return self._locks.setdefault(namespace, asyncio.Lock())

    def request(self, ref: ObjectRef, spec: GpuPodSpec, created: str) -> dq.Request:
        return dq.Request(
            uid=ref.uid,
            name=ref.name,
            created=created,
            gpu_type=spec.gpuType,
            gpus=spec.gpuCount,
            price=dq.estimate(spec.gpuType, spec.gpuCount, self.prices),
        )

    def waiting(self, namespace: str) -> list[dq.Request]:
        return [r for r, _ in self._waiting.get(namespace, {}).values()]

    async def _quotas(self, namespace: str) -> list[dict[str, Any]]:
        found = await self._lister.list(namespace)
        if found:
            self._seen.add(namespace)
        return found

    async def _swap(
        self, body: dict[str, Any], decide: Callable[[dq.Quota], dq.Outcome]
    ) -> tuple[dq.Outcome, bool]:
        """Decide on `body` and write the outcome as a compare-and-swap, re-reading on a
        conflict; (the outcome, whether a status was written)."""
        for _ in range(MAX_SWAPS):
            quota = dq.Quota.parse(body)
            self._learn_from(quota)
            outcome = decide(quota)
            if not isinstance(outcome, dq.Admitted) or outcome.status is None:
                return outcome, False
            try:
                written = await self._kube.patch_object_status(
                    PLURAL, quota.namespace, quota.name, quota.resource_version, outcome.status
                )
                self._lister.wrote(written)
                return outcome, True
            except Conflict:
                self._lister.conflicted(quota.namespace, quota.name)
                body = await self._kube.get_object(PLURAL, quota.namespace, quota.name)
                self._lister.wrote(body)
        raise KubeError(409, f"GpuQuota {body['metadata']['name']} keeps changing; trying again")

    async def _ask_prices(self, gpu_type: str | None) -> None:
        """No price known for `gpu_type`: ask the provider's GPU type list (not more than
        once a minute; a failure leaves the price unknown, and the GpuPod waits)."""
        now = time.monotonic()
        if self._quote is None or not gpu_type or now - self._quoted_at < QUOTE_EVERY:
            return
        self._quoted_at = now
        try:
            types = await self._quote()
        except Exception as e:  # the provider's failure: say it, estimate on without
            log.warning("the provider's price list could not be read: %s", e)
            return
        for t in types:
            self.prices = dq.learn(self.prices, t.gpuType, t.singleCardPrice)

    def _learn_from(self, quota: dq.Quota) -> None:
        for gpu_type, price in quota.prices.items():
            self.prices.setdefault(gpu_type, price)

    async def admit(self, ref: ObjectRef, spec: GpuPodSpec, created: str) -> dq.Refused | None:
        """Reserve this GpuPod's capacity in every GpuQuota of its namespace (None), or say
        why it must wait (and remember it as waiting). Raises KubeError (retry later)."""
        ns = ref.namespace
        if not await self._quotas(ns):  # no quota here: nothing to serialise or write
            self._waiting.get(ns, {}).pop(ref.uid, None)
            return None
        async with self._lock(ns):
            bodies = await self._quotas(ns)  # again, under the lock: the freshest view
            known = {
                **self.prices,
                **{k: v for b in bodies for k, v in dq.Quota.parse(b).prices.items()},
            }
            if spec.gpuType not in known and any(dq.Quota.parse(b).hard.price for b in bodies):
                await self._ask_prices(spec.gpuType)
            request = self.request(ref, spec, created)
            waiting = self.waiting(ns)
            written: list[str] = []
            for body in bodies:
                outcome, wrote = await self._swap(
                    body,
                    lambda q: dq.admit(q, request, waiting, self._clock(), self.prices),
                )
                if isinstance(outcome, dq.Refused):
                    # All quotas or none: give back what this GpuPod holds in the others (a
                    # create is decided only when no remote pod of it exists, so nothing
                    # held is in use: e.g. the old amounts of a Recreate that needs more).
                    for other in bodies:
                        if ref.uid in dq.Quota.parse(other).reservations or (
                            other["metadata"]["name"] in written
                        ):
                            await self._release_in(ns, other["metadata"]["name"], ref.uid)
                    self._waiting.setdefault(ns, {})[ref.uid] = (request, ref)
                    self._report(ns, bodies)
                    return outcome
                if wrote:
                    written.append(body["metadata"]["name"])
            self._waiting.get(ns, {}).pop(ref.uid, None)
        if written:
            self._wake.set()  # metrics and status.waiting
        return None

    async def _release_in(self, namespace: str, name: str, uid: str) -> None:
        body = await self._kube.get_object(PLURAL, namespace, name)
        await self._swap(body, lambda q: dq.Admitted(dq.release(q, uid)))

    async def release(self, ref: ObjectRef) -> None:
        """The remote pod is confirmed gone: give its capacity back, and let the oldest
        waiting GpuPods that fit now be admitted. Errors are logged: the upkeep loop drops a
        reservation whose GpuPod is gone anyway, and a deletion must never hang on a quota."""
        ns = ref.namespace
        self._waiting.get(ns, {}).pop(ref.uid, None)
        try:
            if not await self._quotas(ns):
                return
            async with self._lock(ns):
                for body in await self._quotas(ns):
                    await self._swap(body, lambda q: dq.Admitted(dq.release(q, ref.uid)))
        except KubeError as e:
            log.warning("quota of %s/%s not released yet: %s", ns, ref.name, e)
        self._wake.set()

    async def correct(self, ref: ObjectRef, pod: Pod) -> None:
        """After the create: the reservation holds the price the provider quoted, and that
        quote is the next estimate for its GPU type."""
        prices = dq.learn(self.prices, pod.gpuType, pod.singleCardPrice)
        self.prices = prices
        actual = pod.price_per_hour
        if actual is None:
            return
        try:
            if not await self._quotas(ref.namespace):
                return
            async with self._lock(ref.namespace):
                for body in await self._quotas(ref.namespace):
                    await self._swap(
                        body, lambda q: dq.Admitted(dq.correct(q, ref.uid, actual, prices))
                    )
        except KubeError as e:
            log.warning("price of %s/%s not corrected in its quota: %s", ref.namespace, ref.name, e)

    def forget(self, ref: ObjectRef) -> None:
        self._waiting.get(ref.namespace, {}).pop(ref.uid, None)

    # ------------------------------------------------------------ upkeep

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=PASS_INTERVAL)
            self._wake.clear()  # after the wait: a wake-up during the pass runs one more
            try:
                await self.pass_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must outlive any single bad pass
                log.exception("quota upkeep failed")

    async def _all_quotas(self) -> list[dict[str, Any]]:
        """Every GpuQuota this process serves: one list across the cluster (-A), else the
        watched namespaces that have GpuPods or had quotas (a watched namespace may not
        exist yet, and its Role with it)."""
        if not self._namespaces:
            return await self._lister.list()
        live = {t.ref.namespace for t in self._registry.all()} | set(self._waiting) | self._seen
        out: list[dict[str, Any]] = []
        for ns in sorted(live & set(self._namespaces)):
            out.extend(await self._lister.list(ns))
        return out

    def _learn_from_registry(self) -> None:
        for t in self._registry.all():
            price = _decimal(t.status.get("pricePerHour"))
            if t.gpu_type and price is not None and t.gpu_count:
                self.prices[t.gpu_type] = price / t.gpu_count

    async def _exists(self, namespace: str, name: str, uid: str) -> bool:
        try:
            body = await self._kube.get(ObjectRef(namespace, name, uid))
        except Gone:
            return False
        return bool(body["metadata"].get("uid") == uid)

    async def pass_once(self) -> None:
        self._learn_from_registry()
        by_ns: dict[str, list[dict[str, Any]]] = {}
        for body in await self._all_quotas():
            by_ns.setdefault(body["metadata"]["namespace"], []).append(body)
        for ns in list(self._waiting):
            if ns not in by_ns:  # its quotas were deleted: let the waiting ones try again
                by_ns[ns] = []
        for ns, bodies in by_ns.items():
            try:
                await self._upkeep(ns, sorted(bodies, key=lambda b: b["metadata"]["name"]))
            except KubeError as e:
                log.warning("quota upkeep of namespace %s: %s", ns, e)

    async def _upkeep(self, ns: str, bodies: list[dict[str, Any]]) -> None:
        tracked = {t.ref.uid: t for t in self._registry.all() if t.ref.namespace == ns}
        waiting = self._waiting.setdefault(ns, {})
        for uid in [u for u in waiting if u not in tracked]:
            waiting.pop(uid)  # deleted while waiting
        spends = [_decimal((t.status.get("cost") or {}).get("accrued")) for t in tracked.values()]
        known = [s for s in spends if s is not None]
        spend = sum(known, Decimal(0)) if known else None
        fresh: list[dict[str, Any]] = []
        async with self._lock(ns):
            for body in bodies:
                quota = dq.Quota.parse(body)
                gone = [
                    uid
                    for uid, r in quota.reservations.items()
                    if uid not in tracked and not await self._exists(ns, r.name, uid)
                ]
                up = dq.upkeep(
                    quota, gone, self.prices, spend, len(waiting), body.get("status") or {}
                )
                if up.dropped:
                    log.info(
                        "GpuQuota %s/%s: dropped reservations of deleted GpuPods %s",
                        ns,
                        quota.name,
                        ", ".join(up.dropped),
                    )
                if up.status is not None:
                    # On a conflict an admission wrote meanwhile: the next pass looks again.
                    try:
                        body = await self._kube.patch_object_status(
                            PLURAL, ns, quota.name, quota.resource_version, up.status
                        )
                        self._lister.wrote(body)
                    except Conflict:
                        self._lister.conflicted(ns, quota.name)
                fresh.append(body)
        self._report(ns, fresh)
        self._kick_fitting(ns, [dq.Quota.parse(b) for b in fresh])

    def _report(self, ns: str, bodies: list[dict[str, Any]]) -> None:
        self._metrics.set_quota(ns, dq.tightest(dq.Quota.parse(b) for b in bodies))

    def _kick_fitting(self, ns: str, quotas: list[dq.Quota]) -> None:
        """Reconcile now the waiting GpuPods that the quotas admit (oldest first)."""
        if self.kick is None:
            return
        entries = sorted(self._waiting.get(ns, {}).values(), key=lambda e: e[0].order)
        everyone = [r for r, _ in entries]
        for request, ref in entries:
            if request.uid in self._kicking:
                continue
            price = dq.estimate(request.gpu_type, request.gpus, self.prices)
            fresh = replace(request, price=price)
            if all(isinstance(dq.admit(q, fresh, everyone), dq.Admitted) for q in quotas):
                log.info("%s/%s fits its quota now: reconciling it", ns, ref.name)
                self._kicking[request.uid] = asyncio.create_task(self._kick(request.uid, ref))

    async def aclose(self) -> None:
        """Stop the reconciles kicked off and not yet done (at shutdown)."""
        tasks = list(self._kicking.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _kick(self, uid: str, ref: ObjectRef) -> None:
        assert self.kick is not None
        try:
            await self.kick(ref)
        except Exception:
            log.exception("reconciling %s/%s after capacity freed", ref.namespace, ref.name)
        finally:
            self._kicking.pop(uid, None)
