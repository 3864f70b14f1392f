"""The orphan sweep (I/O around `domain.orphans`), the released-pods record and the cluster id.

Each bulk poll hands its pod list here. Pods named by this cluster that the registry cannot
account for are candidates; they are confirmed by a FRESH list of GpuPods and the released
record, both read after the remote list was sent (`domain.orphans.Known` says why that order
makes the decision sound), so an operator that has only just started, whose watch has not
listed every GpuPod yet, never takes a pod for an orphan.

`report` posts one log line and one Event per orphan when it is first seen and sets the
gauge `gpupod_orphan_pods`; `delete` also terminates it once it has been seen for the grace.

Released pods (`deletionPolicy: Orphan`, adopt mode Observe) are kept in a ConfigMap in the
operator's namespace, written before the GpuPod's finalizer goes: durable, in the cluster,
shared by every replica; entries whose pod is gone are pruned every PRUNE_EVERY rounds, so it
stays far below a ConfigMap's size limit. Without a namespace of its own (run outside a
cluster without POD_NAMESPACE) the operator cannot keep that record, so the sweep is off.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import kopf

from gpupod_operator.config import OperatorConfig
from gpupod_operator.controller.events import EventRecorder
from gpupod_operator.controller.kube import KubeApi, KubeError, ObjectRef
from gpupod_operator.controller.metrics import Metrics
from gpupod_operator.controller.registry import Registry
from gpupod_operator.domain import orphans as o
from gpupod_operator.domain.decisions import Recorded
from gpupod_operator.domain.failures import ProviderError
from gpupod_operator.domain.spec import cluster_tag
from gpupod_operator.provider import Provider
from gpupod_operator.yotta import Pod

if TYPE_CHECKING:
    from gpupod_operator.controller.runtime import Runtime

log = logging.getLogger(__name__)

RELEASED_CONFIGMAP = "gpupod-released-pods"
DEFAULT_CLUSTER_NAMESPACE = "kube-system"
PRUNE_EVERY = 10  # sweep rounds between prunes of the released-pods record
PRUNE_GETS = 20  # at most this many GETs of unlisted released pods per prune


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


async def resolve_cluster_id(config: OperatorConfig, kube: KubeApi) -> OperatorConfig:
    """`--cluster-id`, else the kube-system namespace UID (read once, at startup)."""
    cluster_id = (config.cluster_id or "").strip()
    if not cluster_id:
        try:
            cluster_id = await kube.namespace_uid(DEFAULT_CLUSTER_NAMESPACE)
        except KubeError as e:
            raise kopf.PermanentError(
                f"cannot read the UID of namespace {DEFAULT_CLUSTER_NAMESPACE}, the default "
                f"cluster id ({e}): grant get on it, or give --cluster-id"
            ) from None
    log.info(
        "cluster id %s: remote names carry -%s-<GpuPod UID>", cluster_id, cluster_tag(cluster_id)
    )
    return replace(config, cluster_id=cluster_id)


def attach_orphans(rt: Runtime) -> None:
    """At startup: the released-pods record and the sweep on the poller's rounds."""
    config = rt.config
    home = own_namespace(config)
    if home is None:
        log.warning(
            "orphan sweep off: no namespace of the operator's own to record released pods in "
            "(set POD_NAMESPACE, as the Helm chart does)"
        )
        return
    rt.released = Released(rt.kube, home)
    sweep = OrphanSweep(
        config, rt.kube, rt.provider, rt.events, rt.metrics, rt.registry, rt.released
    )
    rt.poller.orphans = sweep.sweep
    log.info("orphan sweep: %s, grace %g s", config.orphans, config.orphan_grace)


def own_namespace(config: OperatorConfig) -> str | None:
    from gpupod_operator.controller.leader import default_namespace

    return config.pod_namespace or default_namespace()


def event_target(config: OperatorConfig) -> ObjectRef | None:
    """The operator's own Pod (downward API: POD_NAME, POD_NAMESPACE, POD_UID), if known."""
    if not (config.pod_name and config.pod_namespace):
        return None
    return ObjectRef(config.pod_namespace, config.pod_name, config.pod_uid or "", kind="Pod")


