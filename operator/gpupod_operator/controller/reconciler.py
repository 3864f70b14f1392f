"""Performs the actions that `domain.decisions` chooses, one at a time, for one GpuPod.

The handlers call `reconcile` (create/update/resume) and `finalize` (delete). Both loop:
decide -> act -> record what happened -> decide again, until the decision is to wait (a
`kopf.TemporaryError`, so kopf retries later), to stop, or that all is done. Status changes are
collected in `out` and handed to kopf's patch, which kopf applies even when we raise.

The one write that cannot wait for kopf's patch is the create marker: it must be stored
before the POST, so that a crash or a lost answer is always followed by a lookup by name
instead of a second create.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from dataclasses import dataclass, field, replace
from typing import Any

import kopf

from gpupod_operator.controller.kube import KubeError, ObjectRef
from gpupod_operator.controller.runtime import Runtime
from gpupod_operator.controller.secrets import SecretMissing, resolve_secret_env
from gpupod_operator.domain import decisions as d
from gpupod_operator.domain import status as st
from gpupod_operator.domain.spec import GpuPodSpec, build_create_request, remote_name, spec_hash
from gpupod_operator.yotta import (
    InvalidRequest,
    InvalidState,
    NotFound,
    OutcomeUnknown,
    Pod,
    Transient,
    Unauthorized,
    YottaError,
)

log = logging.getLogger(__name__)

MAX_STEPS = 12  # actions per handler call; every path to Done/Wait/Stop is shorter


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _parse_time(value: Any) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def backoff(retry: int, retry_after: float | None = None) -> float:
    """Seconds before kopf retries: the provider's Retry-After, else jittered exponential."""
    if retry_after:
        return max(1.0, retry_after)
    return min(60.0, 2.0 ** min(retry, 6)) * random.uniform(0.8, 1.2)


