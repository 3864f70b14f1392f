"""A small async client for the API server as the admin: CR writes, a watch, /metrics.

Every request it makes is tallied by (verb, target) in the apiserver's own words (POST, PATCH,
DELETE, GET, LIST, WATCH), so the bench can subtract its own traffic from apiserver_request_total
and report what the operator did.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

GROUP, VERSION, PLURAL = "gpupod.dev", "v1alpha1", "gpupods"
API = f"/apis/{GROUP}/{VERSION}"

IMAGE = "nvidia/cuda:12.4.1-base-ubuntu22.04"
GPU_TYPE = "NVIDIA_RTX_4090_24G"


def gpupod_manifest(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "GpuPod",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "bench"}},
        "spec": {"image": IMAGE, "gpuType": GPU_TYPE, "gpuCount": 1, "containerVolumeInGb": 50},
    }


def pod_names(n: int, prefix: str = "bench") -> list[str]:
    width = max(4, len(str(n)))
    return [f"{prefix}-{i:0{width}d}" for i in range(n)]


class ApiFailure(RuntimeError):
    def __init__(self, method: str, path: str, status: int, text: str) -> None:
        super().__init__(f"{method} {path} -> {status}: {text[:300]}")
        self.status = status


def collection(namespace: str) -> str:
    return f"{API}/namespaces/{namespace}/{PLURAL}"


class KubeClient:
    """httpx.AsyncClient against one API server with a bearer token; counts its own calls."""

    def __init__(self, server: str, token: str, ca_path: Path, *, pool: int = 64) -> None:
        self.server = server
        self._ctx = ssl.create_default_context(cafile=str(ca_path))
        self._client = httpx.AsyncClient(
            base_url=server,
            verify=self._ctx,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=httpx.Timeout(60.0),
            limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool),
        )
        self.own: Counter[tuple[str, str]] = Counter()

    async def aclose(self) -> None:
        await self._client.aclose()

    def _tally(self, verb: str, target: str) -> None:
        self.own[(verb, target)] += 1

    async def request(
        self,
        method: str,
        path: str,
        *,
        verb: str,
        target: str,
        body: Any = None,
        content_type: str = "application/json",
        ok: tuple[int, ...] = (),
    ) -> Any:
        self._tally(verb, target)
        response = await self._client.request(
            method,
            path,
            content=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": content_type},
        )
        if response.status_code >= 400 and response.status_code not in ok:
            raise ApiFailure(method, path, response.status_code, response.text)
        return response.json() if response.content else None

    async def create_gpupod(self, namespace: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "POST",
            collection(namespace),
            verb="POST",
            target=PLURAL,
            body=gpupod_manifest(name),
        )
        return result

    async def delete_gpupod(self, namespace: str, name: str) -> None:
        await self.request(
            "DELETE", f"{collection(namespace)}/{name}", verb="DELETE", target=PLURAL, ok=(404,)
        )

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> Any:
        return await self.request(
            "PATCH",
            f"{collection(namespace)}/{name}/status",
            verb="PATCH",
            target=f"{PLURAL}/status",
            body={"status": status},
            content_type="application/merge-patch+json",
        )

    async def list_gpupods(self, namespace: str) -> dict[str, Any]:
        result: dict[str, Any] = await self.request(
            "GET", collection(namespace), verb="LIST", target=PLURAL
        )
        return result

    async def delete_collection(self, namespace: str) -> None:
        await self.request("DELETE", collection(namespace), verb="DELETECOLLECTION", target=PLURAL)

    async def metrics_text(self) -> str:
        self._tally("GET", "-")
        response = await self._client.get("/metrics", headers={"Accept": "text/plain"})
        if response.status_code != 200:
            raise ApiFailure("GET", "/metrics", response.status_code, response.text)
        return response.text

    @property
    def stream_client(self) -> httpx.AsyncClient:
        return self._client


# --------------------------------------------------------------------------- watch


@dataclass
class ObjectTrack:
    """What the watch saw of one GpuPod (times are time.monotonic())."""

    added: float | None = None
    running: float | None = None
    deleted: float | None = None
    pod_id: str | None = None
    events: Counter[str] = field(default_factory=Counter)
    phases: list[str] = field(default_factory=list)


class Watcher:
    """One watch on a namespace's gpupods (re-established from the last resourceVersion, a
    bounded number of times). Records when each object first showed phase Running, when it
    was DELETED, its podId, and how many events it produced. `running` and `deleted` count
    the objects that reached each, kept as events arrive: waiting on them must not cost a scan
    of every object per event (O(N^2) over a burst, seconds of the bench's CPU at N=10000)."""

    def __init__(
        self,
        kube: KubeClient,
        namespace: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_reconnects: int = 50,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.tracks: dict[str, ObjectTrack] = {}
        self.event_times: list[tuple[float, str]] = []  # (time, type) for the plot
        self.changed = asyncio.Event()
        self.reconnects = 0
        self.running = 0
        self.deleted = 0
        self.error: BaseException | None = None
        self._clock = clock
        self._max_reconnects = max_reconnects
        self._task: asyncio.Task[None] | None = None
        self._rv = ""

    async def start(self) -> None:
        listing = await self.kube.list_gpupods(self.namespace)
        self._rv = str(listing["metadata"]["resourceVersion"])
        for item in listing.get("items") or []:
            self._apply("ADDED", item, self._clock())
        self._task = asyncio.create_task(self._run(), name=f"watch-{self.namespace}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def count(self, predicate: Callable[[ObjectTrack], bool]) -> int:
        return sum(1 for t in self.tracks.values() if predicate(t))

    async def wait_for(
        self,
        predicate: Callable[[], bool],
        limit_seconds: float,
        on_tick: Callable[[], None],
        *,
        progress: Callable[[], int] | None = None,
        stall_seconds: float | None = None,
    ) -> bool:
        """Wait until predicate() holds; on_tick() about every 5 s; False on timeout, or when
        progress() (a count that grows as the wait nears its end) stayed the same for
        stall_seconds: a stuck run at N=10000 fails in minutes, not after the whole limit."""
        deadline = time.monotonic() + limit_seconds
        next_tick = time.monotonic() + 5.0
        last_progress = progress() if progress is not None else 0
        progressed = time.monotonic()
        while not predicate():
            if self.error is not None:
                raise RuntimeError(f"the watch failed: {self.error!r}") from self.error
            now = time.monotonic()
            if now >= deadline:
                return False
            if progress is not None and stall_seconds is not None:
                if (current := progress()) != last_progress:
                    last_progress, progressed = current, now
                elif now - progressed >= stall_seconds:
                    return False
            if now >= next_tick:
                on_tick()
                next_tick = now + 5.0
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), timeout=min(1.0, deadline - now))
        return True

    async def _run(self) -> None:
        try:
            while True:
                await self._stream_once()
                self.reconnects += 1
                if self.reconnects > self._max_reconnects:
                    raise RuntimeError(f"watch ended {self.reconnects} times")
                await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # surfaced by wait_for
            self.error = exc
            self.changed.set()

    async def _stream_once(self) -> None:
        path = (
            f"{collection(self.namespace)}?watch=1&allowWatchBookmarks=true"
            f"&timeoutSeconds=1800&resourceVersion={self._rv}"
        )
        self.kube._tally("WATCH", PLURAL)
        async with self.kube.stream_client.stream(
            "GET", path, timeout=httpx.Timeout(60.0, read=None)
        ) as response:
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace")
                raise ApiFailure("WATCH", path, response.status_code, text)
            async for line in response.aiter_lines():
                if not line.strip():
                    continue
                now = self._clock()
                event = json.loads(line)
                kind = str(event.get("type"))
                obj = event.get("object") or {}
                if kind == "ERROR":
                    raise ApiFailure("WATCH", path, int(obj.get("code") or 0), str(obj))
                rv = (obj.get("metadata") or {}).get("resourceVersion")
                if rv:
                    self._rv = str(rv)
                if kind == "BOOKMARK":
                    continue
                self._apply(kind, obj, now)

    def _apply(self, kind: str, obj: dict[str, Any], now: float) -> None:
        name = str(obj["metadata"]["name"])
        track = self.tracks.setdefault(name, ObjectTrack())
        track.events[kind] += 1
        self.event_times.append((now, kind))
        if kind == "ADDED" and track.added is None:
            track.added = now
        status = obj.get("status") or {}
        phase = status.get("phase")
        if phase and (not track.phases or track.phases[-1] != phase):
            track.phases.append(str(phase))
        if status.get("podId"):
            track.pod_id = str(status["podId"])
        if phase == "Running" and track.running is None:
            track.running = now
            self.running += 1
        if kind == "DELETED" and track.deleted is None:
            track.deleted = now
            self.deleted += 1
        self.changed.set()
