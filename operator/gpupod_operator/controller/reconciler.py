"""Performs the actions that `domain.decisions` chooses, one at a time, for one GpuPod.

The handlers call `reconcile` (create/update/resume) and `finalize` (delete). Both loop:
decide -> act -> record what happened -> decide again, until the decision is to wait (a
`kopf.TemporaryError`, so kopf retries later), to stop, or that all is done. What the attempt
learns is collected (facts, the observed pod, the Synced outcome) and written ONCE at the end
through the status writer, which projects it onto the latest status with a precondition.

The one write that cannot wait is the create marker: it is stored before the POST, so that a
crash or a lost answer is always followed by a lookup by name instead of a second create, and
it is a compare-and-swap on the resourceVersion this attempt decided on. A 409 there is the
fence (a stale body, or another operator process during a handover): the attempt reads the
GpuPod again and decides anew, and never POSTs on the old view.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import kopf

from gpupod_operator.controller import admission
from gpupod_operator.controller.accounts import Binding
from gpupod_operator.controller.kube import Conflict, Gone, KubeError, ObjectRef
from gpupod_operator.controller.runtime import Runtime
from gpupod_operator.controller.secrets import SecretMissing, resolve_secret_env
from gpupod_operator.domain import accounts as acc
from gpupod_operator.domain import cost
from gpupod_operator.domain import decisions as d
from gpupod_operator.domain import failures as f
from gpupod_operator.domain import status as st
from gpupod_operator.domain.accounts import AccountId, AccountUnavailable
from gpupod_operator.domain.adoption import CONFIRMING, Adoption, claim_of, owned_elsewhere
from gpupod_operator.domain.spec import (
    AdoptMode,
    GpuPodSpec,
    build_create_request,
    remote_name,
    spec_hash,
)
from gpupod_operator.provider import Provider
from gpupod_operator.yotta import Pod

log = logging.getLogger(__name__)

MAX_STEPS = 12  # actions per handler call; every path to Done/Wait/Stop is shorter
# A deletion waits this long in the handler for the remote pod to go (observing it every
# second), before it hands the wait to kopf's retries, which cost two writes each (kopf's
# progress annotation and its wake-up): most pods terminate well within it.
DELETE_WAIT = 10.0
pause: Callable[[float], Awaitable[None]] = asyncio.sleep  # (tests wait without waiting)
MAX_REREADS = 3  # fresh reads after a lost compare-and-swap, per handler call
ACCOUNT_RETRY = 10.0  # seconds before an unusable account (missing Secret ...) is tried again
ADOPT_CONFIRM = 2.0  # seconds before an adoption is confirmed against the claims seen by then


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _parse_time(value: Any) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _operation(action: d.Action) -> f.Operation:
    match action:
        case d.Create():
            return f.Operation.CREATE
        case d.Pause():
            return f.Operation.PAUSE
        case d.Resume():
            return f.Operation.RESUME
        case d.Delete():
            return f.Operation.DELETE
    return f.Operation.OBSERVE


class Stale(Exception):
    """The GpuPod changed since this attempt read it: decide again from a fresh read."""


@dataclass
class Attempt:
    """One handler call's view of one GpuPod, and what it will write."""

    rt: Runtime
    ref: ObjectRef
    spec: GpuPodSpec
    generation: int
    status: dict[str, Any]
    desired: d.Desired
    recorded: d.Recorded
    reported: str | None  # the Synced reason the status shows now, to avoid repeating Events
    # The pinned account (status.account; None: resolved at create) and its key's fingerprint.
    account: AccountId | None
    pinned_fp: str | None
    facts: dict[str, Any] = field(default_factory=dict)  # status fields this attempt decided
    sync: st.Sync | None = None
    observed: st.Observed | None = None
    lookup: d.NameLookup | None = None
    binding: Binding | None = None  # the account, bound once per attempt (`provider`)
    # A GpuPod's own deletion announces the end ("Deleted") instead of the DELETE call.
    announce_delete: bool = True
    created: str = ""  # creationTimestamp: the order of quota admission

    @classmethod
    def of(cls, rt: Runtime, body: Any) -> Attempt:
        meta, status = body["metadata"], dict(body.get("status") or {})
        spec = GpuPodSpec.parse(body["spec"])
        pending = status.get("createPending") or {}
        name = pending.get("remoteName") or status.get("remoteName")
        counted = cost.Checkpoint.of(status)
        synced: dict[str, Any] = next(
            (c for c in status.get("conditions") or [] if c.get("type") == st.SYNCED), {}
        )
        return cls(
            rt=rt,
            ref=ObjectRef.of(body),
            spec=spec,
            generation=int(meta.get("generation") or 0),
            status=status,
            desired=d.Desired(
                spec_hash=spec_hash(spec),
                paused=spec.paused,
                update_policy=spec.updatePolicy,
                deletion_policy=spec.deletionPolicy,
                limits=cost.Limits.of(body["spec"]),
                gpu_count=spec.gpuCount,
                adopt=_adoption(rt, body, spec),
            ),
            recorded=d.Recorded(
                # A stored name wins: GpuPods created under an older name format keep theirs.
                remote_name=name
                or remote_name(meta["namespace"], meta["name"], meta["uid"], rt.cluster_id),
                pod_id=status.get("podId") or None,
                pending_since=_parse_time(pending.get("since")),
                spec_hash=status.get("specHash"),
                replacing=bool(status.get("replacing")),
                running_seconds=counted.running_seconds,
                price=status.get("pricePerHour"),
                guard=counted.guard,
            ),
            reported=synced.get("reason") if synced.get("status") != "True" else None,
            # A pod created before accounts existed was created with the operator's key.
            account=AccountId.pinned(status.get("account"), meta["namespace"])
            or (AccountId.operator() if status.get("podId") or pending else None),
            pinned_fp=(status.get("account") or {}).get("keyFingerprint") or None,
            created=str(meta.get("creationTimestamp") or ""),
        )

    # ------------------------------------------------------------ status

    def _project(self, current: Any, generation: int) -> dict[str, Any] | None:
        now = _now()
        # The guardrail as this attempt sees it. The running time is the poller's to count,
        # but the count starts with the write that records the pod: else the poller's first
        # look at it would be a write of its own, for the start of the count only.
        seen = self.observed
        starts = seen is not None and seen.pod is not None
        guarded = cost.project(
            current,
            now=now,
            limits=self.desired.limits,
            gpu_count=self.spec.gpuCount,
            seen=seen,
            accrue=starts and cost.Checkpoint.of(current).counted_until is None,
            phase=self.facts.get("phase"),
        )
        return st.project(
            current,
            now=now,
            gpu_count=self.spec.gpuCount,
            generation=generation,
            seen=self.observed,
            facts={**guarded.fields, **self.facts},
            sync=self.sync,
        )

    async def save(self) -> dict[str, Any] | None:
        """Write what this attempt learned (nothing, if the status would not change); on a
        conflict the writer projects it onto the fresh status. The object as written."""
        return await self.rt.status.write(self.ref, self.status, self.generation, self._project)

    def fail(self, reason: str, message: str, delay: float) -> kopf.TemporaryError:
        """Report a problem on the GpuPod (once per reason as an Event) and retry later."""
        self.sync = st.Sync.failed(reason, message)
        if self.reported != reason:
            self.rt.events.warning(self.ref, reason, message)
        self.rt.metrics.reconcile_errors.labels(reason).inc()
        return kopf.TemporaryError(message, delay=delay)

    def record_pod(self, pod: Pod) -> None:
        """We own this pod now: remember its ID and what it was built from. The ID and the
        marker's removal are ONE write, so no crash can lose both."""
        self.recorded = replace(
            self.recorded,
            pod_id=pod.id,
            pending_since=None,
            spec_hash=self.desired.spec_hash,
            replacing=False,
        )
        self.facts.update(
            podId=pod.id,
            remoteName=self.recorded.remote_name,
            specHash=self.desired.spec_hash,
            createPending=None,
            replacing=None,
        )
        self.observed = st.Observed(pod)

    # ------------------------------------------------------------ the account

    async def provider(self) -> Provider:
        """The ONE way to a provider: the pinned account's (or, for a first create, the
        resolved one's), with its key read now (AccountUnavailable: no call may be made)."""
        if self.binding is None:
            if self.account is None:
                # Nothing pinned yet (a first create, or an adoption): resolved now, once, and
                # pinned by the marker or when the adopted pod is first seen.
                ns, ref = self.ref.namespace, self.spec.accountRef
                self.account = await self.rt.accounts.resolve(ns, ref)
            self.binding = await self.rt.accounts.bind(self.account)
        return self.binding.provider

    def confirm_pin(self) -> None:
        """The pod is visible with the current key: pin that key (after a rotation, or for a
        pod created before accounts existed), so a later absence is judged against it."""
        b = self.binding
        if b is None:
            return
        pin = b.account.pin(b.fingerprint)
        if pin in (self.status.get("account"), self.facts.get("account")):
            return
        if acc.key_changed(self.pinned_fp, b.fingerprint):
            self.rt.events.normal(
                self.ref, "KeyRotated", f"remote pod visible with the new key of {b.account}"
            )
        self.facts["account"] = pin
        self.pinned_fp = b.fingerprint

    def guard(self, action: d.Action) -> d.Wait | None:
        """Refuse an action that rests on the pod's absence seen with a key it was not
        created with (domain.accounts.absence_unproven)."""
        b = self.binding
        if b is None:
            return None
        changed = acc.key_changed(self.pinned_fp, b.fingerprint)
        return acc.absence_unproven(
            action, self.observed, self.lookup, account=b.account, changed=changed
        )

    def refuse(self, unproven: d.Wait) -> kopf.TemporaryError:
        """Report why nothing is done, and write nothing of the absence: "not found" under
        this key must not become phase Lost in the status either."""
        self.observed = self.lookup = None
        return self.fail(unproven.reason, unproven.message, unproven.delay)

    async def release_account(self) -> None:
        """The GpuPod lets go of its account: the last one removes the in-use finalizers."""
        if self.account is None:
            return
        self.rt.registry.release(self.ref.namespace, self.ref.name)
        users = self.rt.registry.users(self.account)  # no await since: see Registry.users
        await self.rt.accounts.release(self.account, users_left=users)

    # ------------------------------------------------------------ remote reads

    async def observe(self) -> None:
        adopt = self.desired.adopt
        pod_id = self.recorded.pod_id or (adopt.pod_id if adopt is not None else None)
        assert pod_id is not None
        pod = await (await self.provider()).observe(pod_id)
        self.observed = st.Observed(pod)
        if pod is not None:
            self.confirm_pin()

    async def look_up(self) -> None:
        assert self.recorded.pending_since is not None
        self.lookup = await (await self.provider()).look_up(
            self.recorded.remote_name, self.recorded.pending_since
        )

    # ------------------------------------------------------------ remote writes

    async def store_first(self, facts: dict[str, Any], now: dt.datetime) -> None:
        """Store `facts` (with what the attempt knows so far) BEFORE a remote call whose
        answer may be lost after it took effect, as a compare-and-swap at the version this
        attempt decided on: a conflict means someone else may be acting (Stale)."""
        patch = st.project(
            self.status, now=now, gpu_count=self.spec.gpuCount, facts={**self.facts, **facts}
        )
        if patch is None:
            return  # already stored
        try:
            result = await self.rt.kube.patch_status(self.ref, patch)
        except Conflict:
            raise Stale() from None
        self.rt.metrics.status_patches.inc()
        self.ref = ObjectRef.of(result)
        self.status = dict(result.get("status") or {})
        self.facts.clear()  # written

    async def write_marker(self, since: dt.datetime, binding: Binding) -> None:
        """The create marker: a POST may follow, so a lookup by name must precede any other.
        The account is pinned in the same write: no crash can separate the two."""
        marker = {
            "createPending": {"remoteName": self.recorded.remote_name, "since": st.now_iso(since)},
            "remoteName": self.recorded.remote_name,
            "phase": st.Phase.CREATING.value,
            "account": binding.account.pin(binding.fingerprint),
        }
        await self.store_first(marker, since)
        self.recorded = replace(self.recorded, pending_since=since)

    async def create(self) -> None:
        provider = await self.provider()  # resolved now if not pinned: pinned by the marker
        assert self.binding is not None
        secret_values = await resolve_secret_env(self.rt.kube, self.ref.namespace, self.spec)
        request = build_create_request(self.spec, self.recorded.remote_name, secret_values)
        self.fence()
        # Tenancy: GpuTenantPolicy, then GpuQuota admission (raises admission.Blocked).
        await admission.before_create(self.rt, self.ref, self.spec, self.created)
        # Stored BEFORE the POST (see the module docstring); if this fails, nothing is created.
        await self.write_marker(_now(), self.binding)
        self.pinned_fp = self.binding.fingerprint
        # After the marker (so no finalizer is left without a GpuPod pinning the account),
        # before the POST (so no remote pod exists whose key a namespace deletion could take).
        try:
            await self.rt.accounts.hold(self.binding)
        except AccountUnavailable:
            # Nothing was sent, and create() runs only when no pod of ours can exist: the
            # marker may go again (a finalize then needs no key to release the GpuPod).
            undo = {"createPending": None, "account": None, "phase": st.Phase.PENDING.value}
            await self.store_first(undo, _now())
            raise
        self.fence()
        pod = await provider.create(request)
        self.record_pod(pod)
        await admission.after_create(self.rt, self.ref, pod)
        self.rt.poller.poke()
        # No Event here: the status shows the pod ID and phase from this write on, and the
        # move into Running (or Failed) is the Event a human needs (status_writer).
        log.info("%s/%s created remote pod %s", self.ref.namespace, self.ref.name, pod.id)

    def fence(self) -> None:
        """HA: a create starts only if it ends before the leader Lease could pass on."""
        if not self.rt.may_create():
            raise kopf.TemporaryError("create deferred until the leader Lease is renewed", delay=1)

    @property
    def settle(self) -> dt.timedelta:
        return d.create_settle(self.rt.config.request_timeout)

    async def adopt(self, action: d.Adopt) -> None:
        self.record_pod(action.pod)
        self.confirm_pin()
        self.rt.events.normal(
            self.ref, "Adopted", f"found remote pod {action.pod.id} from an unconfirmed create"
        )
        for dup in action.duplicates:
            await (await self.provider()).delete(dup.id)
            self.rt.events.warning(
                self.ref, "DuplicateDeleted", f"deleted duplicate remote pod {dup.id}"
            )

    async def act(self, action: d.Action) -> None:
        """Perform one non-final action and update what we know."""
        events, ref = self.rt.events, self.ref
        match action:
            case d.Observe():
                await self.observe()
            case d.LookUp():
                await self.look_up()
            case d.Create():
                await self.create()
            case d.Adopt():
                await self.adopt(action)
            case d.TakeOver(pod=pod):
                # The name the provider reports is the pod's; ours is never given to it.
                self.recorded = replace(self.recorded, remote_name=pod.name or "")
                self.record_pod(pod)
                mode = "Observe" if self.desired.adopt and self.desired.adopt.observe else "Manage"
                events.normal(
                    ref, "Adopted", f"took over remote pod {pod.id} ({pod.name}), mode {mode}"
                )
                # Confirmed on a second look: a claimant applied at the same moment whose watch
                # event had not arrived yet is seen then, and the younger one gives way
                # (domain.adoption) before anything acts on the pod.
                message = f"confirming that no older GpuPod claims remote pod {pod.id}"
                self.sync = st.Sync.unknown(CONFIRMING, message)
                raise kopf.TemporaryError(message, delay=ADOPT_CONFIRM)
            case d.Disown(pod_id=pod_id):
                self.recorded = replace(self.recorded, pod_id=None, spec_hash=None)
                self.facts.update(podId=None, specHash=None, remoteName=None)
                self.observed = None
            case d.Pause(pod_id=pod_id):
                # Recorded even if the answer is lost after the pause took effect (see
                # handlers._DiffBase for why this must reach the status even then).
                self.facts["pausedApplied"] = True
                self.observed = None
                await (await self.provider()).pause(pod_id)
                events.normal(ref, "Pausing", f"pausing remote pod {pod_id}")
            case d.Resume(pod_id=pod_id):
                self.facts["pausedApplied"] = False  # as for Pause
                self.observed = None
                await (await self.provider()).resume(pod_id)
                events.normal(ref, "Resuming", f"resuming remote pod {pod_id}")
            case d.Delete(pod_id=pod_id, reason=reason, replace=replacing):
                if replacing:
                    # Stored before the call: the answer (or the operator) may be lost after
                    # it worked, and a started replacement must complete even if the spec is
                    # reverted meanwhile.
                    await self.store_first({"replacing": True}, _now())
                    self.recorded = replace(self.recorded, replacing=True)
                self.observed = None
                await (await self.provider()).delete(pod_id)
                if self.announce_delete:
                    events.normal(ref, "Deleting", f"deleting remote pod {pod_id}: {reason}")
                self.facts.update(phase=st.Phase.TERMINATING.value, message=f"deleting: {reason}")
            case d.Forget():
                events.normal(
                    ref, "Recreating", f"remote pod {self.recorded.pod_id} is gone; creating anew"
                )
                self.recorded = replace(self.recorded, pod_id=None, spec_hash=None)
                self.facts.update(podId=None, specHash=None)
                self.observed = self.lookup = None
        if isinstance(action, d.Pause | d.Resume | d.Delete):
            self.rt.poller.poke()


