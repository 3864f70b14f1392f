"""The simulator's in-memory model: pods, registry credentials, volumes.

Pure and synchronous: no HTTP, no tasks, no sleeps. A pod's status is computed lazily from
timestamps: each pod holds one "segment" (a status that, after `duration` seconds, settles
into `then`), so thousands of pods cost nothing while idle and zero durations are instant.

Choices where the sources are silent or disagree (reference §4, §6, open questions 7, 8):
- create answers INITIALIZE (RUNNING at once when provision_seconds is 0).
- resume passes through INITIALIZE, taking resume_seconds, then RUNNING.
- delete of a TERMINATING or TERMINATED pod succeeds and changes nothing: the operator's
  delete must be idempotent and a repeated delete costs nothing on a real cloud either.
- TERMINATED pods stay visible in get and list for retention_seconds (the console's 24 h
  history), then answer 13000. FAILED pods stay until deleted.
- pods do not need unique names (the sources never say they do).
- capacity counts GPUs held by INITIALIZE/RUNNING/PAUSING pods: pause and delete release
  them at once. A create or resume that does not fit ends FAILED after its provisioning
  time with failureReason "insufficient resources ..." (as the console describes FAILED),
  rather than being refused: a real scheduler only finds out later, too.
- a FAILED pod can only be deleted (pause and resume answer 12001).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from gpupod_operator.simulator import catalog
from gpupod_operator.simulator.config import SimulatorConfig
from gpupod_operator.simulator.errors import (
    INVALID_STATE,
    POD_NOT_FOUND,
    RECORD_NOT_FOUND,
    SimError,
    invalid,
)
from gpupod_operator.simulator.statuses import SimStatus
from gpupod_operator.simulator.validation import CreateSpec

S = SimStatus
# Snowflake-like ids well above 2**53, so a client that parses them as floats breaks.
_ID_BASE = 362_740_422_811_062_272
_ID_STRIDE = 4099
_HOLDING = frozenset({S.INITIALIZE, S.RUNNING, S.PAUSING})
CREDENTIAL_TYPES = ("DOCKER_HUB", "GCR", "ECR", "ACR", "PRIVATE")
STORAGE_TYPES = ("S3", "CEPH", "VENDOR", "R2")


@dataclass(slots=True)
class PodRecord:
    id: int
    spec: CreateSpec
    region: str
    created: float
    #: The current segment: `status` from `since`, becoming `then` after `duration`.
    status: SimStatus
    since: float
    duration: float
    then: SimStatus
    #: Why the pod ends FAILED when `then` is FAILED (or it was forced FAILED).
    failure_reason: str | None = None
    #: Whether the pod's GPUs count against the capacity.
    holds: bool = False
    #: Which API key's account owns the pod (the index of `--api-key`, 0 without keys).
    account: int = 0
    #: The pod's last JSON rendering and what it depended on (`render.encode_pod`).
    encoded: tuple[Any, bytes] | None = None

    def status_at(self, now: float) -> SimStatus:
        return self.then if now >= self.since + self.duration else self.status

    def settled_at(self) -> float:
        return self.since + self.duration

    def updated_at(self, now: float) -> float:
        return self.settled_at() if now >= self.settled_at() else self.since


@dataclass(slots=True)
class Credential:
    id: int
    name: str
    type: str
    username: str
    password: str = field(repr=False)
    created: float = 0.0


@dataclass(slots=True)
class Volume:
    id: int
    name: str
    storage_type: str
    region: str | None
    size_gb: int | None
    vendor_type: str | None
    created: float


class Store:
    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.clock = config.clock
        self.pods: dict[int, PodRecord] = {}
        self.credentials: dict[int, Credential] = {}
        self.volumes: dict[int, Volume] = {}
        self.held_gpus = 0
        self._seq = 0
        self._aux_seq = 1000
        self.reseed()

    def reseed(self) -> None:
        seed = self.config.seed
        self._ids = random.Random(None if seed is None else f"{seed}:ids")
        self._provisioning = random.Random(None if seed is None else f"{seed}:provisioning")

    def reset_pods(self) -> None:
        # Keep the id sequence: a stale id from before the reset must not name a new pod.
        self.pods.clear()
        self.held_gpus = 0
        self.reseed()

    # --- pods ---------------------------------------------------------------------------

    def _hold(self, pod: PodRecord, holds: bool) -> None:
        if holds != pod.holds:
            self.held_gpus += pod.spec.gpu_count if holds else -pod.spec.gpu_count
            pod.holds = holds

    def _place(self, spec: CreateSpec) -> tuple[str, str | None]:
        """Region for a new pod, and a failure reason if it cannot be scheduled there."""
        if spec.gpu_type is None:
            return (spec.regions[0] if spec.regions else catalog.DEFAULT_REGION), None
        gpu = catalog.GPUS[spec.gpu_type]
        wanted = spec.regions or list(gpu.regions)
        offered = [r for r in wanted if r in gpu.regions]
        available = [r for r in offered if r not in gpu.sold_out]
        if available:
            return available[0], None
        return offered[0], f"insufficient resources: {spec.gpu_type} is sold out in {offered}"

    def _doom(self, gpus: int) -> str | None:
        """Why a pod asking for `gpus` more GPUs fails now, if it does."""
        cap = self.config.capacity
        if cap is not None and self.held_gpus + gpus > cap:
            return f"insufficient resources: no capacity for {gpus} more GPU(s) (capacity {cap})"
        if self._provisioning.random() < self.config.fail_rate:
            return "simulated provisioning failure (fail-rate)"
        return None

    def _start(self, pod: PodRecord, now: float, seconds: float) -> None:
        """Begin provisioning (create or resume): INITIALIZE, then RUNNING or FAILED."""
        reason = pod.failure_reason or self._doom(pod.spec.gpu_count)
        pod.status, pod.since, pod.duration = S.INITIALIZE, now, seconds
        pod.then = S.FAILED if reason else S.RUNNING
        pod.failure_reason = reason
        self._hold(pod, reason is None)

    def create_pod(self, spec: CreateSpec, account: int = 0) -> PodRecord:
        now = self.clock()
        self._seq += 1
        pod_id = _ID_BASE + self._seq * _ID_STRIDE + self._ids.randrange(_ID_STRIDE)
        region, reason = self._place(spec)
        pod = PodRecord(pod_id, spec, region, now, S.INITIALIZE, now, 0.0, S.INITIALIZE, reason)
        pod.account = account
        self._start(pod, now, self.config.provision_seconds)
        self.pods[pod_id] = pod
        return pod

    def _expired(self, pod: PodRecord, now: float) -> bool:
        return (
            pod.status_at(now) is S.TERMINATED
            and now >= pod.settled_at() + self.config.retention_seconds
        )

    def get_pod(self, pod_id: int, account: int | None = None) -> PodRecord:
        """The pod by ID; a pod of another account (`account` None: any) is "not found", as
        a real API answers a key that does not own the pod."""
        pod = self.pods.get(pod_id)
        if pod is not None and self._expired(pod, self.clock()):
            del self.pods[pod_id]
            pod = None
        if pod is None or (account is not None and pod.account != account):
            raise SimError(POD_NOT_FOUND, "Pod not found")
        return pod

    def iter_pods(self) -> Iterator[PodRecord]:
        """Every visible pod, newest first; drops pods past their retention on the way."""
        now = self.clock()
        expired = [pid for pid, pod in self.pods.items() if self._expired(pod, now)]
        for pod_id in expired:
            del self.pods[pod_id]
        return reversed(list(self.pods.values()))

    def list_pods(
        self,
        regions: set[str] | None,
        statuses: set[SimStatus] | None,
        account: int | None = None,
    ) -> list[PodRecord]:
        now = self.clock()
        return [
            pod
            for pod in self.iter_pods()
            if (account is None or pod.account == account)
            and (not regions or pod.region in regions)
            and (not statuses or pod.status_at(now) in statuses)
        ]

    def delete_pod(self, pod_id: int, account: int | None = None) -> PodRecord:
        pod = self.get_pod(pod_id, account)
        now = self.clock()
        if pod.status_at(now) in (S.TERMINATING, S.TERMINATED):
            return pod
        pod.status, pod.since, pod.then = S.TERMINATING, now, S.TERMINATED
        pod.duration = self.config.terminate_seconds
        self._hold(pod, False)
        return pod

    def pause_pod(self, pod_id: int, account: int | None = None) -> PodRecord:
        pod = self.get_pod(pod_id, account)
        now = self.clock()
        current = pod.status_at(now)
        if current is not S.RUNNING:
            raise SimError(INVALID_STATE, f"Resource status invalid: cannot pause a {current} pod")
        pod.status, pod.since, pod.then = S.PAUSING, now, S.PAUSED
        pod.duration = self.config.pause_seconds
        # Compute is released when the pause is accepted, so capacity frees up at once.
        self._hold(pod, False)
        return pod

    def resume_pod(self, pod_id: int, account: int | None = None) -> PodRecord:
        pod = self.get_pod(pod_id, account)
        now = self.clock()
        current = pod.status_at(now)
        if current is not S.PAUSED:
            raise SimError(INVALID_STATE, f"Resource status invalid: cannot resume a {current} pod")
        pod.failure_reason = None
        self._start(pod, now, self.config.effective_resume_seconds)
        return pod

    def force_status(self, pod_id: int, status: SimStatus) -> PodRecord:
        """Admin: pin a status (drift tests). It stays until the next action."""
        pod = self.pods.get(pod_id)
        if pod is None:
            raise SimError(POD_NOT_FOUND, "Pod not found", http_status=404)
        now = self.clock()
        pod.status = pod.then = status
        pod.since, pod.duration = now, 0.0
        pod.failure_reason = "forced by /_sim" if status is S.FAILED else None
        self._hold(pod, status in _HOLDING)
        return pod

    def vanish(self, pod_id: int) -> None:
        """Admin: the pod disappears without a trace (out-of-band deletion)."""
        pod = self.pods.pop(pod_id, None)
        if pod is None:
            raise SimError(POD_NOT_FOUND, "Pod not found", http_status=404)
        self._hold(pod, False)

    def pod_counts(self) -> dict[str, Any]:
        now = self.clock()
        by_status: dict[str, int] = {}
        total = 0
        for pod in self.iter_pods():
            status = pod.status_at(now)
            by_status[status.value] = by_status.get(status.value, 0) + 1
            total += 1
        live = total - by_status.get(S.TERMINATED.value, 0)
        return {"live": live, "total": total, "byStatus": by_status, "heldGpus": self.held_gpus}

    def _in_use(self, *, credential: int | None = None, volume: int | None = None) -> int:
        now = self.clock()
        count = 0
        for pod in self.pods.values():
            if pod.status_at(now) is S.TERMINATED:
                continue
            if (
                credential is not None
                and pod.spec.echo.get("containerRegistryAuthId") == credential
            ):
                count += 1
            if volume is not None and any(v["volumeId"] == volume for v in pod.spec.volumes):
                count += 1
        return count

    # --- registry credentials -------------------------------------------------------------

    def _next_aux_id(self) -> int:
        self._aux_seq += 1
        return self._aux_seq

    def create_credential(self, body: Any) -> Credential:
        if not isinstance(body, dict):
            raise invalid("request body must be a JSON object")
        for key in ("name", "type", "username", "password"):
            if not isinstance(body.get(key), str) or not body[key].strip():
                raise invalid(f"{key} is required")
        if body["type"] not in CREDENTIAL_TYPES:
            raise invalid(f"type must be one of {', '.join(CREDENTIAL_TYPES)}")
        cred = Credential(
            self._next_aux_id(),
            body["name"],
            body["type"],
            body["username"],
            body["password"],
            self.clock(),
        )
        self.credentials[cred.id] = cred
        return cred

    def get_credential(self, cred_id: int) -> Credential:
        cred = self.credentials.get(cred_id)
        if cred is None:
            raise SimError(RECORD_NOT_FOUND, "Record not exist")
        return cred

    def delete_credential(self, cred_id: int) -> None:
        self.get_credential(cred_id)
        if self._in_use(credential=cred_id):
            raise SimError(INVALID_STATE, "Resource status invalid: credential is in use")
        del self.credentials[cred_id]

    # --- volumes --------------------------------------------------------------------------

    def create_volume(self, body: Any) -> Volume:
        if not isinstance(body, dict):
            raise invalid("request body must be a JSON object")
        name, storage = body.get("name"), body.get("storageType")
        region, size, vendor = (
            body.get("region"),
            body.get("sizeInGb"),
            body.get("vendorVolumeType"),
        )
        if not isinstance(name, str) or not name.strip():
            raise invalid("name is required")
        if storage not in STORAGE_TYPES:
            raise invalid(f"storageType must be one of {', '.join(STORAGE_TYPES)}")
        if storage in ("CEPH", "VENDOR", "R2") and region is None:
            raise invalid(f"region is required for {storage} volumes")
        if region is not None and region not in catalog.REGIONS:
            raise invalid(f"region: unknown region {region!r}")
        if storage in ("CEPH", "VENDOR") and size is None:
            raise invalid(f"sizeInGb is required for {storage} volumes")
        if size is not None and (
            not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 10240
        ):
            raise invalid("sizeInGb must be an integer between 1 and 10240")
        if storage == "VENDOR" and vendor not in ("NVMe", "HDD"):
            raise invalid("vendorVolumeType must be NVMe or HDD for VENDOR volumes")
        volume = Volume(self._next_aux_id(), name, storage, region, size, vendor, self.clock())
        self.volumes[volume.id] = volume
        return volume

    def get_volume(self, volume_id: int) -> Volume:
        volume = self.volumes.get(volume_id)
        if volume is None:
            raise SimError(RECORD_NOT_FOUND, "Record not exist")
        return volume

    def mount_count(self, volume_id: int) -> int:
        return self._in_use(volume=volume_id)

    def delete_volume(self, volume_id: int) -> None:
        self.get_volume(volume_id)
        if self.mount_count(volume_id):
            raise SimError(INVALID_STATE, "Resource status invalid: volume is mounted")
        del self.volumes[volume_id]
