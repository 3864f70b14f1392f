"""The create marker is the fence: a compare-and-swap on the GpuPod's resourceVersion. Whoever
loses it (a stale body, a second operator process) reads the GpuPod again and never POSTs on
the old view, and what it already did before losing is kept."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from gpupod_operator.config import OperatorConfig
from gpupod_operator.controller import reconciler
from gpupod_operator.controller.events import EventRecorder
from gpupod_operator.controller.metrics import Metrics
from gpupod_operator.controller.registry import Registry
from gpupod_operator.controller.runtime import Runtime
from gpupod_operator.controller.status_writer import StatusWriter
from gpupod_operator.domain.spec import GpuPodSpec, spec_hash
from gpupod_operator.provider import YottaProvider
from tests.unit.fakes import Clock, FakeKube, FakeYotta, Posted, gpupod, remote


class Poller:
    def poke(self) -> None:
        pass


def runtime(log: list[str]) -> tuple[Runtime, FakeKube, FakeYotta]:
    kube, yotta, registry = FakeKube(log), FakeYotta(log), Registry()
    metrics = Metrics(CollectorRegistry())
    events = EventRecorder(Posted())
    rt = Runtime(
        config=OperatorConfig.from_env({"YOTTA_API_KEY": "k"}, cluster_id="test-cluster"),
        provider=YottaProvider(yotta, snapshot_ttl=30, clock=Clock()),
        kube=kube,  # type: ignore[arg-type]
        status=StatusWriter(kube, registry, events, metrics),
        events=events,
        registry=registry,
        poller=Poller(),  # type: ignore[arg-type]
        metrics=metrics,
    )
    return rt, kube, yotta


async def test_a_lost_marker_swap_reads_again_and_never_posts_on_the_old_view() -> None:
    log: list[str] = []
    rt, kube, yotta = runtime(log)
    stale = kube.add(gpupod("a", {}))
    stale = {**stale, "metadata": dict(stale["metadata"])}
    # Another process wrote the marker and created the pod after our body was read.
    kube.bump("a", createPending={"remoteName": "r", "since": "2026-11-27T12:00:00Z"})
    yotta.pods["1"] = remote("1", "r", "RUNNING")
    kube.bump("a", createPending=None, podId="1", remoteName="r")
    await reconciler.reconcile(rt, stale, 0)
    assert not [c for c in log if c.startswith("create")], log
    assert "kube get a" in log  # it read the GpuPod again ...
    assert kube.objects["a"]["status"]["podId"] == "1"  # ... and adopted what it found there


async def test_a_recreate_cut_short_by_a_lost_swap_still_completes() -> None:
    """The delete of a Recreate happened before the marker swap was lost: `replacing` must
    survive, or a spec reverted meanwhile leaves the GpuPod with no pod (survival suite)."""
    log: list[str] = []
    rt, kube, yotta = runtime(log)
    old = GpuPodSpec.parse({"image": "old", "gpuType": "NVIDIA_RTX_4090_24G", "gpuCount": 2})
    yotta.pods["1"] = remote("1", "r", "RUNNING")
    body = kube.add(
        gpupod(
            "a",
            {"podId": "1", "remoteName": "r", "specHash": spec_hash(old), "phase": "Running"},
            updatePolicy="Recreate",
        )
    )
    original_delete = yotta.delete_pod

    async def delete_then_someone_writes(pod_id: str) -> None:
        await original_delete(pod_id)
        kube.bump("a", lastSyncTime="x")  # the poller writes: our marker swap will lose

    yotta.delete_pod = delete_then_someone_writes  # type: ignore[method-assign]
    await reconciler.reconcile(rt, {**kube.objects["a"], "metadata": dict(body["metadata"])}, 0)
    actions = [c for c in log if c.startswith(("create", "delete", "kube patch"))]
    # `replacing` was stored before the delete, the old podId forgotten after the lost swap
    # and before the new POST; exactly one new pod; the replacement is complete.
    replacing = next(i for i, c in enumerate(actions) if "replacing" in c)
    forgotten = next(i for i, c in enumerate(actions) if "podId" in c and i > replacing)
    assert replacing < actions.index("delete 1") < forgotten < actions.index("create r")
    assert sum(c.startswith("create") for c in actions) == 1
    status = kube.objects["a"]["status"]
    assert status["podId"] == "2" and "replacing" not in status and "createPending" not in status