def _adoption(rt: Runtime, body: Any, spec: GpuPodSpec) -> Adoption | None:
    """spec.adopt, and whether another GpuPod owns the pod (the registry's claims on it)."""
    if spec.adopt is None:
        return None
    me = claim_of(body)
    return Adoption(
        spec.adopt.podId,
        observe=spec.adopt.mode == AdoptMode.OBSERVE,
        owned_by=owned_elsewhere(me, rt.registry.claims(spec.adopt.podId)),
    )


async def _fresh(rt: Runtime, ref: ObjectRef) -> Any | None:
    """The GpuPod as stored now; None when it is gone or is another object by now."""
    try:
        body = await rt.kube.get(ref)
    except Gone:
        return None
    return body if body["metadata"].get("uid") == ref.uid else None


async def _run(
    rt: Runtime,
    body: Any,
    retry: int,
    steps: Any,
    *,
    save_on_success: bool = True,
    handled: str | None = None,
) -> None:
    """Run `steps` on an Attempt, re-reading the GpuPod after a lost compare-and-swap, and
    write what it learned at the end, whatever happened. `handled` (kopf's digest of the body
    it handed over, handlers._DiffBase) goes into that write on success only: a failure must
    leave kopf a change to retry."""
    for _ in range(MAX_REREADS):
        a = Attempt.of(rt, body)
        try:
            await steps(a, retry)
        except Stale:
            log.info("%s/%s changed meanwhile; deciding again", a.ref.namespace, a.ref.name)
            # What this attempt did before the lost swap (a Recreate's delete, a pause) is a
            # fact all the same: keep it, then decide again from the fresh object.
            try:
                body = await a.save() or await _fresh(rt, a.ref)
            except KubeError as e:
                raise kopf.TemporaryError(f"Kubernetes API: {e}", delay=f.backoff(retry)) from e
            if body is None:
                return
            continue
        except Exception:
            try:
                await a.save()
            except KubeError as e:  # the error already raised says more
                log.warning("status of %s/%s not written: %s", a.ref.namespace, a.ref.name, e)
            raise
        if save_on_success:
            if handled is not None:
                a.facts["lastHandled"] = handled
            try:
                await a.save()
            except KubeError as e:
                raise kopf.TemporaryError(f"Kubernetes API: {e}", delay=f.backoff(retry)) from e
        return
    raise kopf.TemporaryError("the GpuPod keeps changing; trying again", delay=1)