@dataclass
class Attempt:
    """One handler call's view of one GpuPod, and the status it will write."""

    rt: Runtime
    ref: ObjectRef
    spec: GpuPodSpec
    generation: int
    conditions: list[dict[str, Any]]
    desired: d.Desired
    recorded: d.Recorded
    reported: str | None  # the Synced reason the status shows now, to avoid repeating Events
    phase: str | None  # the phase the status shows now
    out: dict[str, Any] = field(default_factory=dict)
    observed: d.Observed | None = None
    lookup: d.NameLookup | None = None

    @classmethod
    def of(cls, rt: Runtime, body: Any) -> Attempt:
        meta, status = body["metadata"], body.get("status") or {}
        spec = GpuPodSpec.parse(body["spec"])
        pending = status.get("createPending") or {}
        name = pending.get("remoteName") or status.get("remoteName")
        conditions = list(status.get("conditions") or [])
        synced: dict[str, Any] = next((c for c in conditions if c.get("type") == st.SYNCED), {})
        return cls(
            rt=rt,
            ref=ObjectRef.of(body),
            spec=spec,
            generation=int(meta.get("generation") or 0),
            conditions=conditions,
            desired=d.Desired(
                spec_hash=spec_hash(spec),
                paused=spec.paused,
                update_policy=spec.updatePolicy,
                deletion_policy=spec.deletionPolicy,
            ),
            recorded=d.Recorded(
                remote_name=name or remote_name(meta["namespace"], meta["name"], meta["uid"]),
                pod_id=status.get("podId") or None,
                pending_since=_parse_time(pending.get("since")),
                spec_hash=status.get("specHash"),
                replacing=bool(status.get("replacing")),
            ),
            reported=synced.get("reason") if synced.get("status") == "False" else None,
            phase=status.get("phase"),
        )

    # ------------------------------------------------------------ status bookkeeping

    def show_pod(self, pod: Pod | None) -> None:
        observed = st.observed_status(pod, self.spec.gpuCount)
        if observed.get("phase") is None:
            observed.pop("phase")
        self.out.update(observed)

    def synced(self, ok: bool, reason: str, message: str) -> None:
        now = _now()
        phase = self.out.get("phase")
        updates = [
            st.condition(st.SYNCED, ok, reason, message, self.generation, now, self.conditions)
        ]
        if phase is not None:
            updates.append(st.ready_condition(phase, now, self.conditions))
        self.out["conditions"] = st.merge_conditions(self.conditions, *updates)
        self.out["lastSyncTime"] = st.now_iso(now)
        if ok:
            self.out["observedGeneration"] = self.generation

    def record_pod(self, pod: Pod) -> None:
        """We own this pod now: remember its ID and what it was built from."""
        self.recorded = replace(
            self.recorded,
            pod_id=pod.id,
            pending_since=None,
            spec_hash=self.desired.spec_hash,
            replacing=False,
        )
        self.out.update(
            podId=pod.id,
            remoteName=self.recorded.remote_name,
            specHash=self.desired.spec_hash,
            createPending=None,
            replacing=None,
        )
        self.observed = d.Observed(pod)

    async def fail(self, reason: str, message: str, delay: float) -> kopf.TemporaryError:
        """Report a problem on the GpuPod (once per reason as an Event) and retry later."""
        self.synced(False, reason, message)
        if self.reported != reason:
            await self.rt.events.warning(self.ref, reason, message)
        self.rt.metrics.reconcile_errors.labels(reason).inc()
        return kopf.TemporaryError(message, delay=delay)

    # ------------------------------------------------------------ remote reads

    async def observe(self) -> None:
        """The pod by ID: from the poller's latest list when that is still valid (after a
        restart, every GpuPod resumes without a GET of its own), else a GET."""
        pod_id = self.recorded.pod_id
        assert pod_id is not None
        cached = self.rt.poller.cached(pod_id)
        if cached is not None:
            self.observed = d.Observed(cached)
            return
        try:
            self.observed = d.Observed(await self.rt.yotta.get_pod(pod_id))
        except NotFound:
            self.observed = d.Observed(None)

    async def look_up(self) -> None:
        """Our pods by name, from a list sent after the create marker was written."""
        since = self.recorded.pending_since
        name = self.recorded.remote_name
        # Not merely "sent after the marker": the marker precedes the POST (and is stored to
        # the second), so such a list can predate the pod. It must be sent after our last
        # POST for this name ended too (`create` touches the name then).
        snap = self.rt.poller.snapshot_after(since, name) if since is not None else None
        if snap is not None:
            pods, taken_at = list(snap.pods.values()), snap.taken_at
        else:
            taken_at = _now()
            pods = await self.rt.yotta.list_pods()
        mine = [p for p in pods if p.name == self.recorded.remote_name]
        self.lookup = d.NameLookup(mine, taken_at)

    # ------------------------------------------------------------ remote writes

    async def create(self) -> None:
        secret_values = await resolve_secret_env(self.rt.kube, self.ref.namespace, self.spec)
        request = build_create_request(self.spec, self.recorded.remote_name, secret_values)
        since = _now()
        marker = {"remoteName": self.recorded.remote_name, "since": st.now_iso(since)}
        # Stored BEFORE the POST (see the module docstring); if this fails, nothing is created.
        await self.rt.kube.patch_status(
            self.ref,
            {"createPending": marker, "remoteName": self.recorded.remote_name, "phase": "Creating"},
        )
        self.recorded = replace(self.recorded, pending_since=since)
        try:
            pod = await self.rt.yotta.create_pod(request)
        finally:
            # Survival suite fix (a lost create answer, then a lookup in the poller's list sent
            # between the marker and the POST, created a second pod): from now on the pod may
            # exist, so lists sent before this moment cannot rule it out.
            self.rt.poller.touch(self.recorded.remote_name)
        self.record_pod(pod)
        self.rt.poller.poke()
        await self.rt.events.normal(
            self.ref, "Created", f"created remote pod {pod.id} ({self.recorded.remote_name})"
        )

    async def adopt(self, action: d.Adopt) -> None:
        self.record_pod(action.pod)
        await self.rt.events.normal(
            self.ref, "Adopted", f"found remote pod {action.pod.id} from an unconfirmed create"
        )
        for dup in action.duplicates:
            try:
                await self.rt.yotta.delete_pod(dup.id)
            except NotFound:
                continue
            await self.rt.events.warning(
                self.ref, "DuplicateDeleted", f"deleted duplicate remote pod {dup.id}"
            )

    async def act(self, action: d.Action) -> None:
        """Perform one non-final action and update what we know."""
        yotta, events, ref = self.rt.yotta, self.rt.events, self.ref
        if isinstance(action, d.Pause | d.Resume | d.Delete):
            # Lists sent before or during the call may show the pod as it was.
            self.rt.poller.touch(action.pod_id)
        match action:
            case d.Observe():
                await self.observe()
            case d.LookUp():
                await self.look_up()
            case d.Create():
                await self.create()
            case d.Adopt():
                await self.adopt(action)
            case d.Pause(pod_id=pod_id):
                # Before the call: its answer may be lost after it took effect (see
                # handlers._DiffBase for why this must reach the status even then).
                self.out["pausedApplied"] = True
                await yotta.pause_pod(pod_id)
                await events.normal(ref, "Pausing", f"pausing remote pod {pod_id}")
                self.observed = None
            case d.Resume(pod_id=pod_id):
                self.out["pausedApplied"] = False  # before the call, as for Pause
                await yotta.resume_pod(pod_id)
                await events.normal(ref, "Resuming", f"resuming remote pod {pod_id}")
                self.observed = None
            case d.Delete(pod_id=pod_id, reason=reason, replace=replacing):
                if replacing:
                    # Before the call, as for a pause: the answer may be lost after it worked.
                    self.recorded = replace(self.recorded, replacing=True)
                    self.out["replacing"] = True
                await yotta.delete_pod(pod_id)
                await events.normal(ref, "Deleting", f"deleting remote pod {pod_id}: {reason}")
                self.out.update(phase=st.Phase.TERMINATING.value, message=f"deleting: {reason}")
                self.observed = None
            case d.Forget():
                await events.normal(
                    ref, "Recreating", f"remote pod {self.recorded.pod_id} is gone; creating anew"
                )
                self.recorded = replace(self.recorded, pod_id=None, spec_hash=None)
                self.out.update(podId=None, specHash=None)
                self.observed = self.lookup = None
        if isinstance(action, d.Pause | d.Resume | d.Delete):
            self.rt.poller.touch(action.pod_id)
            self.rt.poller.poke()


