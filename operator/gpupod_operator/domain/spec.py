"""The GpuPod spec: parsing, the create request it maps to, its hash and the remote pod name.

GpuPodSpec has the same names, types and bounds as the CRD's spec schema (hack/gen_crd.py):
both read the API's limits from gpupod_operator.api_limits and the GpuPod's own bounds below,
and tests/unit/test_crd_schema.py fails on any difference between the two.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass
from enum import StrEnum
from operator import itemgetter
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from gpupod_operator import api_limits as limits
from gpupod_operator.api_limits import ImagePublicType, Length, Range, ResourceType
from gpupod_operator.yotta import CreatePodRequest

# Fields that only steer the operator and may change at any time; every other spec field is a
# create-time field and cannot change on a live remote pod (the API has no update).
OPERATOR_FIELDS = frozenset(
    {"paused", "deletionPolicy", "updatePolicy", "lifetime", "maxPricePerHour"}
)
# Create-time fields that choose where and how the pod is created, not what it is: part of the
# spec hash (a change replaces the pod under Recreate) but never sent to POST /v2/pods.
NOT_SENT_FIELDS = frozenset({"accountRef", "adopt"})
REMOTE_NAME_MAX = limits.NAME.maximum

# The GpuPod's own bounds: Kubernetes idioms, not the API's limits.
REGION_PATTERN = rf"^[a-z0-9-]{{{limits.REGION.minimum},{limits.REGION.maximum}}}$"
ABSOLUTE_PATH_PATTERN = r"^/.*$"  # absolute; `$` without (?m) also rules out newlines
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
SECRET_NAME = Length(253, minimum=1)
SECRET_KEY = Length(253, minimum=1)
# Longer than any protocol so that a wrong one gets the CRD rule's message, not "too long".
PROTOCOL = Length(16)
DEFAULT_PROTOCOL = "HTTP"
# A Go duration of hours, minutes and seconds (`8h`, `1h30m`, `90s`): CEL's duration() and
# parse_duration() both read it.
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(h|m|s))+$"
DURATION = Length(32, minimum=2)
# US dollars as a decimal string (`2.50`): never a float, so a cap compares exactly.
DECIMAL_PATTERN = r"^[0-9]{1,6}(\.[0-9]{1,6})?$"
DECIMAL = Length(13, minimum=1)
POD_ID_PATTERN = r"^[1-9][0-9]{0,19}$"  # a decimal string: IDs exceed 2^53
POD_ID = Length(20, minimum=1)


def _length(length: Length, pattern: str | None = None) -> Any:
    return Field(min_length=length.minimum or None, max_length=length.maximum, pattern=pattern)


def _range(bounds: Range) -> Any:
    return Field(ge=bounds.minimum, le=bounds.maximum)


def _known_protocol(value: str) -> str:
    # Any case, as the API (api_limits.EXPOSE_PROTOCOLS); kept as written, since it is sent so.
    if value.upper() not in limits.EXPOSE_PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(limits.EXPOSE_PROTOCOLS)}")
    return value


def _power_of_two(value: int) -> int:
    if value not in limits.GPU_COUNTS:
        raise ValueError(f"gpuCount must be one of {list(limits.GPU_COUNTS)}")
    return value


def _int(field: str) -> Any:
    return _range(limits.INTEGERS[field])


def _str(field: str, pattern: str | None = None) -> Any:
    return _length(limits.STRINGS[field], pattern)


class DeletionPolicy(StrEnum):
    DELETE = "Delete"
    ORPHAN = "Orphan"


class UpdatePolicy(StrEnum):
    REJECT = "Reject"
    RECREATE = "Recreate"


class AccountKind(StrEnum):
    YOTTA_ACCOUNT = "YottaAccount"
    CLUSTER_YOTTA_ACCOUNT = "ClusterYottaAccount"


class LifetimeAction(StrEnum):
    PAUSE = "Pause"
    DELETE = "Delete"


class AdoptMode(StrEnum):
    MANAGE = "Manage"
    OBSERVE = "Observe"


def parse_duration(value: str) -> dt.timedelta:
    """`1h30m` -> 90 minutes; the CRD's DURATION_PATTERN has already been checked."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0}
    if not re.fullmatch(DURATION_PATTERN, value):
        raise ValueError(f"{value!r} is not a duration such as 8h, 90m or 1h30m")
    seconds = sum(float(n) * units[u] for n, u in re.findall(r"([0-9.]+)([hms])", value))
    return dt.timedelta(seconds=seconds)


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class SecretKeyRef(_Model):
    name: Annotated[str, _length(SECRET_NAME, DNS_SUBDOMAIN_PATTERN)]
    key: Annotated[str, _length(SECRET_KEY, SECRET_KEY_PATTERN)]
    optional: bool = False


