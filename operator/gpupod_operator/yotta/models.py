"""Pydantic models of the Yotta Pods API v2 wire format.

Attribute names are the API's camelCase on purpose: the models *are* the wire format.
Response models are lenient (unknown fields ignored, odd types coerced or dropped to None)
because the sources disagree on several types (reference §2.1, §2.3); request models are
strict so a typo in the mapping code fails loudly instead of being silently dropped.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_serializer,
    field_validator,
    model_validator,
)

SUCCESS_CODE = 10000


class PodStatus(StrEnum):
    """Backend status names (what v2 most likely returns, reference §4.1)."""

    INITIALIZE = "INITIALIZE"
    RUNNING = "RUNNING"
    PAUSING = "PAUSING"
    PAUSED = "PAUSED"
    TERMINATING = "TERMINATING"
    TERMINATED = "TERMINATED"
    FAILED = "FAILED"
    UNKNOWN = "UNKNOWN"

    @classmethod
    def parse(cls, value: str | int | None) -> PodStatus:
        """Tolerant parser: ints 0-6, backend names, the guide's and the console's labels."""
        if value is None or isinstance(value, bool):
            return cls.UNKNOWN
        if isinstance(value, int):
            return _BY_CODE.get(value, cls.UNKNOWN)
        text = str(value).strip()
        if text.isdigit():
            return _BY_CODE.get(int(text), cls.UNKNOWN)
        return _BY_NAME.get(re.sub(r"[\s_-]+", "", text).upper(), cls.UNKNOWN)

    @property
    def code(self) -> int | None:
        """The backend integer (used by `statusList`); None for UNKNOWN."""
        return _CODES.get(self)

    @property
    def is_terminal(self) -> bool:
        return self in (PodStatus.TERMINATED, PodStatus.FAILED)


_CODES: dict[PodStatus, int] = {
    PodStatus.INITIALIZE: 0,
    PodStatus.RUNNING: 1,
    PodStatus.PAUSING: 2,
    PodStatus.PAUSED: 3,
    PodStatus.TERMINATING: 4,
    PodStatus.TERMINATED: 5,
    PodStatus.FAILED: 6,
}
_BY_CODE = {code: status for status, code in _CODES.items()}
# Keys are upper-cased with separators removed, so "Initializing", "in-itialize" etc. match.
_BY_NAME: dict[str, PodStatus] = {
    **{s.value: s for s in _CODES},
    "INITIALIZING": PodStatus.INITIALIZE,  # v2 guide / SDK enum
    "STOPPED": PodStatus.PAUSED,  # v2 guide, console label
    "STOPPING": PodStatus.PAUSING,  # console label
    "STARTING": PodStatus.INITIALIZE,
    "RESUMING": PodStatus.INITIALIZE,
    "PENDING": PodStatus.INITIALIZE,
    "CREATING": PodStatus.INITIALIZE,
    "DELETING": PodStatus.TERMINATING,
    "DELETED": PodStatus.TERMINATED,
    "ERROR": PodStatus.FAILED,
}


# --- lenient coercions for response fields ------------------------------------------------


def _to_id(value: Any) -> Any:
    # IDs exceed 2**53: accept exact ints and digit strings, never floats (already rounded).
    if isinstance(value, bool):
        raise ValueError("id must be an integer or a string")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise ValueError("id must be an integer or a non-empty string")


def _to_int_or_none(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"-?\d+", text):
            return int(text)
        try:
            return int(float(text))
        except ValueError:
            return None
    return None


def _to_epoch_ms(value: Any) -> int | None:
    # v2 documents epoch ms; an older MCP type had a string, so ISO-8601 is accepted too.
    if isinstance(value, str) and not re.fullmatch(r"\s*-?\d+(\.\d+)?\s*", value):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            return int(parsed.timestamp() * 1000)
        except ValueError:
            return None
    return _to_int_or_none(value)


def _to_decimal_or_none(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int | float | str):
        try:
            # str() of a float gives the shortest repr ("0.65"), not the binary expansion.
            result = Decimal(str(value).strip())
        except InvalidOperation:
            return None
        return result if result.is_finite() else None
    return None


def _to_str_or_none(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _to_bool_or_none(value: Any) -> bool | None:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if isinstance(value, int):
        return bool(value)
    return None


def _to_list(value: Any) -> Any:
    return [] if value is None else value


def _items_with(key: str) -> BeforeValidator:
    """Drop list items that lack `key`: one odd entry must not make a whole pod unreadable."""

    def keep(value: Any) -> Any:
        if value is None:
            return []
        if not isinstance(value, list):
            return value
        return [v for v in value if isinstance(v, dict) and v.get(key) is not None]

    return BeforeValidator(keep)


LenientInt = Annotated[int | None, BeforeValidator(_to_int_or_none)]
LenientDecimal = Annotated[Decimal | None, BeforeValidator(_to_decimal_or_none)]
LenientStr = Annotated[str | None, BeforeValidator(_to_str_or_none)]
LenientBool = Annotated[bool | None, BeforeValidator(_to_bool_or_none)]
EpochMs = Annotated[int | None, BeforeValidator(_to_epoch_ms)]


# --- shared pieces ------------------------------------------------------------------------


class EnvVar(BaseModel):
    """An environment variable. The value is a secret: it is masked everywhere except
    in the request body built by `CreatePodRequest`."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    key: str
    value: SecretStr

    @field_validator("value", mode="before")
    @classmethod
    def _stringify(cls, value: Any) -> Any:
        # The API may echo numbers or null; keep them secret all the same.
        if value is None:
            return ""
        if isinstance(value, int | float | bool):
            return str(value)
        return value


