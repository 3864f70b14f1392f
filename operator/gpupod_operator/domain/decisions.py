"""What to do next, decided from three inputs and nothing else.

- Desired:  what the GpuPod spec asks for.
- Recorded: what our status says we did (pod ID, the create marker, the spec hash).
- Observed: what the API says now (the pod by ID, or the pods carrying our name).

Each call returns ONE action; the controller performs it, records the result and asks again,
until the answer is Done, Wait or Stop. Keeping every branch here makes the crash-safety rules
testable without a cluster or an API.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from gpupod_operator.domain import cost
from gpupod_operator.domain.adoption import Adoption
from gpupod_operator.domain.spec import DeletionPolicy, LifetimeAction, UpdatePolicy
from gpupod_operator.domain.status import Observed, failed_message, unknown_status_message
from gpupod_operator.yotta import Pod, PodStatus

# A pod whose create answer was lost may show up in a list a little later; before releasing a
# deleted GpuPod whose create is in doubt, look again once this long has passed since the POST.
CREATE_SETTLE = dt.timedelta(seconds=10)
WAIT_TRANSITION = 2.0  # seconds between looks while the remote pod changes state
UNKNOWN_STATUS_RETRY = 30.0  # seconds between looks at a pod whose status word is unknown

LIVE = frozenset({PodStatus.INITIALIZE, PodStatus.RUNNING, PodStatus.PAUSING, PodStatus.PAUSED})


@dataclass(frozen=True)
class Desired:
    spec_hash: str
    paused: bool = False
    update_policy: UpdatePolicy = UpdatePolicy.REJECT
    deletion_policy: DeletionPolicy = DeletionPolicy.DELETE
    limits: cost.Limits = field(default_factory=cost.Limits)  # lifetime, price cap
    gpu_count: int = 1
    adopt: Adoption | None = None  # spec.adopt: obtain the pod ID by taking over, not creating


@dataclass(frozen=True)
class Recorded:
    remote_name: str
    pod_id: str | None = None
    pending_since: dt.datetime | None = None  # the create marker: a POST may have happened
    spec_hash: str | None = None
    replacing: bool = False  # we are deleting the pod to create a new one (Recreate)
    running_seconds: int = 0  # status.cost.runningSeconds (the poller counts them)
    price: str | None = None  # status.pricePerHour, for when the pod is gone
    guard: str | None = None  # status.cost.guard


@dataclass(frozen=True)
class NameLookup:
    """Pods the API lists under our remote name, and when the list was taken."""

    pods: list[Pod]
    taken_at: dt.datetime

    def live(self) -> list[Pod]:
        """Candidates for adoption: not terminated (a FAILED pod is ours too: show it)."""
        keep = [
            p for p in self.pods if p.status not in (PodStatus.TERMINATED, PodStatus.TERMINATING)
        ]
        return sorted(keep, key=lambda p: (p.createdAt or 0, p.id))


# ---------------------------------------------------------------- actions


@dataclass(frozen=True)
class Observe:
    """Read the pod by ID."""


@dataclass(frozen=True)
class LookUp:
    """List the pods and find ours by name: a create may have happened that we never heard of."""


@dataclass(frozen=True)
class Create:
    """Write the create marker, then POST. Only when no pod of ours can exist."""


@dataclass(frozen=True)
class Adopt:
    pod: Pod
    duplicates: list[Pod] = field(default_factory=list)


@dataclass(frozen=True)
class TakeOver:
    """spec.adopt: record an existing remote pod as ours. No create marker, no POST."""

    pod: Pod


@dataclass(frozen=True)
class Disown:
    """Another GpuPod owns the adopted pod: forget its ID without touching it."""

    pod_id: str


@dataclass(frozen=True)
class Pause:
    pod_id: str


@dataclass(frozen=True)
class Resume:
    pod_id: str


@dataclass(frozen=True)
class Delete:
    pod_id: str
    reason: str
    replace: bool = False  # a new pod follows: record that, so the replacement completes


@dataclass(frozen=True)
class Forget:
    """The old pod is gone (Recreate): clear the ID so the next step creates the new one."""


@dataclass(frozen=True)
class Wait:
    reason: str
    message: str
    delay: float = WAIT_TRANSITION
    unsure: bool = False  # we cannot tell whether the pod matches the spec: Synced=Unknown


@dataclass(frozen=True)
class Done:
    """In sync with the spec; nothing to do until something changes."""

    pod: Pod


@dataclass(frozen=True)
class Stop:
    """Nothing the operator may do fixes this; report it and wait for the user."""

    reason: str
    message: str
    phase: str


@dataclass(frozen=True)
class Release:
    """Deletion may complete: remove the finalizer."""

    reason: str
    message: str
    keeps_pod: bool = False  # the remote pod stays on purpose: remember it (never an orphan)


Action = (
    Observe
    | LookUp
    | Create
    | Adopt
    | TakeOver
    | Disown
    | Pause
    | Resume
    | Delete
    | Forget
    | Wait
    | Done
    | Stop
    | Release
)


def create_settle(create_timeout: float) -> dt.timedelta:
    """How long after a create marker a name lookup must have been taken before it may rule
    that create out: the POST may run for the whole create timeout (it may have been sent by
    another operator process before a handover, whose end this process never saw), and its pod
    may show in a list a little later (CREATE_SETTLE, which also covers clock skew)."""
    return dt.timedelta(seconds=create_timeout) + CREATE_SETTLE


def _adopt_or_none(lookup: NameLookup) -> Adopt | None:
    live = lookup.live()
    if not live:
        return None
    return Adopt(pod=live[0], duplicates=live[1:])


def reconcile(
    desired: Desired,
    recorded: Recorded,
    observed: Observed | None = None,
    lookup: NameLookup | None = None,
    settle: dt.timedelta = CREATE_SETTLE,
) -> Action:
    """The next step toward the spec for a GpuPod that is not being deleted.

    A create marker without a pod ID means a POST may have happened: the pod is looked up by
    name, and a new create follows only once a lookup taken `settle` after the marker finds
    nothing (see `create_settle`).

    With `spec.adopt` the pod ID is obtained by taking the named pod over instead (never a
    create); from then on everything is the same, except that Observe never acts on it."""
    adoption = desired.adopt
    if adoption is not None:
        taking = _adoption(adoption, recorded, observed)
        if taking is not None:
            return taking
    if recorded.pod_id is None:
        if recorded.pending_since is not None:
            if lookup is None:
                return LookUp()
            adopt = _adopt_or_none(lookup)
            if adopt is not None:
                return adopt
            if lookup.taken_at < recorded.pending_since + settle:
                return Wait(
                    "CheckingCreate",
                    "making sure an unconfirmed create left no pod before creating again",
                    WAIT_TRANSITION,
                    unsure=True,
                )
        if cost.guard(desired.limits, recorded.running_seconds, None, None, False) == cost.LIFETIME:
            # E.g. a Recreate after the lifetime was spent: a new pod would only be stopped.
            message = cost.message(cost.LIFETIME, desired.limits, recorded.running_seconds, None)
            return Stop(cost.LIFETIME, f"no remote pod is created: {message}", "Pending")
        return Create()

    if observed is None:
        return Observe()
    pod = observed.pod
    wants_new_spec = recorded.spec_hash is not None and recorded.spec_hash != desired.spec_hash
    # A replacement once started completes, even if the spec changes back meanwhile: the old
    # pod is (being) deleted, and only a new one can satisfy the spec again.
    # Never for an adopted pod: it is not ours to replace (Crossplane never deletes on a diff).
    recreate = recorded.replacing or (
        wants_new_spec and desired.update_policy == UpdatePolicy.RECREATE and adoption is None
    )

    observe_only = adoption is not None and adoption.observe
    # Observe never acts on its pod, not even for a guardrail (its spend is still counted).
    guarded = None if observe_only else _guarded(desired, recorded, observed)
    if pod is None or pod.status == PodStatus.TERMINATED:
        if recreate:
            return Forget()
        if guarded is not None:
            return guarded
        if pod is None:
            return Stop("RemotePodLost", f"remote pod {recorded.pod_id} no longer exists", "Lost")
        return Stop(
            "RemotePodTerminated",
            f"remote pod {recorded.pod_id} was terminated outside this GpuPod; "
            "delete the GpuPod (and re-apply it) to get a new one",
            "Terminated",
        )
    if recreate:
        if pod.status == PodStatus.TERMINATING:
            return Wait("Recreating", f"waiting for remote pod {pod.id} to terminate")
        return Delete(pod.id, reason="the spec changed and updatePolicy is Recreate", replace=True)
    if guarded is not None:
        return guarded
    if wants_new_spec:
        return Stop(
            "UpdateRejected",
            "the spec changed but the Yotta API cannot update a pod: set "
            "spec.updatePolicy: Recreate to replace it, or revert the change",
            "",
        )
    if pod.status == PodStatus.UNKNOWN:
        # Never "in sync" on a word we do not understand: say it, and look again later.
        return Wait(
            "UnknownRemoteStatus", unknown_status_message(pod), UNKNOWN_STATUS_RETRY, unsure=True
        )
    if pod.status == PodStatus.FAILED:
        return Stop("RemotePodFailed", f"remote pod {pod.id}: {failed_message(pod)}", "Failed")
    if pod.status == PodStatus.TERMINATING:
        return Stop("RemotePodTerminating", f"remote pod {pod.id} is terminating", "Terminating")
    if observe_only:
        return Done(pod)  # mirrored by the status; never paused or resumed

    if desired.paused:
        if pod.status == PodStatus.RUNNING:
            return Pause(pod.id)
        if pod.status == PodStatus.INITIALIZE:
            return Wait("WaitingToPause", f"remote pod {pod.id} must be RUNNING before a pause")
    else:
        if pod.status == PodStatus.PAUSED:
            return Resume(pod.id)
        if pod.status == PodStatus.PAUSING:
            return Wait("WaitingToResume", f"remote pod {pod.id} must be PAUSED before a resume")
    return Done(pod)


def _guarded(desired: Desired, recorded: Recorded, observed: Observed) -> Action | None:
    """The lifetime and the price cap (domain.cost): pause or delete the pod, verify that it
    got there, then stop. Never resumed or recreated by itself; what lifts a guardrail is in
    cost.guard (raising maxRunDuration; nothing for a price: delete and re-apply)."""
    limits, pod = desired.limits, observed.pod
    price = cost.price_of(observed, desired.gpu_count, recorded.price)
    live = pod is not None and pod.status not in (PodStatus.TERMINATED, PodStatus.TERMINATING)
    reason = cost.guard(limits, recorded.running_seconds, price, recorded.guard, live)
    if reason is None:
        return None
    message = cost.message(reason, limits, recorded.running_seconds, price)
    if reason == cost.PRICE or limits.action == LifetimeAction.DELETE:
        if pod is None or pod.status == PodStatus.TERMINATED:
            phase = "Failed" if reason == cost.PRICE else "Terminated"
            return Stop(reason, message, phase)
        if pod.status == PodStatus.TERMINATING:
            return Wait(reason, f"waiting for remote pod {pod.id} to terminate: {message}", 1.0)
        return Delete(pod.id, reason=message)
    # Lifetime with action Pause.
    if pod is None:
        return None  # lost: reported as such
    match pod.status:
        case PodStatus.RUNNING:
            return Pause(pod.id)
        case PodStatus.PAUSED:
            return Stop(reason, message, "Paused")
        case PodStatus.INITIALIZE | PodStatus.PAUSING:
            return Wait(reason, f"waiting for remote pod {pod.id} to settle: {message}")
    return None  # FAILED, TERMINATING, unknown: reported as they are


def finalize(
    desired: Desired,
    recorded: Recorded,
    now: dt.datetime,
    observed: Observed | None = None,
    lookup: NameLookup | None = None,
    settle: dt.timedelta = CREATE_SETTLE,
) -> Action:
    """The next step for a GpuPod being deleted; Release ends it (the finalizer goes)."""
    adoption = desired.adopt
    if adoption is not None and adoption.owned_by is not None:
        return Release(
            "NotOwned", f"remote pod {adoption.pod_id} belongs to GpuPod {adoption.owned_by}"
        )
    if adoption is not None and adoption.observe and recorded.pod_id:
        return Release(
            "Released",
            f"adopt mode is Observe: remote pod {recorded.pod_id} left running",
            keeps_pod=True,
        )
    if desired.deletion_policy == DeletionPolicy.ORPHAN:
        if recorded.pod_id:
            what = f"remote pod {recorded.pod_id} left running"
        elif recorded.pending_since is not None:
            what = f"a remote pod named {recorded.remote_name} may exist (create unconfirmed)"
        else:
            what = "no remote pod was created"
        return Release("Orphaned", f"deletionPolicy is Orphan: {what}", keeps_pod=True)

    pod_id = recorded.pod_id
    if pod_id is None:
        if recorded.pending_since is None:
            return Release("NeverCreated", "no remote pod was ever created")
        if lookup is None:
            return LookUp()
        adopt = _adopt_or_none(lookup)
        if adopt is None:
            if lookup.taken_at >= recorded.pending_since + settle:
                return Release("NeverCreated", "no remote pod carries this GpuPod's name")
            return Wait("CheckingCreate", "making sure an unconfirmed create left no pod", 2.0)
        return Adopt(pod=adopt.pod, duplicates=adopt.duplicates)

    if observed is None:
        return Observe()
    pod = observed.pod
    if pod is None or pod.status == PodStatus.TERMINATED:
        return Release("Deleted", f"remote pod {pod_id} is gone")
    if pod.status == PodStatus.TERMINATING:
        return Wait("Terminating", f"waiting for remote pod {pod_id} to terminate", 1.0)
    return Delete(pod_id, reason="the GpuPod is being deleted")


def _adoption(adoption: Adoption, recorded: Recorded, observed: Observed | None) -> Action | None:
    """The adoption steps, or None once the pod is ours (then the usual path goes on)."""
    pod_id = adoption.pod_id
    if adoption.owned_by is not None:
        if recorded.pod_id == pod_id:
            return Disown(pod_id)
        return Stop(
            "AlreadyOwned",
            f"remote pod {pod_id} is already owned by GpuPod {adoption.owned_by}: a remote pod "
            "has one GpuPod; delete this GpuPod (or the other one first, then re-apply this)",
            "Pending",
        )
    if recorded.pod_id is not None:
        return None
    if observed is None:
        return Observe()
    pod = observed.pod
    if pod is None or pod.status in (PodStatus.TERMINATED, PodStatus.TERMINATING):
        what = "does not exist for this account" if pod is None else f"is {pod.status.value}"
        return Stop(
            "AdoptionFailed",
            f"spec.adopt.podId: remote pod {pod_id} {what}; nothing was created. Set the ID "
            "of a live pod (Yotta console or GET /v2/pods), or remove spec.adopt to create one",
            "Failed",
        )
    return TakeOver(pod)