class Released:
    """The released-pods record: one ConfigMap key per released GpuPod (its UID)."""

    def __init__(self, kube: KubeApi, namespace: str, name: str = RELEASED_CONFIGMAP) -> None:
        self._kube, self.namespace, self.name = kube, namespace, name

    async def record(self, ref: ObjectRef, recorded: Recorded) -> None:
        entry = {
            "gpupod": f"{ref.namespace}/{ref.name}",
            "podId": recorded.pod_id,
            "remoteName": recorded.remote_name,
            "releasedAt": _utcnow().strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        await self._kube.put_configmap_entry(
            self.namespace, self.name, ref.uid, json.dumps(entry, sort_keys=True)
        )

    async def entries(self) -> dict[str, str | None]:
        """GpuPod UID -> the pod ID it released (None: its create was unconfirmed)."""
        data = await self._kube.get_configmap_data(self.namespace, self.name) or {}
        out: dict[str, str | None] = {}
        for uid, value in data.items():
            try:
                pod_id = json.loads(value).get("podId")
            except (ValueError, AttributeError):
                pod_id = None  # edited by hand: the key (the UID) still counts
            out[uid] = str(pod_id) if pod_id else None
        return out

    async def forget(self, uids: list[str]) -> None:
        await self._kube.remove_configmap_entries(self.namespace, self.name, uids)


def known_from(bodies: list[dict[str, Any]]) -> o.Known:
    """UIDs, recorded or adopted pod IDs and create-marker names of GpuPod bodies."""
    uids, pod_ids, pending = set(), set(), set()
    for body in bodies:
        status = body.get("status") or {}
        uids.add(body["metadata"]["uid"])
        for pod_id in (
            status.get("podId"),
            ((body.get("spec") or {}).get("adopt") or {}).get("podId"),
        ):
            if pod_id:
                pod_ids.add(str(pod_id))
        name = (status.get("createPending") or {}).get("remoteName")
        if name:
            pending.add(name)
    return o.Known(frozenset(uids), frozenset(pod_ids), frozenset(pending))


class OrphanSweep:
    def __init__(
        self,
        config: OperatorConfig,
        kube: KubeApi,
        provider: Provider,
        events: EventRecorder,
        metrics: Metrics,
        registry: Registry,
        released: Released,
        *,
        clock: Callable[[], dt.datetime] = _utcnow,
    ) -> None:
        assert config.cluster_id
        self._kube, self._provider, self._events = kube, provider, events
        self._metrics, self._registry, self._released = metrics, registry, released
        self.tag = cluster_tag(config.cluster_id)
        self.delete = config.orphans == "delete"
        self.grace = dt.timedelta(seconds=config.orphan_grace)
        self.every = dt.timedelta(seconds=config.sync_interval)
        self._namespaces = config.namespaces
        self._target = event_target(config)
        self._clock = clock
        self.sightings = o.Sightings()
        self._last: dt.datetime | None = None
        self._rounds = 0

    def _from_registry(self) -> o.Known:
        tracked = self._registry.all()
        return o.Known(
            uids=frozenset(t.ref.uid for t in tracked),
            pod_ids=frozenset(p for t in tracked for p in (t.pod_id, t.adopt_pod_id) if p),
        )

    async def sweep(self, pods: list[Pod]) -> None:
        """One round, on the list the poller has just taken."""
        now = self._clock()
        if self._last is not None and now - self._last < self.every:
            return  # the fresh GpuPod list below is not worth it on every fast poll
        self._last = now
        found: list[Pod] = []
        # Nothing the registry cannot account for: no orphan, and no API call to say so.
        if o.orphans(pods, self.tag, self._from_registry()):
            fresh = known_from(await self._kube.list_gpupods(self._namespaces))
            released = await self._released.entries()
            known = replace(
                fresh,
                released_uids=frozenset(released),
                released_pod_ids=frozenset(p for p in released.values() if p),
            )
            found = o.orphans(pods, self.tag, known)
        self._metrics.orphan_pods.set(len(found))
        by_id = {p.id: p for p in found}
        for pod_id in self.sightings.update(by_id, now):
            pod = by_id[pod_id]
            what = "deleted after the grace" if self.delete else "reported only (--orphans report)"
            self._report(
                "OrphanFound",
                f"remote pod {pod.id} ({pod.name}) is this cluster's but its GpuPod no longer "
                f"exists; {what}",
            )
        if self.delete:
            for pod_id in self.sightings.due(now, self.grace):
                await self._delete(by_id[pod_id])
        self._rounds += 1
        if self._rounds % PRUNE_EVERY == 0:
            await self._prune({p.id: p for p in pods})

    async def _prune(self, listed: dict[str, Pod]) -> None:
        """Forget released pods that are gone: the record stays far below a ConfigMap's 1 MiB
        (a full one would keep Orphan releases from being recorded, so from completing)."""
        gone, unlisted = o.prunable(await self._released.entries(), listed)
        for uid, pod_id in list(unlisted.items())[:PRUNE_GETS]:
            if await self._provider.get(pod_id) is None:
                gone.append(uid)
        if gone:
            await self._released.forget(gone)
            log.info("released-pods record: forgot %d pod(s) that are gone", len(gone))

    async def _delete(self, pod: Pod) -> None:
        try:
            await self._provider.delete(pod.id)
        except ProviderError as e:
            log.warning("could not delete orphan pod %s: %s", pod.id, e)
            return
        self.sightings.forget(pod.id)
        self._report(
            "OrphanDeleted",
            f"deleted orphan remote pod {pod.id} ({pod.name}), an orphan for at least "
            f"{self.grace.total_seconds():g} s",
        )

    def _report(self, reason: str, message: str) -> None:
        if self._target is None:
            # Outside a cluster there is no object of ours to put an Event on.
            log.warning("%s: %s", reason, message)
        else:
            self._events.warning(self._target, reason, message)