async def reconcile(rt: Runtime, body: Any, patch: kopf.Patch, retry: int) -> None:
    a = Attempt.of(rt, body)
    try:
        await _reconcile_steps(a, retry)
    finally:
        # Nothing new (e.g. every GpuPod resumed after a restart): no write at all.
        if st.status_changed(dict(body.get("status") or {}), a.out):
            patch.status.update(a.out)


async def _reconcile_steps(a: Attempt, retry: int) -> None:
    for _ in range(MAX_STEPS):
        action = d.reconcile(a.desired, a.recorded, a.observed, a.lookup)
        match action:
            case d.Done(pod=pod):
                a.show_pod(pod)
                a.synced(True, "Reconciled", "the remote pod matches the spec")
                await a.rt.events.transition(a.ref, a.phase, a.out, a.recorded.pod_id)
                return
            case d.Stop(reason=reason, message=message, phase=phase):
                if a.observed is not None:
                    a.show_pod(a.observed.pod)
                if phase:
                    a.out["phase"] = phase
                a.out["message"] = message
                a.synced(False, reason, message)
                if a.reported != reason:
                    await a.rt.events.warning(a.ref, reason, message)
                return
            case d.Wait(reason=reason, message=message, delay=delay):
                if a.observed is not None:
                    a.show_pod(a.observed.pod)
                a.synced(False, reason, message)
                raise kopf.TemporaryError(message, delay=delay)
        try:
            await a.act(action)
        except InvalidRequest as e:
            if isinstance(action, d.Create):
                # Permanent: the API refused the spec. No retry storm; a spec change retries.
                a.out.update(phase=st.Phase.FAILED.value, createPending=None, message=str(e))
                a.synced(False, "CreateRejected", f"the Yotta API rejected the pod: {e}")
                await a.rt.events.warning(a.ref, "CreateRejected", str(e))
                a.rt.metrics.reconcile_errors.labels("CreateRejected").inc()
                return
            raise await a.fail("RequestRejected", str(e), 60) from None
        except InvalidState:
            a.observed = None  # it changed under us: look again
            raise kopf.TemporaryError("the remote pod changed state; retrying", delay=2) from None
        except NotFound:
            a.observed = d.Observed(None)
        except SecretMissing as e:
            a.out.setdefault("phase", st.Phase.PENDING.value)
            raise await a.fail("SecretNotFound", str(e), 10) from None
        except OutcomeUnknown as e:
            raise await a.fail(
                "CreateUnconfirmed", f"the create's outcome is unknown ({e}); looking it up", 2
            ) from None
        except Unauthorized as e:
            raise await a.fail("Unauthorized", f"the Yotta API refused the key: {e}", 60) from None
        except Transient as e:
            raise await a.fail(
                "ProviderUnavailable", str(e), backoff(retry, e.retry_after)
            ) from None
        except YottaError as e:
            raise await a.fail("ProviderError", str(e), backoff(retry)) from None
        except KubeError as e:
            raise kopf.TemporaryError(f"Kubernetes API: {e}", delay=backoff(retry)) from None
    raise kopf.TemporaryError("still converging", delay=1)


