"""kopf wiring only: each handler hands the object to `reconciler` or the `registry`.

Resources are always group-qualified (kopf would otherwise scan every API group at startup).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from typing import Any

import kopf

from gpupod_operator.config import OperatorConfig
from gpupod_operator.controller import reconciler
from gpupod_operator.controller.accounts import Accounts
from gpupod_operator.controller.events import EventRecorder
from gpupod_operator.controller.kube import (
    GROUP,
    PLURAL,
    VERSION,
    KubeApi,
    connection_info,
    load_configuration,
)
from gpupod_operator.controller.leader import FencedTransport, LeaderElector
from gpupod_operator.controller.listers import Index, IndexLister, Key, key_of, slim
from gpupod_operator.controller.metrics import Metrics
from gpupod_operator.controller.orphans import attach_orphans, resolve_cluster_id
from gpupod_operator.controller.policy import PolicyGate
from gpupod_operator.controller.poller import Poller
from gpupod_operator.controller.quota import QuotaController
from gpupod_operator.controller.registry import Registry
from gpupod_operator.controller.runtime import Runtime
from gpupod_operator.controller.status_writer import StatusWriter
from gpupod_operator.domain.accounts import CLUSTER_YOTTA_ACCOUNT, YOTTA_ACCOUNT
from gpupod_operator.provider import YottaProvider
from gpupod_operator.yotta import YottaClient

RESOURCE = (GROUP, VERSION, PLURAL)
PREFIX = GROUP  # our finalizer, progress and diffbase annotations: gpupod.dev/...
log = logging.getLogger(__name__)
STARTUP_POLL_SECONDS = 5.0  # how long startup waits for the first poll of the Yotta API

# Set by the CLI before kopf starts (kopf handlers cannot take constructor arguments).
CONFIG: OperatorConfig | None = None
METRICS: Metrics | None = None
LEADER: LeaderElector | None = None  # with --leader-election: kopf runs only on the holder
NAMESPACES: tuple[str, ...] = ()  # the watched namespaces; empty: all of them


class _DiffBase(kopf.AnnotationsDiffBaseStorage):
    """kopf's change detection, with the last handled state kept as a digest in
    `status.lastHandled`, written by the reconciler together with its result: no write of
    kopf's own per handled change (it was one `gpupods` PATCH per create, make bench). GpuPods
    last handled by an older version still carry kopf's annotation, which is read then.

    The essence is kopf's (spec, labels, annotations) plus three status fields the reconciler
    writes BEFORE a remote action whose answer may be lost after it took effect:
    `pausedApplied` (pause/resume) and `replacing` (the delete of a Recreate); and
    `cost.guard`, which the poller sets when a lifetime or price cap applies (domain.cost), so
    that the reconciler, and only it, pauses or deletes the pod.

    Why those: kopf drops a handler waiting to retry when the spec returns to the last handled
    one. Without these fields, flipping `paused` back while a pause's answer was lost left a
    RUNNING pod under `paused: true` forever, and reverting a Recreate while the old pod was
    being deleted left the GpuPod with no pod. With them, the essence differs from the last
    handled one after such an action, so a level-based reconcile still runs.
    """

    def build(self, *, body: Any, extra_fields: Any = None) -> Any:
        fields = [
            *(extra_fields or ()),
            "status.pausedApplied",
            "status.replacing",
            # Set by the poller when a cost guardrail applies: the reconciler pauses or deletes.
            "status.cost.guard",
        ]
        essence = super().build(body=body, extra_fields=fields)
        # Our own annotations (kopf's progress, older versions' diff base) are not the user's.
        annotations = essence.get("metadata", {}).get("annotations", {})
        for key in [k for k in annotations if k.startswith(f"{PREFIX}/")]:
            del annotations[key]
        self.remove_empty_stanzas(essence)
        return essence

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # uid -> the digest this process last handled: kopf may hand over an event older than
        # our own result's write (the create marker's, say), whose status predates the digest;
        # kopf's own patches it would wait for (consistency_timeout), ours it does not know.
        self._handled: dict[str, str] = {}

    def digest(self, body: Any) -> str:
        """What `status.lastHandled` holds once `body` has been handled."""
        return essence_digest(self.build(body=body))

    def handled(self, body: Any, digest: str) -> None:
        self._handled[body["metadata"]["uid"]] = digest

    def forget(self, uid: str) -> None:
        self._handled.pop(uid, None)

    def fetch(self, *, body: Any) -> Any:
        stored = (body.get("status") or {}).get("lastHandled")
        known = {stored, self._handled.get(body["metadata"].get("uid", ""))} - {None}
        if not known:
            return super().fetch(body=body)  # None: never handled (a create)
        current = self.build(body=body)
        # Unchanged: the essence itself (no diff); changed: anything that differs from it.
        return current if essence_digest(current) in known else {"lastHandled": stored}

    def store(self, **_: Any) -> None:
        """Nothing here: the reconciler wrote `status.lastHandled` with its result."""


class _Progress(kopf.AnnotationsProgressStorage):
    """kopf's retry state in annotations, as before, minus the `kopf-managed` marker: it
    would cost a `gpupods` write on a GpuPod's first successful handling, and only serves
    other kopf operators that might share our prefix (none do)."""

    def _store_marker(self, prefix: str, patch: Any, body: Any) -> None:
        return None


def essence_digest(essence: Any) -> str:
    text = json.dumps(essence, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


DIFF_BASE = _DiffBase(prefix=PREFIX, key="last-handled-configuration")


@kopf.on.login()
async def login_handler(**_: Any) -> kopf.ConnectionInfo:
    # The official client's loaders (exec plugins included) for kopf too: one identity.
    try:
        return connection_info(await load_configuration())
    except kopf.LoginError as e:
        raise kopf.PermanentError(str(e)) from None  # no retry can fix a kubeconfig


# The tenancy kinds, read from these indexes instead of the API (controller.listers). kopf
# fills them before any GpuPod handler runs and keeps them current from its watch; each index
# is named `<plural>_index` (kopf passes it by that name).
INDEXED = ("yottaaccounts", "clusteryottaaccounts", "gpuquotas", "gputenantpolicies")


async def _index_entry(body: kopf.Body, **_: Any) -> dict[Key, dict[str, Any]]:
    return {key_of(body): slim(body)}


for _plural in INDEXED:
    kopf.index(GROUP, VERSION, _plural, id=f"{_plural}_index")(_index_entry)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **indexes: Any) -> None:
    def lister(plural: str) -> IndexLister:
        index: Index = indexes[f"{plural}_index"]
        return IndexLister(index)

    assert CONFIG is not None, "the CLI sets handlers.CONFIG before starting kopf"
    config, metrics = CONFIG, METRICS or Metrics()
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    settings.persistence.progress_storage = _Progress(prefix=PREFIX)
    settings.persistence.diffbase_storage = DIFF_BASE
    settings.posting.level = logging.WARNING
    settings.networking.connect_timeout = 10
    settings.networking.request_timeout = 60
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 310
    settings.execution.default_backoff = 10
    settings.queueing.worker_limit = None  # a limit below the objects of an index deadlocks
    # kopf's worker of an object holds that object's last event while it waits for the next:
    # 5 s by default, i.e. the bodies of a whole burst (make bench N=1000).
    settings.queueing.idle_timeout = 1.0
    # kopf waits this long for its own patch to come back through the watch before it handles
    # an object again; at the 5 s default, a busy apiserver (1000 GpuPods applied at once) made
    # kopf re-run finished create handlers on stale bodies (make bench).
    settings.persistence.consistency_timeout = 30

    transport = None
    if LEADER is not None:
        # Every Yotta request passes the Lease check just before it is sent (controller.leader).
        transport = FencedTransport(LEADER.check)
    yotta = YottaClient(
        config.api_url,
        config.api_key.get_secret_value(),
        timeout=config.request_timeout,
        qps=config.qps,
        burst=config.burst,
        observer=metrics.observe_call,
        transport=transport,
    )
    provider = YottaProvider(yotta, snapshot_ttl=config.snapshot_ttl)
    try:
        kube = await KubeApi.connect()
    except kopf.LoginError as e:
        raise kopf.PermanentError(str(e)) from None
    config = await resolve_cluster_id(config, kube)
    events = EventRecorder(kube.post_event)
    memo.events_task = asyncio.create_task(events.run(), name="gpupod-events")
    registry = Registry()
    metrics.track_deletions(lambda: [t.deleting_since for t in registry.all()])

    def account_client(url: str, key: str, qps: float, burst: int) -> YottaClient:
        # One client (pool, rate limiter) per tenant account, fenced like the operator's own.
        return YottaClient(
            url,
            key,
            timeout=config.request_timeout,
            qps=qps,
            burst=burst,
            observer=metrics.observe_call,
            transport=FencedTransport(LEADER.check) if LEADER is not None else None,
        )

    accounts = Accounts(
        config,
        kube,
        provider,
        operator_namespace=config.operator_namespace,
        default_namespaces=config.default_account_namespaces,
        new_client=account_client,
        in_use=registry.users,
        listers={
            YOTTA_ACCOUNT: lister("yottaaccounts"),
            CLUSTER_YOTTA_ACCOUNT: lister("clusteryottaaccounts"),
        },
    )
    writer = StatusWriter(kube, registry, events, metrics)
    poller = Poller(
        provider,
        writer,
        events,
        registry,
        metrics,
        interval=config.sync_interval,
        fast_interval=config.fast_sync_interval,
        accounts=accounts,
    )
    memo.runtime = Runtime(config, accounts, kube, writer, events, registry, poller, metrics)
    metrics.track_waiting(lambda: memo.runtime.gate.waiting)
    if LEADER is not None:
        memo.runtime.may_create = LEADER.may_create
    rt: Runtime = memo.runtime
    rt.policy = PolicyGate(kube, lister=lister("gputenantpolicies"))
    rt.quota = QuotaController(
        kube,
        registry,
        metrics,
        NAMESPACES,
        quote=yotta.list_gpu_types,
        lister=lister("gpuquotas"),
    )
    rt.quota.kick = lambda ref: reconciler.reconcile_now(rt, ref)
    memo.quota_task = asyncio.create_task(rt.quota.run(), name="gpupod-quota")
    attach_orphans(memo.runtime)
    # One List before any handler runs: resuming N GpuPods then needs no GET per GpuPod. But
    # bounded: kopf's watch (and so readiness) starts only after this handler, and must not
    # wait on a slow Yotta API; past the bound the first poll ends in the background.
    first = asyncio.create_task(poller.poll_once(), name="gpupod-first-poll")
    await asyncio.wait({first}, timeout=STARTUP_POLL_SECONDS)

    async def poll_forever() -> None:
        await asyncio.gather(first, return_exceptions=True)  # cancelled with this task
        await poller.run()

    memo.poller_task = asyncio.create_task(poll_forever(), name="gpupod-poller")
    log.info("gpupod-operator started against %s", config.api_url)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    for key in ("poller_task", "quota_task"):
        task: asyncio.Task[None] | None = memo.get(key)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    rt: Runtime | None = memo.get("runtime")
    if rt is not None and rt.quota is not None:
        await rt.quota.aclose()
    if rt is not None:
        await rt.events.drain(within=5)
    events_task: asyncio.Task[None] | None = memo.get("events_task")
    if events_task is not None:
        events_task.cancel()
        await asyncio.gather(events_task, return_exceptions=True)
    if rt is not None:
        await rt.accounts.aclose()
        await rt.kube.aclose()


@kopf.on.event(*RESOURCE)
async def track(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    """Keep the poller's index current from the watch stream (no API calls)."""
    rt: Runtime = memo.runtime
    body = event["object"]
    if event["type"] == "DELETED":
        rt.registry.remove(body["metadata"]["namespace"], body["metadata"]["name"])
        DIFF_BASE.forget(body["metadata"]["uid"])
    else:
        rt.registry.upsert(body)


@kopf.on.resume(*RESOURCE)
@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE)
async def reconcile(body: kopf.Body, retry: int, memo: kopf.Memo, **_: Any) -> None:
    digest = DIFF_BASE.digest(body)
    await reconciler.reconcile(memo.runtime, body, retry, handled=digest)
    DIFF_BASE.handled(body, digest)


@kopf.on.delete(*RESOURCE)
async def finalize(body: kopf.Body, retry: int, memo: kopf.Memo, **_: Any) -> None:
    await reconciler.finalize(memo.runtime, body, retry)


def liveness_report(memo: Any) -> dict[str, Any]:
    """The leader's liveness body (`controller.health`): the poller's state, as kopf's probe
    showed it. It never calls the provider (an outage must not restart-loop the operator)."""
    rt: Runtime | None = memo.get("runtime")
    if rt is None:
        return {}
    return {
        "remote": {"lastSuccessfulPoll": rt.poller.last_success, "failedPolls": rt.poller.failures}
    }