class ExposePortRequest(BaseModel):
    """A port to expose, as sent in the create body."""

    model_config = ConfigDict(extra="forbid")

    port: int
    protocol: str | None = None


class ExposePort(BaseModel):
    """An exposed port as returned by the API; the public endpoint appears once RUNNING."""

    model_config = ConfigDict(extra="ignore")

    port: int
    protocol: LenientStr = None
    host: LenientStr = None
    proxyPort: LenientInt = None
    healthy: LenientBool = None
    ingressUrl: LenientStr = None
    serviceName: LenientStr = None


class PersistentVolumeRef(BaseModel):
    """A reference to an existing v2 volume mounted into the pod."""

    model_config = ConfigDict(extra="ignore")

    volumeId: int
    mountPath: str
    needBackup: bool | None = None


# --- requests -------------------------------------------------------------------------------


class CreatePodRequest(BaseModel):
    """Body of `POST /v2/pods` (reference §2.2). Deprecated registry user/password omitted."""

    model_config = ConfigDict(extra="forbid")

    name: str
    image: str
    regions: list[str] | None = None
    imageRegistry: str | None = None
    containerRegistryAuthId: int | None = None
    imagePublicType: str | None = None
    resourceType: str | None = None
    gpuType: str | None = None
    gpuCount: int | None = None
    minSingleCardVramInGb: int | None = None
    minSingleCardRamInGb: int | None = None
    minSingleCardVcpu: int | None = None
    shmInGb: int | None = None
    containerVolumeInGb: int | None = None
    persistentVolumeInGb: int | None = None
    persistentMountPath: str | None = None
    initializationCommand: str | None = None
    environmentVars: list[EnvVar] | None = None
    expose: list[ExposePortRequest] | None = None
    persistentVolumes: list[PersistentVolumeRef] | None = None

    @field_serializer("environmentVars")
    def _reveal_env(self, env: list[EnvVar] | None) -> list[dict[str, str]] | None:
        # The one place where secret values are unwrapped: the wire body.
        if env is None:
            return None
        return [{"key": e.key, "value": e.value.get_secret_value()} for e in env]

    def to_body(self) -> dict[str, Any]:
        """The JSON body for the API, None fields dropped (env values in clear)."""
        return self.model_dump(mode="json", exclude_none=True)

    def secret_values(self) -> list[str]:
        """Env values, so the client can redact them from API error messages."""
        return [e.value.get_secret_value() for e in self.environmentVars or []]


# --- responses ------------------------------------------------------------------------------


# Shared by every kept Pod (Pod.kept); pydantic adds to it only when a field is assigned, and
# nothing assigns fields of a response.
_KEPT_FIELDS_SET: set[str] = set()


