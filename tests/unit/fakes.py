"""Fakes of the operator's two outside worlds for unit tests: the Yotta pods API (what
`provider.yotta.PodsApi` needs) and the Kubernetes API (what `controller.kube.KubeApi` offers
the status writer), both keeping the rules that matter: IDs, statuses, resourceVersions."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

from gpupod_operator.controller.kube import Conflict, Gone, ObjectRef
from gpupod_operator.yotta import CreatePodRequest, NotFound, Pod, Transient


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


def remote(pod_id: str, name: str, status: str = "RUNNING", **extra: Any) -> dict[str, Any]:
    return {
        "id": pod_id,
        "name": name,
        "status": status,
        "singleCardPrice": "0.5",
        "gpuType": "NVIDIA_RTX_4090_24G",
        "gpuCount": 2,
        "region": "us-east-1",
        **extra,
    }


class FakeYotta:
    """Pods by ID; `calls` logs every request; `down` makes every call a transient error."""

    def __init__(self, log: list[str] | None = None) -> None:
        self.pods: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = [] if log is None else log
        self.down = False

    def _check(self, what: str) -> None:
        self.calls.append(what)
        if self.down:
            raise Transient("connection refused", operation=what.split()[0])

    async def list_pods(self) -> list[Pod]:
        self._check("list")
        return [Pod.model_validate(p) for p in self.pods.values()]

    async def get_pod(self, pod_id: str) -> Pod:
        self._check(f"get {pod_id}")
        if pod_id not in self.pods:
            raise NotFound("Pod not found", code=13000, operation="get")
        return Pod.model_validate(self.pods[pod_id])

    async def create_pod(self, req: CreatePodRequest) -> Pod:
        self._check(f"create {req.name}")
        pod_id = str(len(self.pods) + 1)
        self.pods[pod_id] = remote(pod_id, req.name, "INITIALIZE")
        return Pod.model_validate(self.pods[pod_id])

    async def _set(self, what: str, pod_id: str, status: str) -> None:
        self._check(f"{what} {pod_id}")
        if pod_id not in self.pods:
            raise NotFound("Pod not found", code=13000, operation=what)
        self.pods[pod_id]["status"] = status

    async def pause_pod(self, pod_id: str) -> None:
        await self._set("pause", pod_id, "PAUSING")

    async def resume_pod(self, pod_id: str) -> None:
        await self._set("resume", pod_id, "INITIALIZE")

    async def delete_pod(self, pod_id: str) -> None:
        await self._set("delete", pod_id, "TERMINATED")

    async def aclose(self) -> None:
        pass


def gpupod(name: str, status: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "ns",
            "name": name,
            "uid": f"uid-{name}",
            "resourceVersion": "1",
            "generation": 1,
        },
        "spec": {"image": "img", "gpuType": "NVIDIA_RTX_4090_24G", "gpuCount": 2, **spec},
        "status": status,
    }


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, as the API server applies `application/merge-patch+json`."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


class FakeKube:
    """GpuPods by name with resourceVersions; a status patch is a JSON merge patch that must
    carry the stored resourceVersion (else Conflict), as on the real API server."""

    def __init__(self, log: list[str] | None = None) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.log: list[str] = [] if log is None else log
        self.fail_next: Exception | None = None
        self.secrets: dict[str, dict[str, str]] = {}
        self._rv = 1

    def add(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.objects[obj["metadata"]["name"]] = obj
        return obj

    def bump(self, name: str, **status: Any) -> None:
        """Someone else writes the status (e.g. the other writer)."""
        obj = self.objects[name]
        obj["status"] = {**(obj.get("status") or {}), **status}
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)

    async def get(self, ref: ObjectRef) -> dict[str, Any]:
        self.log.append(f"kube get {ref.name}")
        if ref.name not in self.objects:
            raise Gone(404, "not found")
        return _copy(self.objects[ref.name])

    async def patch_status(self, ref: ObjectRef, status: dict[str, Any]) -> dict[str, Any]:
        self.log.append(f"kube patch {ref.name} {sorted(status)}")
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error
        obj = self.objects.get(ref.name)
        if obj is None:
            raise Gone(404, "not found")
        if ref.resource_version and ref.resource_version != obj["metadata"]["resourceVersion"]:
            raise Conflict(409, "the object has been modified")
        obj["status"] = merge_patch(obj.get("status") or {}, status)
        self.bump(ref.name)
        self.patches.append((ref.name, status))
        return _copy(obj)

    async def get_secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        return self.secrets.get(name)


def _copy(obj: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(obj)


class Posted:
    """Events as posted: (name, type, reason, message)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str, str]] = []

    async def __call__(self, ref: ObjectRef, type_: str, reason: str, message: str) -> None:
        self.seen.append((ref.name, type_, reason, message))

    def reasons(self, name: str | None = None) -> list[str]:
        return [r for n, _, r, _ in self.seen if name is None or n == name]
