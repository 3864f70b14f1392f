"""What a failed provider call means for a GpuPod: ONE table, read by the reconciler.

The provider boundary turns every error of the remote API into a `ProviderError` with one of
these kinds; the controller never inspects the API's own error classes. Each kind (optionally
per operation) maps to the Synced reason shown, how long to wait, whether retrying can help
(terminal), whether a Warning Event is worth posting, and whether the pod must be read again.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum


class FailureKind(StrEnum):
    GONE = "gone"  # the remote pod does not exist (pause/resume of a deleted pod)
    REJECTED = "rejected"  # the API refused the request as invalid: retrying it unchanged fails
    WRONG_STATE = "wrong_state"  # the pod is not in a state that allows the action
    UNAUTHORIZED = "unauthorized"
    UNAVAILABLE = "unavailable"  # 5xx, 429, timeouts, refused connections
    OUTCOME_UNKNOWN = "outcome_unknown"  # a create may or may not have happened
    UNEXPECTED = "unexpected"  # an answer the client does not recognise


class Operation(StrEnum):
    OBSERVE = "observe"
    CREATE = "create"
    PAUSE = "pause"
    RESUME = "resume"
    DELETE = "delete"


class ProviderError(Exception):
    """A failed provider call. str() is safe to show: the client redacts keys and env values."""

    def __init__(self, kind: FailureKind, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after


@dataclass(frozen=True)
class Policy:
    reason: str
    delay: float | None  # seconds; None = jittered exponential backoff (or Retry-After)
    message: str = "{error}"  # what Synced says; {error} is the provider's (redacted) words
    terminal: bool = False  # a retry cannot help: stop until the spec changes
    # Our view of the pod was stale, nothing more: read it again after `delay`, report nothing.
    observe_again: bool = False

    def describe(self, error: ProviderError, **context: object) -> str:
        return self.message.format(error=error, **context)


_DEFAULT = Policy("ProviderError", None)
_TABLE: dict[tuple[FailureKind, Operation | None], Policy] = {
    (FailureKind.REJECTED, Operation.CREATE): Policy(
        "CreateRejected", None, "the Yotta API rejected the pod: {error}", terminal=True
    ),
    (FailureKind.REJECTED, None): Policy("RequestRejected", 60),
    (FailureKind.WRONG_STATE, None): Policy("RemoteStateChanged", 2, observe_again=True),
    (FailureKind.UNAUTHORIZED, None): Policy(
        "Unauthorized", 60, "the Yotta API refused the key: {error}"
    ),
    (FailureKind.UNAVAILABLE, None): Policy("ProviderUnavailable", None),
    (FailureKind.OUTCOME_UNKNOWN, None): Policy(
        "CreateUnconfirmed", 2, "the create's outcome is unknown ({error}); looking it up"
    ),
    (FailureKind.UNEXPECTED, None): _DEFAULT,
}
# While a GpuPod is being deleted every failure reads the same to the user: the finalizer stays.
DELETE_FAILED = Policy(
    "DeleteFailed",
    None,
    "cannot delete remote pod {pod_id}: {error}. The finalizer stays until the provider confirms; "
    "to give up and keep the pod, set spec.deletionPolicy: Orphan",
)


def policy(kind: FailureKind, operation: Operation) -> Policy:
    return _TABLE.get((kind, operation)) or _TABLE.get((kind, None)) or _DEFAULT


def backoff(retry: int, retry_after: float | None = None) -> float:
    """Seconds before a retry: the provider's Retry-After, else jittered exponential."""
    if retry_after:
        return max(1.0, retry_after)
    return min(60.0, 2.0 ** min(retry, 6)) * random.uniform(0.8, 1.2)


def delay(p: Policy, retry: int, retry_after: float | None) -> float:
    return p.delay if p.delay is not None and not retry_after else backoff(retry, retry_after)
