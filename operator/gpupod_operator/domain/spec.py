"""The GpuPod spec: parsing, the create request it maps to, its hash and the remote pod name."""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from operator import itemgetter
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from gpupod_operator import api_limits as limits
from gpupod_operator.yotta import CreatePodRequest

# Fields that only steer the operator; every other spec field is sent to POST /v2/pods and
# cannot change on a live remote pod (the API has no update).
OPERATOR_FIELDS = frozenset({"paused", "deletionPolicy", "updatePolicy"})
REMOTE_NAME_MAX = 255


class DeletionPolicy(StrEnum):
    DELETE = "Delete"
    ORPHAN = "Orphan"


class UpdatePolicy(StrEnum):
    REJECT = "Reject"
    RECREATE = "Recreate"


def _known_protocol(value: str) -> str:
    # Any case, as the API (api_limits.EXPOSE_PROTOCOLS); kept as written, since it is sent so.
    if value.upper() not in limits.EXPOSE_PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(limits.EXPOSE_PROTOCOLS)}")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class SecretKeyRef(_Model):
    name: str
    key: str
    optional: bool = False


class EnvSource(_Model):
    secretKeyRef: SecretKeyRef


class EnvEntry(_Model):
    name: str
    value: str | None = None
    valueFrom: EnvSource | None = None


class ExposeEntry(_Model):
    port: int
    protocol: Annotated[str, AfterValidator(_known_protocol)] = "HTTP"


class PersistentVolume(_Model):
    volumeId: int
    mountPath: str
    needBackup: bool | None = None


class GpuPodSpec(_Model):
    """The spec as the API server stores it (schema defaults already applied)."""

    image: str
    imageRegistry: str | None = None
    imagePublicType: str | None = None
    containerRegistryAuthId: int | None = None
    resourceType: str = "GPU"
    gpuType: str | None = None
    gpuCount: int = 1
    regions: list[str] = Field(default_factory=list)
    minSingleCardVramInGb: int | None = None
    minSingleCardRamInGb: int | None = None
    minSingleCardVcpu: int | None = None
    shmInGb: int | None = None
    containerVolumeInGb: int | None = None
    persistentVolumeInGb: int | None = None
    persistentMountPath: str | None = None
    initializationCommand: str | None = None
    expose: list[ExposeEntry] = Field(default_factory=list)
    persistentVolumes: list[PersistentVolume] = Field(default_factory=list)
    env: list[EnvEntry] = Field(default_factory=list)
    paused: bool = False
    deletionPolicy: DeletionPolicy = DeletionPolicy.DELETE
    updatePolicy: UpdatePolicy = UpdatePolicy.REJECT

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


def remote_name(namespace: str, name: str, uid: str) -> str:
    """`<namespace>-<name>-<uid prefix>`: deterministic, so a lost create can be found by name.

    The uid part makes it unique per GpuPod object (a re-created CR with the same name gets a
    new one); the name part is cut so the whole fits the API's 255 characters.
    """
    suffix = "-" + uid.replace("-", "")[:8]
    return f"{namespace}-{name}"[: REMOTE_NAME_MAX - len(suffix)] + suffix


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
        k: v for k, v in spec.create_fields().items() if k not in {"env", "expose", "regions"}
    }
    body["name"] = name
    if spec.regions:
        body["regions"] = sorted(spec.regions)
    if spec.expose:
        body["expose"] = [{"port": e.port, "protocol": e.protocol} for e in spec.expose]
    if env:
        body["environmentVars"] = env
    return CreatePodRequest.model_validate(body)
