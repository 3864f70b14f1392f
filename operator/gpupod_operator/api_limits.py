"""The Yotta API's limits on a pod's create request, in one table.

hack/gen_crd.py (the CRD's bounds and enums), domain/spec.py (GpuPodSpec) and the simulator's
validation all read this table, so the three cannot disagree. It imports nothing of the
project: the simulator may use it without importing the client (gpupod_operator.yotta), whose
tables it must not share.

Keys are the API's field names (reference/yotta-pods-api.md §2.2). Each value names its
source; the sources document few limits, and where they give none the value is ours and the
comment says so. Ours are generous: the API has the last word, the CRD only catches early what
it would refuse.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class Range:
    """An integer's bounds, both inclusive; None: unbounded."""

    minimum: int
    maximum: int | None = None


@dataclass(frozen=True)
class Length:
    """A string's length bounds, in characters, both inclusive."""

    maximum: int
    minimum: int = 0


class ImagePublicType(StrEnum):
    """G-PODS, SDK openapi.yaml (REF-V2 names the two values in text only). Case-sensitive."""

    PUBLIC = "PUBLIC"
    PRIVATE = "PRIVATE"


class ResourceType(StrEnum):
    """G-PODS, SDK openapi.yaml. Case-sensitive."""

    GPU = "GPU"
    CPU = "CPU"


#: Expose protocols the sources show (§2.2): `http`, `tcp` in the guides, `HTTP`, `TCP`, `SSH`
#: in captured responses, `HTTPS` in an SDK mock. The case differs between sources, so any case
#: is accepted and sent as written. UDP appears in no source.
EXPOSE_PROTOCOLS: tuple[str, ...] = ("HTTP", "HTTPS", "TCP", "SSH")

#: gpuCount: a power of two (G-PODS, G-README, SDK). No maximum is documented (open question
#: 9): 64 is ours, a finite list because CEL has no bitwise operators. 8 is the usual node size,
#: but no source caps it there, so neither the CRD nor the simulator does.
GPU_COUNTS: tuple[int, ...] = tuple(2**i for i in range(7))

NAME = Length(255, minimum=1)  # REF-V2

STRINGS: dict[str, Length] = {
    "image": Length(255, minimum=1),  # REF-V2
    "imageRegistry": Length(255),  # REF-V2: 0-255
    # minLength 1: REF-V1 (REF-V2's excerpt ends before gpuType). Max ours: known codes are
    # at most 23 characters.
    "gpuType": Length(128, minimum=1),
    "persistentMountPath": Length(255, minimum=1),  # ours
    "initializationCommand": Length(4096),  # ours
}

INTEGERS: dict[str, Range] = {
    # v1's elastic spec caps these at 0-1536 (REF-V1); v2 documents no bound, so v1's.
    "minSingleCardVramInGb": Range(0, 1536),
    "minSingleCardRamInGb": Range(0, 1536),
    "minSingleCardVcpu": Range(0, 1024),  # ours: nothing documented
    # Undocumented. /dev/shm is host memory, so the documented memory cap above (1536), not
    # a smaller one of ours.
    "shmInGb": Range(0, 1536),
    # No pod bound is documented; v2 volumes are 1-10240 GB (§5.2), so the same range.
    "containerVolumeInGb": Range(1, 10240),
    # 0 means none (the SDK wants a mount path only when > 0); max as for volumes (§5.2).
    "persistentVolumeInGb": Range(0, 10240),
}

#: containerRegistryAuthId and persistentVolumes[].volumeId: positive int64 ids (REF-V2 int64;
#: the SDK checks ids are positive integers).
RESOURCE_ID = Range(1)

PORT = Range(1, 65535)  # G-DM

# Ours, all of them: the API documents no list sizes. The CRD needs bounds on every list and
# string to keep CEL cost estimates small; the simulator enforces the same so that what the
# CRD admits, it admits.
MAX_ITEMS: dict[str, int] = {
    "regions": 16,
    "expose": 32,
    "persistentVolumes": 16,
    "environmentVars": 128,
}
REGION = Length(64, minimum=1)  # ours; known codes are at most 14 characters
ENV_KEY = Length(128, minimum=1)  # the key is required (G-DM); the maximum is ours
ENV_VALUE = Length(32768)  # ours
MOUNT_PATH = Length(255, minimum=1)  # persistentVolumes[].mountPath; required (G-DM), max ours
