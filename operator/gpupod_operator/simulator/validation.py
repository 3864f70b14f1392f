"""Create-body validation (reference §7), with messages that name the offending field.

The limits (lengths, ranges, enums, list sizes, GPU counts, protocols) are the API limits
table, gpupod_operator.api_limits, which the CRD is generated from too: what the CRD admits,
the simulator admits. The table says which limits are documented and which are ours.

Choices where the sources are silent or disagree:
- types are strict (a JSON string "2" is not an integer, a bool is not a number); Spring's
  Jackson would coerce some of these, but a strict simulator catches client bugs earlier.
- `regions` is a set: duplicates are dropped silently; an empty or absent list means "any".
- a gpuType must be offered in at least one requested region, otherwise 10001.
- imagePublicType and resourceType are case-sensitive enums, as Jackson enums are.
- expose protocols are accepted in any case (the sources show both `http` and `HTTP`) and
  echoed as written; a port may be exposed once; an omitted protocol is TCP.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from gpupod_operator import api_limits as limits
from gpupod_operator.simulator import catalog
from gpupod_operator.simulator.errors import invalid


@dataclass
class CreateSpec:
    """A validated create body, normalised."""

    name: str
    image: str
    resource_type: str
    gpu_type: str | None
    gpu_count: int
    regions: list[str]
    #: Optional scalar fields to echo back as given.
    echo: dict[str, Any] = field(default_factory=dict)
    env: list[dict[str, str]] = field(default_factory=list)
    expose: list[dict[str, Any]] = field(default_factory=list)
    volumes: list[dict[str, Any]] = field(default_factory=list)


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _in_range(value: Any, bounds: limits.Range) -> TypeGuard[int]:
    return (
        _is_int(value)
        and value >= bounds.minimum
        and (bounds.maximum is None or value <= bounds.maximum)
    )


def _between(bounds: limits.Range) -> str:
    return f"between {bounds.minimum} and {bounds.maximum}"


def _text(body: dict[str, Any], name: str, length: limits.Length, *, required: bool) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise invalid(f"{name} is required")
        return None
    if not isinstance(value, str):
        raise invalid(f"{name} must be a string")
    if required and not value.strip():
        raise invalid(f"{name} must not be blank")
    _check_length(name, value, length)
    return value


def _check_length(name: str, value: str, length: limits.Length) -> None:
    if not length.minimum <= len(value) <= length.maximum:
        raise invalid(f"{name} length must be between {length.minimum} and {length.maximum}")


def _list(body: dict[str, Any], name: str) -> list[Any]:
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise invalid(f"{name} must be an array")
    if len(value) > limits.MAX_ITEMS[name]:
        raise invalid(f"{name} must have at most {limits.MAX_ITEMS[name]} items")
    return value


def _regions(body: dict[str, Any]) -> list[str]:
    regions: list[str] = []
    for region in _list(body, "regions"):
        if not isinstance(region, str):
            raise invalid("regions must be an array of strings")
        _check_length("regions[]", region, limits.REGION)
        if region not in catalog.REGIONS:
            raise invalid(f"regions: unknown region {region!r}")
        if region not in regions:
            regions.append(region)
    return regions


def _gpu(body: dict[str, Any], regions: list[str]) -> tuple[str, int]:
    gpu_type = _text(body, "gpuType", limits.STRINGS["gpuType"], required=True)
    assert gpu_type is not None
    spec = catalog.GPUS.get(gpu_type)
    if spec is None:
        raise invalid(f"gpuType {gpu_type!r} is not supported")
    if regions and not set(regions) & set(spec.regions):
        raise invalid(f"gpuType {gpu_type!r} is not offered in regions {regions}")
    count = body.get("gpuCount")
    if count is None:
        raise invalid("gpuCount is required")
    if not _is_int(count):
        raise invalid("gpuCount must be an integer")
    if count < 1 or count & (count - 1):
        raise invalid("gpuCount must be a power of 2")
    if count not in limits.GPU_COUNTS:
        raise invalid(f"gpuCount must be at most {max(limits.GPU_COUNTS)}")
    return gpu_type, count


def _env(body: dict[str, Any]) -> list[dict[str, str]]:
    env = []
    for i, item in enumerate(_list(body, "environmentVars")):
        if not isinstance(item, dict):
            raise invalid(f"environmentVars[{i}] must be an object")
        key, value = item.get("key"), item.get("value")
        if not isinstance(key, str) or not key.strip():
            raise invalid(f"environmentVars[{i}].key is required")
        if not isinstance(value, str):
            raise invalid(f"environmentVars[{i}].value must be a string")
        _check_length(f"environmentVars[{i}].key", key, limits.ENV_KEY)
        _check_length(f"environmentVars[{i}].value", value, limits.ENV_VALUE)
        env.append({"key": key, "value": value})
    return env


def _expose(body: dict[str, Any]) -> list[dict[str, Any]]:
    ports: list[dict[str, Any]] = []
    for i, item in enumerate(_list(body, "expose")):
        if not isinstance(item, dict):
            raise invalid(f"expose[{i}] must be an object")
        port, protocol = item.get("port"), item.get("protocol")
        if not _in_range(port, limits.PORT):
            raise invalid(f"expose[{i}].port must be an integer {_between(limits.PORT)}")
        if protocol is not None and (
            not isinstance(protocol, str) or protocol.upper() not in limits.EXPOSE_PROTOCOLS
        ):
            raise invalid(
                f"expose[{i}].protocol must be one of {', '.join(limits.EXPOSE_PROTOCOLS)}"
                " (any case)"
            )
        if any(p["port"] == port for p in ports):
            raise invalid(f"expose: port {port} is listed twice")
        ports.append({"port": port, "protocol": protocol or "TCP"})
    return ports


def _volumes(body: dict[str, Any], volumes: Container[int]) -> list[dict[str, Any]]:
    refs = []
    for i, item in enumerate(_list(body, "persistentVolumes")):
        if not isinstance(item, dict):
            raise invalid(f"persistentVolumes[{i}] must be an object")
        volume_id, mount, backup = (
            item.get("volumeId"),
            item.get("mountPath"),
            item.get("needBackup"),
        )
        if not _is_int(volume_id):
            raise invalid(f"persistentVolumes[{i}].volumeId must be an integer")
        if volume_id not in volumes:
            raise invalid(f"persistentVolumes[{i}].volumeId {volume_id} does not exist")
        if not isinstance(mount, str) or not mount.startswith("/"):
            raise invalid(f"persistentVolumes[{i}].mountPath must be an absolute path")
        _check_length(f"persistentVolumes[{i}].mountPath", mount, limits.MOUNT_PATH)
        if backup is not None and not isinstance(backup, bool):
            raise invalid(f"persistentVolumes[{i}].needBackup must be a boolean")
        refs.append({"volumeId": volume_id, "mountPath": mount, "needBackup": bool(backup)})
    return refs


def validate_create(
    body: Any, *, credentials: Container[int], volumes: Container[int]
) -> CreateSpec:
    """Check a create body; raise SimError(10001) naming the first bad field."""
    if not isinstance(body, dict):
        raise invalid("request body must be a JSON object")
    name = _text(body, "name", limits.NAME, required=True)
    image = _text(body, "image", limits.STRINGS["image"], required=True)
    assert name is not None and image is not None

    echo: dict[str, Any] = {}
    for key, enum in (
        ("imagePublicType", limits.ImagePublicType),
        ("resourceType", limits.ResourceType),
    ):
        value = body.get(key)
        allowed = [e.value for e in enum]
        if value is not None and value not in allowed:
            raise invalid(f"{key} must be {' or '.join(allowed)}")
    echo["imagePublicType"] = body.get("imagePublicType") or "PUBLIC"
    resource_type = body.get("resourceType") or "GPU"

    regions = _regions(body)
    gpu_type, gpu_count = _gpu(body, regions) if resource_type == "GPU" else (None, 0)

    for key, bounds in limits.INTEGERS.items():
        value = body.get(key)
        if value is None:
            continue
        if not _in_range(value, bounds):
            raise invalid(f"{key} must be an integer {_between(bounds)}")
        echo[key] = value
    for key, length in limits.STRINGS.items():
        if key in ("image", "gpuType"):
            continue  # checked above
        if (value := _text(body, key, length, required=False)) is not None:
            echo[key] = value
    if echo.get("persistentVolumeInGb", 0) > 0:
        mount = echo.get("persistentMountPath")
        if not mount or not mount.strip():
            raise invalid("persistentMountPath is required when persistentVolumeInGb > 0")
    if "persistentMountPath" in echo and not echo["persistentMountPath"].startswith("/"):
        raise invalid("persistentMountPath must be an absolute path")

    auth_id = body.get("containerRegistryAuthId")
    if auth_id is not None:
        if not _is_int(auth_id):
            raise invalid("containerRegistryAuthId must be an integer")
        if auth_id not in credentials:
            raise invalid(f"containerRegistryAuthId {auth_id} does not exist")
        echo["containerRegistryAuthId"] = auth_id
    echo.setdefault("imageRegistry", "https://index.docker.io/v1/")

    return CreateSpec(
        name=name,
        image=image,
        resource_type=resource_type,
        gpu_type=gpu_type,
        gpu_count=gpu_count,
        regions=regions,
        echo=echo,
        env=_env(body),
        expose=_expose(body),
        volumes=_volumes(body, volumes),
    )
