"""The tenancy checks on the create path, in ONE place: the reconciler calls `before_create`
just before the create marker, `after_create` once the pod exists and `released` once the
remote pod is confirmed gone.

Before a create: the GpuTenantPolicies of the namespace (controller/policy.py), then the
GpuQuotas (controller/quota.py). Either one refusing raises `Blocked`: the GpuPod stays
Pending with Synced=False and the reason, an Event says why, and nothing reaches the API.
"""

from __future__ import annotations

from gpupod_operator.controller.kube import ObjectRef
from gpupod_operator.controller.quota import WAIT_DELAY
from gpupod_operator.controller.runtime import Runtime
from gpupod_operator.domain.policy import describe
from gpupod_operator.domain.spec import GpuPodSpec
from gpupod_operator.yotta import Pod

POLICY_RETRY = 30.0  # seconds: a policy or spec change is what fixes a violation


class Blocked(Exception):
    """The create may not happen now; `reason` is the Synced reason."""

    def __init__(self, reason: str, message: str, delay: float) -> None:
        super().__init__(message)
        self.reason, self.message, self.delay = reason, message, delay


async def before_create(rt: Runtime, ref: ObjectRef, spec: GpuPodSpec, created: str) -> None:
    """Raise Blocked unless policy and quota allow this create; on return, the capacity is
    reserved (KubeError: could not tell, retry)."""
    if rt.policy is not None:
        found = await rt.policy.check(ref.namespace, spec)
        if found:
            raise Blocked("PolicyViolation", describe(found), POLICY_RETRY)
    if rt.quota is not None:
        refused = await rt.quota.admit(ref, spec, created)
        if refused is not None:
            raise Blocked(refused.reason, refused.message, WAIT_DELAY)


async def after_create(rt: Runtime, ref: ObjectRef, pod: Pod) -> None:
    if rt.quota is not None:
        await rt.quota.correct(ref, pod)


async def released(rt: Runtime, ref: ObjectRef) -> None:
    """The remote pod is confirmed TERMINATED or gone (or was never created)."""
    if rt.quota is not None:
        await rt.quota.release(ref)
