"""The bulk poller with fake clients: one List per round, patches only what changed, the
snapshot cache rules, the duplicate sweep and outage reporting."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from gpupod_operator.controller.events import EventRecorder
from gpupod_operator.controller.kube import ObjectRef
from gpupod_operator.controller.metrics import Metrics
from gpupod_operator.controller.poller import OUTAGE_AFTER, Poller
from gpupod_operator.controller.registry import Registry
from gpupod_operator.yotta import NotFound, Pod, Transient


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


class FakeYotta:
    def __init__(self) -> None:
        self.pods: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []
        self.down = False

    async def list_pods(self) -> list[Pod]:
        self.calls.append("list")
        if self.down:
            raise Transient("connection refused", operation="list")
        return [Pod.model_validate(p) for p in self.pods.values()]

    async def get_pod(self, pod_id: str) -> Pod:
        self.calls.append(f"get {pod_id}")
        if pod_id not in self.pods:
            raise NotFound("Pod not found", code=13000, operation="get")
        return Pod.model_validate(self.pods[pod_id])

    async def delete_pod(self, pod_id: str) -> None:
        self.calls.append(f"delete {pod_id}")
        self.pods[pod_id]["status"] = "TERMINATED"


class FakeKube:
    def __init__(self, registry: Registry) -> None:
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.seen: list[tuple[str, str, str]] = []  # Events: (name, type, reason)
        self.registry = registry

    async def post_event(self, ref: ObjectRef, type_: str, reason: str, message: str) -> None:
        self.seen.append((ref.name, type_, reason))

    async def patch_status(
        self, ref: ObjectRef, status: dict[str, Any], *, precondition: bool = False
    ) -> dict[str, Any]:
        self.patches.append((ref.name, status))
        tracked = self.registry.get(ref.namespace, ref.name)
        assert tracked is not None
        merged = {
            **tracked.status,
            **status,
            "podId": tracked.pod_id,
            "remoteName": tracked.remote_name,
        }
        return body(ref.name, merged)


def body(name: str, status: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "ns",
            "name": name,
            "uid": f"uid-{name}",
            "resourceVersion": "1",
            "generation": 1,
        },
        "spec": {"gpuType": "NVIDIA_RTX_4090_24G", "gpuCount": 2},
        "status": status,
    }


def remote(pod_id: str, name: str, status: str = "RUNNING") -> dict[str, Any]:
    return {
        "id": pod_id,
        "name": name,
        "status": status,
        "singleCardPrice": "0.5",
        "gpuType": "NVIDIA_RTX_4090_24G",
        "gpuCount": 2,
        "region": "us-east-1",
    }


@pytest.fixture
def world() -> tuple[Poller, FakeYotta, FakeKube, FakeKube, Registry, Clock]:
    registry = Registry()
    yotta, kube, clock = FakeYotta(), FakeKube(registry), Clock()
    events = EventRecorder(kube)  # type: ignore[arg-type]
    poller = Poller(
        yotta,
        kube,
        events,
        registry,
        Metrics(CollectorRegistry()),  # type: ignore[arg-type]
        interval=30,
        fast_interval=2,
        clock=clock,
    )
    return poller, yotta, kube, kube, registry, clock


async def test_one_list_for_all_and_patches_only_changes(world: Any) -> None:
    poller, yotta, kube, events, registry, _ = world
    for i in range(20):
        yotta.pods[str(i)] = remote(str(i), f"ns-p{i}-uid")
        registry.upsert(
            body(f"p{i}", {"podId": str(i), "remoteName": f"ns-p{i}-uid", "phase": "Initializing"})
        )
    await poller.poll_once()
    assert yotta.calls == ["list"]
    assert len(kube.patches) == 20 and kube.patches[0][1]["phase"] == "Running"
    assert kube.patches[0][1]["pricePerHour"] == "1.00"
    assert sum(1 for e in events.seen if e[2] == "Running") == 20
    await poller.poll_once()
    assert yotta.calls == ["list", "list"] and len(kube.patches) == 20  # nothing changed
    yotta.pods["3"]["status"] = "PAUSED"
    await poller.poll_once()
    assert len(kube.patches) == 21 and kube.patches[-1] == ("p3", kube.patches[-1][1])
    assert kube.patches[-1][1]["phase"] == "Paused"


async def test_a_pod_missing_from_the_list_is_lost_only_after_a_get(world: Any) -> None:
    poller, yotta, kube, events, registry, _ = world
    registry.upsert(body("gone", {"podId": "9", "remoteName": "n", "phase": "Running"}))
    await poller.poll_once()
    assert yotta.calls == ["list", "get 9"]
    assert kube.patches[0][1]["phase"] == "Lost"
    assert ("gone", "Warning", "RemotePodLost") in events.seen


async def test_cached_pod_rules(world: Any) -> None:
    poller, yotta, _, _, _, clock = world
    yotta.pods["1"] = remote("1", "n")
    await poller.poll_once()
    assert poller.cached("1") is not None and poller.cached("1").status == "RUNNING"
    assert poller.cached("2") is None  # absent from a list proves nothing
    clock.advance(1)
    poller.touch("1")
    assert poller.cached("1") is None  # we acted after that list was sent
    clock.advance(1)
    await poller.poll_once()
    assert poller.cached("1") is not None
    clock.advance(31)
    assert poller.cached("1") is None  # older than one sync interval


async def test_duplicates_with_our_exact_name_are_deleted(world: Any) -> None:
    poller, yotta, _, events, registry, _ = world
    yotta.pods["1"] = remote("1", "ns-a-uid")
    yotta.pods["2"] = remote("2", "ns-a-uid", "INITIALIZE")
    yotta.pods["3"] = remote("3", "someone-elses")
    registry.upsert(body("a", {"podId": "1", "remoteName": "ns-a-uid", "phase": "Running"}))
    await poller.poll_once()
    assert (
        "delete 2" in yotta.calls
        and "delete 3" not in yotta.calls
        and "delete 1" not in yotta.calls
    )
    assert ("a", "Warning", "DuplicateDeleted") in events.seen


async def test_no_sweep_while_a_create_is_unconfirmed_or_the_recorded_pod_is_gone(
    world: Any,
) -> None:
    poller, yotta, _, _, registry, _ = world
    yotta.pods["1"] = remote("1", "ns-a-uid", "TERMINATED")  # recreate: old pod gone
    yotta.pods["2"] = remote("2", "ns-a-uid")  # the new pod, ID not recorded yet
    registry.upsert(body("a", {"podId": "1", "remoteName": "ns-a-uid", "phase": "Terminating"}))
    await poller.poll_once()
    assert not [c for c in yotta.calls if c.startswith("delete")]


async def test_outage_is_reported_once_and_recovery_restores(world: Any) -> None:
    poller, yotta, kube, events, registry, _ = world
    yotta.pods["1"] = remote("1", "n")
    registry.upsert(body("a", {"podId": "1", "remoteName": "n", "phase": "Initializing"}))
    await poller.poll_once()
    yotta.down = True
    for _ in range(OUTAGE_AFTER + 2):
        await poller.poll_once()
    outage = [
        p
        for p in kube.patches
        if any(c.get("status") == "Unknown" for c in p[1].get("conditions", []))
    ]
    assert len(outage) == 1
    assert [e for e in events.seen if e[2] == "ProviderUnreachable"] == [
        ("a", "Warning", "ProviderUnreachable")
    ]
    yotta.down = False
    await poller.poll_once()
    ready = next(c for c in kube.patches[-1][1]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
