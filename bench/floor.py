"""The floor: only the unavoidable work for N GpuPods, as fast as this machine allows.

Per GpuPod: create the CR, create the remote pod (one HTTP POST to the simulator), patch the
CR's status to Running with the pod's ID. Same concurrency as the operator run's apply, a fresh
namespace, its own simulator (so the operator run's remote counters stay clean).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from gpupod_operator.domain.spec import GpuPodSpec, build_create_request

from .kubeclient import KubeClient, Watcher, gpupod_manifest


async def run_pool(
    items: Sequence[str], concurrency: int, work: Callable[[str], Awaitable[None]]
) -> None:
    """Run work(item) for every item with at most `concurrency` in flight; first error wins."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)

    async def worker() -> None:
        while True:
            try:
                item = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await work(item)

    async with asyncio.TaskGroup() as group:
        for _ in range(max(1, min(concurrency, len(items)))):
            group.create_task(worker())


def remote_body(name: str) -> dict[str, Any]:
    spec = GpuPodSpec.parse(gpupod_manifest(name)["spec"])
    return build_create_request(spec, name, {}).to_body()


@dataclass
class FloorResult:
    n: int
    concurrency: int
    seconds_all_patched: float = 0.0
    seconds_all_running_watched: float | None = None
    per_item: list[float] = field(default_factory=list)
    steps: dict[str, list[float]] = field(
        default_factory=lambda: {"cr_create": [], "remote_create": [], "status_patch": []}
    )

    def to_json(self) -> dict[str, Any]:
        from .stats import summarize

        return {
            "n": self.n,
            "concurrency": self.concurrency,
            "seconds": round(self.seconds_all_patched, 3),
            "seconds_all_running_watched": None
            if self.seconds_all_running_watched is None
            else round(self.seconds_all_running_watched, 3),
            "per_gpupod_seconds": summarize(self.per_item).to_json(),
            "per_step_seconds": {k: summarize(v).to_json() for k, v in self.steps.items()},
            "throughput_per_s": round(self.n / self.seconds_all_patched, 2)
            if self.seconds_all_patched
            else None,
        }


async def run_floor(
    kube: KubeClient,
    namespace: str,
    names: Sequence[str],
    sim_url: str,
    api_key: str,
    concurrency: int,
    *,
    limit_seconds: float,
    log: Callable[[str], None],
) -> FloorResult:
    result = FloorResult(len(names), concurrency)
    watcher = Watcher(kube, namespace)
    await watcher.start()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    sim = httpx.AsyncClient(
        base_url=sim_url, headers={"X-Api-Key": api_key}, timeout=30.0, limits=limits
    )
    bodies = {name: remote_body(name) for name in names}  # built before the clock starts

    async def one(name: str) -> None:
        began = time.monotonic()
        await kube.create_gpupod(namespace, name)
        created = time.monotonic()
        response = await sim.post("/v2/pods", json=bodies[name])
        response.raise_for_status()
        envelope = response.json()
        if envelope.get("code") != 10000:
            raise RuntimeError(f"remote create failed: {envelope}")
        pod = envelope["data"]
        remote = time.monotonic()
        await kube.patch_status(
            namespace,
            name,
            {
                "podId": str(pod["id"]),
                "remoteName": name,
                "phase": "Running",
                "remoteStatus": "RUNNING",
            },
        )
        done = time.monotonic()
        result.per_item.append(done - began)
        result.steps["cr_create"].append(created - began)
        result.steps["remote_create"].append(remote - created)
        result.steps["status_patch"].append(done - remote)

    try:
        started = time.monotonic()
        await asyncio.wait_for(run_pool(names, concurrency, one), timeout=limit_seconds)
        result.seconds_all_patched = time.monotonic() - started
        seen = await watcher.wait_for(
            lambda: watcher.running >= len(names),
            limit_seconds=60.0,
            on_tick=lambda: log("floor: waiting for the watch to show every Running"),
        )
        if seen:
            last = max(t.running for t in watcher.tracks.values() if t.running is not None)
            result.seconds_all_running_watched = last - started
    finally:
        await watcher.stop()
        await sim.aclose()
    return result