async def reconcile(rt: Runtime, body: Any, retry: int, handled: str | None = None) -> None:
    # At most --max-concurrent-reconciles of a namespace at once (controller.gate); not
    # `finalize`: a delete never waits behind creates.
    async with rt.gate.slot(body["metadata"]["namespace"]):
        await _run(rt, body, retry, _reconcile_steps, handled=handled)


async def _reconcile_steps(a: Attempt, retry: int) -> None:
    for _ in range(MAX_STEPS):
        action = d.reconcile(a.desired, a.recorded, a.observed, a.lookup, a.settle)
        unproven = a.guard(action)
        if unproven is not None:
            raise a.refuse(unproven)
        match action:
            case d.Done():
                a.sync = st.Sync.ok()
                return
            case d.Stop(reason=reason, message=message, phase=phase):
                if phase:
                    a.facts["phase"] = phase
                a.facts["message"] = message
                a.sync = st.Sync.failed(reason, message)
                if a.observed is not None and a.observed.gone:
                    await admission.released(a.rt, a.ref)  # confirmed gone: capacity frees
                # A move into Failed/Lost/Terminated is announced by the status writer already.
                announced = st.transition_event(a.status.get("phase"), a.facts, a.recorded.pod_id)
                # A guardrail's move into Paused/Failed/Terminated is announced by the writer
                # (status.transition_event), whichever writer records it first.
                by_writer = reason in cost.GUARDS and phase != st.Phase.PENDING.value
                if a.reported != reason and announced is None and not by_writer:
                    a.rt.events.warning(a.ref, reason, message)
                return
            case d.Wait(reason=reason, message=message, delay=delay, unsure=unsure):
                a.sync = (st.Sync.unknown if unsure else st.Sync.failed)(reason, message)
                raise kopf.TemporaryError(message, delay=delay)
        try:
            await a.act(action)
        except f.ProviderError as e:
            if e.kind == f.FailureKind.GONE:
                a.observed = st.Observed(None)
                continue
            policy = f.policy(e.kind, _operation(action))
            if policy.observe_again:
                a.observed = None  # it changed under us: look again
                raise kopf.TemporaryError(policy.describe(e), delay=policy.delay or 2) from None
            if policy.terminal:
                # Permanent: the API refused the spec. No retry storm; a spec change retries.
                message = policy.describe(e)
                a.facts.update(phase=st.Phase.FAILED.value, createPending=None, message=str(e))
                a.sync = st.Sync.failed(policy.reason, message)
                a.rt.events.warning(a.ref, policy.reason, str(e))
                a.rt.metrics.reconcile_errors.labels(policy.reason).inc()
                if isinstance(action, d.Create):
                    await admission.released(a.rt, a.ref)  # refused: nothing was created
                return
            raise a.fail(
                policy.reason, policy.describe(e), f.delay(policy, retry, e.retry_after)
            ) from None
        except SecretMissing as e:
            a.facts.setdefault("phase", a.status.get("phase") or st.Phase.PENDING.value)
            raise a.fail("SecretNotFound", str(e), 10) from None
        except admission.Blocked as e:
            a.facts.update(phase=st.Phase.PENDING.value, message=e.message)
            raise a.fail(e.reason, e.message, e.delay) from None
        except AccountUnavailable as e:
            a.facts.setdefault("phase", a.status.get("phase") or st.Phase.PENDING.value)
            raise a.fail(e.reason, str(e), ACCOUNT_RETRY) from None
        except Stale:
            raise
        except KubeError as e:
            raise kopf.TemporaryError(f"Kubernetes API: {e}", delay=f.backoff(retry)) from None
    raise kopf.TemporaryError("still converging", delay=1)


