"""Helpers for end-to-end tests: GpuPod manifests, reads and condition waits."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

from gpupod_operator.devenv.controlplane import ApiError, ControlPlane

T = TypeVar("T")
API = "/apis/gpupod.dev/v1alpha1"


def wait_for(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.2) -> T:
    """Poll `check` until it returns something truthy; fail with `what` and the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def manifest(name: str, **spec: Any) -> dict[str, Any]:
    spec.setdefault("image", "nvidia/cuda:12.4.1-base-ubuntu22.04")
    spec.setdefault("gpuType", "NVIDIA_RTX_4090_24G")
    return {
        "apiVersion": "gpupod.dev/v1alpha1",
        "kind": "GpuPod",
        "metadata": {"name": name},
        "spec": spec,
    }


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    """The condition `type_` of a GpuPod object, or {}."""
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return {}


def phase(obj: dict[str, Any] | None) -> str | None:
    value = ((obj or {}).get("status") or {}).get("phase")
    return str(value) if value is not None else None


class GpuPods:
    """GpuPods of one namespace, as a tenant would handle them: writes through kubectl (what a
    tenant types), reads and creates through the API."""

    def __init__(self, cp: ControlPlane, namespace: str) -> None:
        self.cp, self.ns = cp, namespace
        self.path = f"{API}/namespaces/{namespace}/gpupods"

    def apply(self, obj: dict[str, Any]) -> None:
        self.cp.kubectl("apply", "-n", self.ns, "-f", "-", input=json.dumps(obj))

    def create(self, name: str, **spec: Any) -> dict[str, Any]:
        return self.cp.request("POST", self.path, manifest(name, **spec))

    def get(self, name: str) -> dict[str, Any] | None:
        try:
            return self.cp.request("GET", f"{self.path}/{name}")
        except ApiError as e:
            if e.status == 404:
                return None
            raise

    def all(self) -> dict[str, dict[str, Any]]:
        items = self.cp.request("GET", self.path)["items"]
        return {item["metadata"]["name"]: item for item in items}

    def create_secret(self, name: str, data: dict[str, str]) -> None:
        self.cp.request(
            "POST",
            f"/api/v1/namespaces/{self.ns}/secrets",
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data},
        )

    def status(self, name: str) -> dict[str, Any]:
        obj = self.get(name)
        return (obj or {}).get("status") or {}

    def patch_spec(self, name: str, **spec: Any) -> None:
        self.cp.kubectl(
            "patch",
            "gpupod",
            name,
            "-n",
            self.ns,
            "--type",
            "merge",
            "-p",
            json.dumps({"spec": spec}),
        )

    def delete(self, name: str, wait: bool = False) -> None:
        self.cp.kubectl("delete", "gpupod", name, "-n", self.ns, f"--wait={str(wait).lower()}")

    def wait_phase(self, name: str, phase: str, timeout: float = 60) -> dict[str, Any]:
        return wait_for(
            lambda: (s := self.status(name)).get("phase") == phase and s,
            timeout,
            f"GpuPod {self.ns}/{name} phase {phase}",
        )

    def wait_gone(self, name: str, timeout: float = 60) -> None:
        wait_for(lambda: self.get(name) is None, timeout, f"GpuPod {self.ns}/{name} to be gone")

    def condition(self, name: str, type_: str) -> dict[str, Any]:
        return condition(self.get(name), type_)

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        items = self.cp.request("GET", f"/api/v1/namespaces/{self.ns}/events")["items"]
        return [e for e in items if name is None or e["involvedObject"]["name"] == name]

    def event_reasons(self, name: str) -> list[str]:
        return [e["reason"] for e in self.events(name)]


def is_live(pod: dict[str, Any]) -> bool:
    """Still exists at the provider (TERMINATING pods still count: not confirmed gone)."""
    return pod.get("status") != "TERMINATED"


def live_pods(pods: list[dict[str, Any]], name_prefix: str = "") -> list[dict[str, Any]]:
    """Remote pods that still exist (and bill) in the simulator's own shape."""
    return [p for p in pods if is_live(p) and str(p.get("name", "")).startswith(name_prefix)]