class Pod(BaseModel):
    """A pod as returned by create / get / list (reference §2.3), leniently parsed."""

    model_config = ConfigDict(extra="ignore")

    id: Annotated[str, BeforeValidator(_to_id)]
    name: LenientStr = Field(default=None, validation_alias=AliasChoices("name", "podName"))
    status: PodStatus = PodStatus.UNKNOWN
    region: LenientStr = None
    image: LenientStr = None
    imageRegistry: LenientStr = None
    imagePublicType: LenientStr = None
    containerRegistryAuthId: LenientInt = None
    resourceType: LenientStr = None
    cloudType: LenientStr = None
    gpuType: LenientStr = None
    gpuDisplayName: LenientStr = None
    gpuCount: LenientInt = None
    singleCardPrice: LenientDecimal = None
    singleCardVramInGb: LenientDecimal = None
    singleCardRamInGb: LenientDecimal = None
    singleCardVcpu: LenientDecimal = None
    containerVolumeInGb: LenientInt = None
    persistentVolumeInGb: LenientInt = None
    persistentMountPath: LenientStr = None
    shmInGb: LenientInt = None
    sshCmd: LenientStr = None
    internalIp: LenientStr = None
    initializationCommand: LenientStr = None
    createdAt: EpochMs = None
    updatedAt: EpochMs = None
    expose: Annotated[list[ExposePort], _items_with("port")] = Field(default_factory=list)
    environmentVars: Annotated[list[EnvVar], _items_with("key")] = Field(default_factory=list)
    persistentVolumes: Annotated[list[PersistentVolumeRef], _items_with("volumeId")] = Field(
        default_factory=list
    )
    # Not documented by Yotta; the simulator fills it for FAILED pods.
    failureReason: LenientStr = None
    # The provider's own word for the status, kept so an unknown one can be shown as it is.
    statusText: LenientStr = None

    @model_validator(mode="before")
    @classmethod
    def _keep_status_word(cls, data: Any) -> Any:
        if isinstance(data, dict) and "status" in data and "statusText" not in data:
            return {**data, "statusText": data["status"]}
        return data

    @field_validator("status", mode="before")
    @classmethod
    def _parse_status(cls, value: Any) -> PodStatus:
        return PodStatus.parse(value if isinstance(value, str | int) else None)

    def kept(self) -> Pod:
        """This pod as a List snapshot keeps it (provider.Snapshot: one per account, held for
        up to two sync intervals): without the env values the API echoes back (tenants'
        secrets, which nothing reads from a response) and without pydantic's per-instance set
        of the fields the answer carried (nothing reads it either). 5.9 -> 3.0 KiB per pod
        measured; the snapshot holds one per remote pod of the account."""
        return Pod.model_construct(_KEPT_FIELDS_SET, **{**self.__dict__, "environmentVars": []})

    @property
    def price_per_hour(self) -> Decimal | None:
        """singleCardPrice x gpuCount, when both are known."""
        if self.singleCardPrice is None or self.gpuCount is None:
            return None
        return self.singleCardPrice * self.gpuCount


class GpuTypeRegion(BaseModel):
    model_config = ConfigDict(extra="ignore")

    region: str
    regionName: LenientStr = None
    available: bool = False
    vmTypeId: LenientStr = None


class GpuType(BaseModel):
    """An entry of `GET /v2/vms/types`. Display name, VRAM and price are optional extras."""

    model_config = ConfigDict(extra="ignore")

    gpuType: str
    regions: Annotated[list[GpuTypeRegion], BeforeValidator(_to_list)] = Field(default_factory=list)
    gpuDisplayName: LenientStr = None
    singleCardVramInGb: LenientInt = None
    singleCardPrice: LenientDecimal = None


class Envelope(BaseModel):
    """The `{message, code, data}` wrapper of every response."""

    model_config = ConfigDict(extra="ignore")

    message: str = ""
    code: int | None = None
    # repr=False: data may hold echoed env values in clear.
    data: Any = Field(default=None, repr=False)

    @field_validator("message", mode="before")
    @classmethod
    def _message_str(cls, value: Any) -> str:
        return "" if value is None else str(value)

    @field_validator("code", mode="before")
    @classmethod
    def _code_int(cls, value: Any) -> int | None:
        return _to_int_or_none(value)

    @property
    def ok(self) -> bool:
        return self.code == SUCCESS_CODE