class EnvSource(_Model):
    secretKeyRef: SecretKeyRef


class EnvEntry(_Model):
    name: Annotated[str, _length(limits.ENV_KEY, ENV_NAME_PATTERN)]
    value: Annotated[str, _length(limits.ENV_VALUE)] | None = None
    valueFrom: EnvSource | None = None


class ExposeEntry(_Model):
    port: Annotated[int, _range(limits.PORT)]
    protocol: Annotated[str, _length(PROTOCOL), AfterValidator(_known_protocol)] = DEFAULT_PROTOCOL


class PersistentVolume(_Model):
    volumeId: Annotated[int, _range(limits.RESOURCE_ID)]
    mountPath: Annotated[str, _length(limits.MOUNT_PATH, ABSOLUTE_PATH_PATTERN)]
    needBackup: bool | None = None


class AccountRef(_Model):
    kind: AccountKind
    name: Annotated[str, _length(SECRET_NAME, DNS_SUBDOMAIN_PATTERN)]


class Lifetime(_Model):
    maxRunDuration: Annotated[str, _length(DURATION, DURATION_PATTERN)]
    action: LifetimeAction = LifetimeAction.PAUSE

    @property
    def max_run(self) -> dt.timedelta:
        return parse_duration(self.maxRunDuration)


class Adopt(_Model):
    podId: Annotated[str, _length(POD_ID, POD_ID_PATTERN)]
    mode: AdoptMode = AdoptMode.MANAGE


def _items(field: str) -> Any:
    return Field(default_factory=list, max_length=limits.MAX_ITEMS[field])


class GpuPodSpec(_Model):
    """The spec as the API server stores it (schema defaults already applied)."""

    image: Annotated[str, _str("image")] | None = None  # required unless adopt is set (CEL)
    imageRegistry: Annotated[str, _str("imageRegistry")] | None = None
    imagePublicType: ImagePublicType = ImagePublicType.PUBLIC
    containerRegistryAuthId: Annotated[int, _range(limits.RESOURCE_ID)] | None = None
    resourceType: ResourceType = ResourceType.GPU
    gpuType: Annotated[str, _str("gpuType")] | None = None
    gpuCount: Annotated[
        int, _range(Range(1, max(limits.GPU_COUNTS))), AfterValidator(_power_of_two)
    ] = 1
    regions: list[Annotated[str, _length(limits.REGION, REGION_PATTERN)]] = _items("regions")
    minSingleCardVramInGb: Annotated[int, _int("minSingleCardVramInGb")] | None = None
    minSingleCardRamInGb: Annotated[int, _int("minSingleCardRamInGb")] | None = None
    minSingleCardVcpu: Annotated[int, _int("minSingleCardVcpu")] | None = None
    shmInGb: Annotated[int, _int("shmInGb")] | None = None
    containerVolumeInGb: Annotated[int, _int("containerVolumeInGb")] | None = None
    persistentVolumeInGb: Annotated[int, _int("persistentVolumeInGb")] | None = None
    persistentMountPath: (
        Annotated[str, _str("persistentMountPath", ABSOLUTE_PATH_PATTERN)] | None
    ) = None
    initializationCommand: Annotated[str, _str("initializationCommand")] | None = None
    expose: list[ExposeEntry] = _items("expose")
    persistentVolumes: list[PersistentVolume] = _items("persistentVolumes")
    env: list[EnvEntry] = _items("environmentVars")
    paused: bool = False
    deletionPolicy: DeletionPolicy = DeletionPolicy.DELETE
    updatePolicy: UpdatePolicy = UpdatePolicy.REJECT
    accountRef: AccountRef | None = None
    lifetime: Lifetime | None = None
    maxPricePerHour: Annotated[str, _length(DECIMAL, DECIMAL_PATTERN)] | None = None
    adopt: Adopt | None = None

    @classmethod
    def parse(cls, spec: Any) -> GpuPodSpec:
        return cls.model_validate(dict(spec))

    def create_fields(self) -> dict[str, Any]:
        """The create-time fields, canonical: what the remote pod is built from."""
        fields = self.model_dump(mode="json", exclude_none=True, exclude=set(OPERATOR_FIELDS))
        # The CRD's list types are sets/maps: the API server treats a reorder as no change, so
        # must the hash (or a harmless reorder would look like an update).
        fields["regions"] = sorted(fields.get("regions", []))
        for key, by in (("env", "name"), ("expose", "port"), ("persistentVolumes", "mountPath")):
            fields[key] = sorted(fields.get(key, []), key=itemgetter(by))
        return fields

    def secret_refs(self) -> list[SecretKeyRef]:
        return [e.valueFrom.secretKeyRef for e in self.env if e.valueFrom is not None]


