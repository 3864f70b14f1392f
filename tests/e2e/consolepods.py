"""Helpers for the orphan and adoption tests: pods made "in the console" (straight through the
simulator's API with its key), the examples with a pod ID filled in, and metric scrapes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import yaml

from gpupod_operator.devenv.simulator_process import SimulatorProcess

from .gpupods import wait_for

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def console_pod(sim: SimulatorProcess, name: str, gpu_count: int = 1) -> str:
    """POST /v2/pods as a person in the Yotta console would; waits until it is RUNNING."""
    response = httpx.post(
        f"{sim.url}/v2/pods",
        headers={"X-Api-Key": sim.api_key},
        json={
            "name": name,
            "image": "jupyter/base-notebook:latest",
            "gpuType": "NVIDIA_RTX_4090_24G",
            "gpuCount": gpu_count,
        },
        timeout=10.0,
    )
    response.raise_for_status()
    data = response.json()["data"]
    pod_id = str(data["id"] if isinstance(data, dict) else data)
    wait_for(lambda: remote_status(sim, pod_id) == "RUNNING", 30, f"console pod {pod_id} RUNNING")
    return pod_id


def console_delete(sim: SimulatorProcess, pod_id: str) -> None:
    """DELETE /v2/pods/{id}, as a person in the Yotta console would."""
    response = httpx.delete(
        f"{sim.url}/v2/pods/{pod_id}", headers={"X-Api-Key": sim.api_key}, timeout=10.0
    )
    response.raise_for_status()


def remote(sim: SimulatorProcess, pod_id: str) -> dict[str, Any]:
    return next(p for p in sim.pods() if str(p["id"]) == pod_id)


def remote_status(sim: SimulatorProcess, pod_id: str) -> str:
    return str(remote(sim, pod_id)["status"])


def creates(sim: SimulatorProcess) -> int:
    return sum(sim.stats()["requests"].get("create", {}).values())


def example(name: str, **adopt: str) -> str:
    """The example manifest as JSON, its spec.adopt fields replaced by `adopt`."""
    obj = yaml.safe_load((EXAMPLES / name).read_text())
    obj["spec"]["adopt"].update(adopt)
    return json.dumps(obj)