async def finalize(rt: Runtime, body: Any, patch: kopf.Patch, retry: int) -> None:
    """Returns when the finalizer may go: remote pod gone (or orphaned on purpose)."""
    a = Attempt.of(rt, body)
    releasing = False
    try:
        await _finalize_steps(a, retry)
        releasing = True
    finally:
        # Once released, the GpuPod is gone with the finalizer: a status write would be waste.
        if not releasing:
            patch.status.update(a.out)


async def _finalize_steps(a: Attempt, retry: int) -> None:
    for _ in range(MAX_STEPS):
        action = d.finalize(a.desired, a.recorded, _now(), a.observed, a.lookup)
        match action:
            case d.Release(reason=reason, message=message):
                if reason == "Orphaned":
                    await a.rt.events.warning(a.ref, "Orphaned", message)
                else:
                    await a.rt.events.normal(a.ref, reason, message)
                return
            case d.Wait(message=message, delay=delay):
                a.out.update(phase=st.Phase.TERMINATING.value, message=message)
                raise kopf.TemporaryError(message, delay=delay)
        try:
            await a.act(action)
        except NotFound:
            a.observed = d.Observed(None)
        except (InvalidRequest, InvalidState, Unauthorized, YottaError) as e:
            retry_after = e.retry_after if isinstance(e, Transient) else None
            message = (
                f"cannot delete remote pod {a.recorded.pod_id}: {e}. The finalizer stays until "
                "the provider confirms; to give up and keep the pod, set "
                "spec.deletionPolicy: Orphan"
            )
            a.out.update(message=message)
            a.synced(False, "DeleteFailed", message)
            if retry == 0 or retry % 10 == 0:
                await a.rt.events.warning(a.ref, "DeleteFailed", message)
            a.rt.metrics.reconcile_errors.labels("DeleteFailed").inc()
            raise kopf.TemporaryError(message, delay=backoff(retry, retry_after)) from None
        except KubeError as e:
            raise kopf.TemporaryError(f"Kubernetes API: {e}", delay=backoff(retry)) from None
    raise kopf.TemporaryError("still deleting", delay=1)