def spec_hash(spec: GpuPodSpec) -> str:
    """A stable digest of the create-time fields; env Secret *references* count, values not."""
    canonical = json.dumps(spec.create_fields(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# Our remote names end in `-<cluster tag>-<GpuPod UID, 32 hex>`: fixed-width fields at the END,
# so the readable `<namespace>-<name>` part stays first in the Yotta console and is the only
# part ever cut to fit the API's 255 characters.
CLUSTER_TAG_LENGTH = 10
_OURS = re.compile(
    rf"^(?P<label>.+)-(?P<tag>[0-9a-f]{{{CLUSTER_TAG_LENGTH}}})-(?P<uid>[0-9a-f]{{32}})$"
)


def cluster_tag(cluster_id: str) -> str:
    """The short form of a cluster identity that goes into remote names: 10 hex digits of a
    digest, whatever the identity looks like (a UUID, or a name given with --cluster-id)."""
    return hashlib.sha256(cluster_id.strip().encode()).hexdigest()[:CLUSTER_TAG_LENGTH]


def remote_name(namespace: str, name: str, uid: str, cluster_id: str) -> str:
    """`<namespace>-<name>-<cluster tag>-<uid>`: deterministic, so a lost create can be found
    by name, and recognisable as this cluster's (`parse_remote_name`) in a shared account.

    The full uid makes it unique per GpuPod object (a re-created CR with the same name gets a
    new one); the `<namespace>-<name>` part is cut so the whole fits the API's 255 characters.
    """
    suffix = f"-{cluster_tag(cluster_id)}-{uid.replace('-', '').lower()}"
    return f"{namespace}-{name}"[: REMOTE_NAME_MAX - len(suffix)] + suffix


@dataclass(frozen=True)
class RemoteIdentity:
    """What one of our remote names says: the cluster (its tag) and the GpuPod's UID."""

    cluster_tag: str
    uid: str  # in the API server's form, 8-4-4-4-12


def parse_remote_name(name: str | None) -> RemoteIdentity | None:
    """The identity in a remote name made by `remote_name`; None for any other name (pods of
    the console, and those named in the older `<namespace>-<name>-<uid8>` form)."""
    match = _OURS.match(name or "")
    if match is None:
        return None
    h = match["uid"]
    return RemoteIdentity(match["tag"], f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")


def build_create_request(
    spec: GpuPodSpec, name: str, secret_values: dict[tuple[str, str], str]
) -> CreatePodRequest:
    """Map the spec to the POST /v2/pods body. `secret_values` maps (secret, key) -> value;
    an optional reference whose Secret or key is missing is simply left out."""
    env: list[dict[str, str]] = []
    for entry in spec.env:
        if entry.valueFrom is None:
            env.append({"key": entry.name, "value": entry.value or ""})
            continue
        ref = entry.valueFrom.secretKeyRef
        value = secret_values.get((ref.name, ref.key))
        if value is not None:
            env.append({"key": entry.name, "value": value})
    body: dict[str, Any] = {
        k: v
        for k, v in spec.create_fields().items()
        if k not in {"env", "expose", "regions"} | NOT_SENT_FIELDS
    }
    body["name"] = name
    if spec.regions:
        body["regions"] = sorted(spec.regions)
    if spec.expose:
        body["expose"] = [{"port": e.port, "protocol": e.protocol} for e in spec.expose]
    if env:
        body["environmentVars"] = env
    return CreatePodRequest.model_validate(body)