async def finalize(rt: Runtime, body: Any, retry: int) -> None:
    """Returns when the finalizer may go: remote pod gone (or orphaned on purpose). Once
    released, the GpuPod is gone with the finalizer: a status write would be waste."""
    await _run(rt, body, retry, _finalize_steps, save_on_success=False)


async def _finalize_steps(a: Attempt, retry: int) -> None:
    a.announce_delete = False
    steps, waited = 0, 0.0
    while steps < MAX_STEPS:
        steps += 1
        action = d.finalize(a.desired, a.recorded, _now(), a.observed, a.lookup, a.settle)
        unproven = a.guard(action)
        if unproven is not None:
            raise a.refuse(unproven)
        match action:
            case d.Release(reason=reason, message=message, keeps_pod=keeps_pod):
                if keeps_pod and a.rt.released is not None:
                    # BEFORE the finalizer goes: the sweep must never take it for an orphan.
                    try:
                        await a.rt.released.record(a.ref, a.recorded)
                    except KubeError as e:
                        raise kopf.TemporaryError(
                            f"cannot record the released pod: {e}", delay=f.backoff(retry)
                        ) from None
                await admission.released(a.rt, a.ref)
                try:
                    await a.release_account()
                except KubeError as e:  # the GpuPod keeps its finalizer until this is done
                    raise kopf.TemporaryError(
                        f"releasing the account: {e}", delay=f.backoff(retry)
                    ) from None
                if reason == "Orphaned":
                    a.rt.events.warning(a.ref, "Orphaned", message)
                else:
                    a.rt.events.normal(a.ref, reason, message)
                return
            case d.Wait(message=message, delay=delay):
                if waited + delay <= DELETE_WAIT:
                    await pause(delay)  # then look again (nothing written meanwhile)
                    waited += delay
                    a.observed = a.lookup = None
                    steps -= 2  # neither this wait nor the look after it is a step
                    continue
                a.facts.update(phase=st.Phase.TERMINATING.value, message=message)
                raise kopf.TemporaryError(message, delay=delay)
        try:
            await a.act(action)
        except f.ProviderError as e:
            if e.kind == f.FailureKind.GONE:
                a.observed = st.Observed(None)
                continue
            message = f.DELETE_FAILED.describe(e, pod_id=a.recorded.pod_id)
            a.facts.update(message=message)
            a.sync = st.Sync.failed(f.DELETE_FAILED.reason, message)
            if retry == 0 or retry % 10 == 0:
                a.rt.events.warning(a.ref, f.DELETE_FAILED.reason, message)
            a.rt.metrics.reconcile_errors.labels(f.DELETE_FAILED.reason).inc()
            raise kopf.TemporaryError(
                message, delay=f.delay(f.DELETE_FAILED, retry, e.retry_after)
            ) from None
        except AccountUnavailable as e:
            raise a.fail(e.reason, f"{e}; the finalizer stays", ACCOUNT_RETRY) from None
        except Stale:
            raise
        except KubeError as e:
            raise kopf.TemporaryError(f"Kubernetes API: {e}", delay=f.backoff(retry)) from None
    raise kopf.TemporaryError("still deleting", delay=1)


async def reconcile_now(rt: Runtime, ref: ObjectRef) -> None:
    """Reconcile a GpuPod at once, outside kopf's retry timer: a GpuPod waiting for quota
    when capacity has just freed. Safe next to kopf's own handler: the create marker is a
    compare-and-swap, so two reconciles of one GpuPod never both create."""
    body = await _fresh(rt, ref)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return
    try:
        await reconcile(rt, body, 0)
    except kopf.TemporaryError as e:
        log.debug("%s/%s: %s", ref.namespace, ref.name, e)
