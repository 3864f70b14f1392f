"""Helpers for end-to-end tests: GpuPod manifests, reads and condition waits."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

from gpupod_operator.devenv.controlplane import ControlPlane

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


class GpuPods:
    """GpuPods of one namespace, as a tenant would handle them, through kubectl and the API."""

    def __init__(self, cp: ControlPlane, namespace: str) -> None:
        self.cp, self.ns = cp, namespace

    def apply(self, obj: dict[str, Any]) -> None:
        self.cp.kubectl("apply", "-n", self.ns, "-f", "-", input=json.dumps(obj))

    def create(self, name: str, **spec: Any) -> dict[str, Any]:
        return self.cp.request(
            "POST", f"{API}/namespaces/{self.ns}/gpupods", manifest(name, **spec)
        )

    def get(self, name: str) -> dict[str, Any] | None:
        result = self.cp.kubectl("get", "gpupod", name, "-n", self.ns, "-o", "json", check=False)
        if result.returncode != 0:
            if "NotFound" in result.stderr:
                return None
            raise AssertionError(result.stderr)
        obj: dict[str, Any] = json.loads(result.stdout)
        return obj

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
        for c in self.status(name).get("conditions") or []:
            if c.get("type") == type_:
                return dict(c)
        return {}

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        items = self.cp.request("GET", f"/api/v1/namespaces/{self.ns}/events")["items"]
        return [e for e in items if name is None or e["involvedObject"]["name"] == name]

    def event_reasons(self, name: str) -> list[str]:
        return [e["reason"] for e in self.events(name)]


def live_pods(pods: list[dict[str, Any]], name_prefix: str = "") -> list[dict[str, Any]]:
    """Remote pods that still exist (and bill) in the simulator's own shape."""
    return [
        p
        for p in pods
        if p["status"] not in ("TERMINATED",) and str(p.get("name", "")).startswith(name_prefix)
    ]
