"""Everything about the Yotta Pods API v2 and nothing about Kubernetes."""

from gpupod_operator.yotta.client import Observer, YottaClient
from gpupod_operator.yotta.errors import (
    ApiError,
    InvalidRequest,
    InvalidState,
    NotFound,
    OutcomeUnknown,
    Transient,
    Unauthorized,
    YottaError,
)
from gpupod_operator.yotta.models import (
    CreatePodRequest,
    Envelope,
    EnvVar,
    ExposePort,
    ExposePortRequest,
    GpuType,
    GpuTypeRegion,
    PersistentVolumeRef,
    Pod,
    PodStatus,
)
from gpupod_operator.yotta.ratelimit import TokenBucket

__all__ = [
    "ApiError",
    "CreatePodRequest",
    "EnvVar",
    "Envelope",
    "ExposePort",
    "ExposePortRequest",
    "GpuType",
    "GpuTypeRegion",
    "InvalidRequest",
    "InvalidState",
    "NotFound",
    "Observer",
    "OutcomeUnknown",
    "PersistentVolumeRef",
    "Pod",
    "PodStatus",
    "TokenBucket",
    "Transient",
    "Unauthorized",
    "YottaClient",
    "YottaError",
]
