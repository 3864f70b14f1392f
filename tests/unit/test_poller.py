"""The bulk poller with fakes of both APIs: one List per round, patches only what changed, the
duplicate sweep, outage reporting, and that it never undoes the reconciler's conditions."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry

from gpupod_operator.controller.events import EventRecorder
from gpupod_operator.controller.metrics import Metrics
from gpupod_operator.controller.poller import OUTAGE_AFTER, Poller
from gpupod_operator.controller.registry import Registry
from gpupod_operator.controller.status_writer import StatusWriter
from gpupod_operator.provider import YottaProvider
from gpupod_operator.yotta import Pod
from tests.unit.fakes import Clock, FakeKube, FakeYotta, Posted, gpupod, remote


@dataclass
class World:
    poller: Poller
    yotta: FakeYotta
    kube: FakeKube
    posted: Posted
    events: EventRecorder
    registry: Registry
    clock: Clock

    def add(self, name: str, **status: object) -> None:
        self.registry.upsert(self.kube.add(gpupod(name, dict(status))))

    def status(self, name: str) -> dict[str, object]:
        return dict(self.kube.objects[name]["status"])

    def condition(self, name: str, type_: str) -> dict[str, object]:
        conditions = self.kube.objects[name]["status"].get("conditions") or []
        return next((dict(c) for c in conditions if c["type"] == type_), {})

    async def poll(self) -> Posted:
        await self.poller.poll_once()
        await self.events.flush()
        return self.posted


@pytest.fixture
def world() -> World:
    registry, clock = Registry(), Clock()
    yotta, kube, posted = FakeYotta(), FakeKube(), Posted()
    metrics = Metrics(CollectorRegistry())
    events = EventRecorder(posted)
    poller = Poller(
        YottaProvider(yotta, snapshot_ttl=30, clock=clock),
        StatusWriter(kube, registry, events, metrics),
        events,
        registry,
        metrics,
        interval=30,
        fast_interval=2,
        clock=clock,
    )
    return World(poller, yotta, kube, posted, events, registry, clock)


async def test_one_list_for_all_and_patches_only_changes(world: World) -> None:
    for i in range(20):
        world.yotta.pods[str(i)] = remote(str(i), f"ns-p{i}-uid")
        world.add(f"p{i}", podId=str(i), remoteName=f"ns-p{i}-uid", phase="Initializing")
    posted = await world.poll()
    assert world.yotta.calls == ["list"]
    assert len(world.kube.patches) == 20 and world.kube.patches[0][1]["phase"] == "Running"
    assert world.kube.patches[0][1]["pricePerHour"] == "1.00"
    assert posted.reasons().count("Running") == 20
    await world.poll()
    assert world.yotta.calls == ["list", "list"] and len(world.kube.patches) == 20
    world.yotta.pods["3"]["status"] = "PAUSED"
    await world.poll()
    assert len(world.kube.patches) == 21 and world.kube.patches[-1][0] == "p3"
    assert world.kube.patches[-1][1]["phase"] == "Paused"


async def test_a_pod_missing_from_the_list_is_lost_only_after_a_get(world: World) -> None:
    world.add("gone", podId="9", remoteName="n", phase="Running")
    posted = await world.poll()
    assert world.yotta.calls == ["list", "get 9"]
    assert world.status("gone")["phase"] == "Lost"
    assert posted.reasons("gone") == ["RemotePodLost"]


async def test_a_failing_get_or_patch_never_ends_the_round_for_the_others(
    world: World,
) -> None:
    world.yotta.pods["1"] = remote("1", "n1")
    world.add("a", podId="1", remoteName="n1", phase="Initializing")
    world.add("b", podId="2", remoteName="n2", phase="Initializing")  # not listed: a GET
    world.add("c", podId="3", remoteName="n3", phase="Initializing")
    world.yotta.pods["3"] = remote("3", "n3")
    del world.kube.objects["c"]  # deleted meanwhile: its patch answers 404
    original = world.yotta.get_pod

    async def failing_get(pod_id: str) -> object:
        world.yotta.down = True
        try:
            return await original(pod_id)
        finally:
            world.yotta.down = False

    world.yotta.get_pod = failing_get  # type: ignore[method-assign]
    await world.poll()
    assert world.status("a")["phase"] == "Running"
    assert world.status("b")["phase"] == "Initializing"  # unconfirmed: left alone
    assert world.registry.get("ns", "c") is None  # gone from the index too


async def test_recreate_is_never_reported_as_an_outside_termination(world: World) -> None:
    """Regression (issue 10 #1): the old pod of a Recreate is TERMINATED on purpose."""
    world.yotta.pods["1"] = remote("1", "ns-a-uid", "TERMINATED")
    world.add("a", podId="1", remoteName="ns-a-uid", phase="Terminating", replacing=True)
    posted = await world.poll()
    status = world.status("a")
    assert status.get("phase") == "Terminating", status
    assert "terminated outside" not in str(status.get("message"))
    assert "RemotePodTerminated" not in posted.reasons()
    # The pod deleted outside a Recreate still is one.
    world.yotta.pods["2"] = remote("2", "ns-b-uid", "TERMINATED")
    world.add("b", podId="2", remoteName="ns-b-uid", phase="Running")
    posted = await world.poll()
    assert world.status("b")["phase"] == "Terminated"
    assert "RemotePodTerminated" in posted.reasons("b")


async def test_the_poller_keeps_the_reconcilers_synced_condition(world: World) -> None:
    """Regression (issue 10 #2): a merge patch replaces the whole conditions list; the
    poller's write is computed from the latest status, under a precondition."""
    world.yotta.pods["1"] = remote("1", "n")
    world.add("a", podId="1", remoteName="n", phase="Initializing")
    # The reconciler writes Synced after the poller's registry last saw the object.
    synced = {"type": "Synced", "status": "False", "reason": "SecretNotFound", "message": "m"}
    world.kube.bump("a", conditions=[synced])
    await world.poll()  # the stale write conflicts and is dropped ...
    assert world.condition("a", "Synced")["reason"] == "SecretNotFound"
    world.registry.upsert(world.kube.objects["a"])  # ... the watch delivers the fresh one
    await world.poll()
    assert world.status("a")["phase"] == "Running"
    assert world.condition("a", "Ready")["status"] == "True"
    assert world.condition("a", "Synced")["reason"] == "SecretNotFound"


async def test_duplicates_with_our_exact_name_are_deleted(world: World) -> None:
    world.yotta.pods["1"] = remote("1", "ns-a-uid")
    world.yotta.pods["2"] = remote("2", "ns-a-uid", "INITIALIZE")
    world.yotta.pods["3"] = remote("3", "someone-elses")
    world.add("a", podId="1", remoteName="ns-a-uid", phase="Running")
    posted = await world.poll()
    calls = world.yotta.calls
    assert "delete 2" in calls and "delete 3" not in calls and "delete 1" not in calls
    assert "DuplicateDeleted" in posted.reasons("a")


async def test_no_sweep_while_a_create_is_unconfirmed_or_the_recorded_pod_is_gone(
    world: World,
) -> None:
    world.yotta.pods["1"] = remote("1", "ns-a-uid", "TERMINATED")  # recreate: old pod gone
    world.yotta.pods["2"] = remote("2", "ns-a-uid")  # the new pod, ID not recorded yet
    world.add("a", podId="1", remoteName="ns-a-uid", phase="Terminating", replacing=True)
    await world.poll()
    assert not [c for c in world.yotta.calls if c.startswith("delete")]


async def test_outage_is_reported_once_keeps_synced_and_recovery_restores(
    world: World,
) -> None:
    world.yotta.pods["1"] = remote("1", "n")
    world.add("a", podId="1", remoteName="n", phase="Initializing")
    await world.poll()
    synced = {"type": "Synced", "status": "True", "reason": "Reconciled", "message": "ok"}
    world.kube.bump("a", conditions=[*world.kube.objects["a"]["status"]["conditions"], synced])
    world.yotta.down = True
    for _ in range(OUTAGE_AFTER + 2):
        posted = await world.poll()
    ready = world.condition("a", "Ready")
    assert ready["status"] == "Unknown" and ready["reason"] == "ProviderUnreachable"
    assert world.condition("a", "Synced")["reason"] == "Reconciled"  # recomputed, not erased
    assert posted.reasons() == ["Running", "ProviderUnreachable"]
    world.yotta.down = False
    world.registry.upsert(world.kube.objects["a"])
    await world.poll()
    assert world.condition("a", "Ready")["status"] == "True"
    assert world.condition("a", "Synced")["reason"] == "Reconciled"


async def test_a_deletion_that_begins_during_the_round_gets_no_status_write(world: World) -> None:
    """The round's GpuPods are taken before its List; one whose deletion starts meanwhile
    (the finalizer deleted its pod) is not written: it is about to go."""
    world.yotta.pods["1"] = remote("1", "ns-a-uid")
    world.add("a", podId="1", remoteName="ns-a-uid", phase="Running")
    real_list = world.yotta.list_pods

    async def list_while_deleting() -> list[Pod]:
        body = dict(world.kube.objects["a"])
        body["metadata"] = {**body["metadata"], "deletionTimestamp": "2026-12-02T00:00:00Z"}
        world.registry.upsert(body)  # kopf's watch saw the deletion
        world.yotta.pods["1"]["status"] = "TERMINATED"  # and the finalizer deleted the pod
        return await real_list()

    world.yotta.list_pods = list_while_deleting  # type: ignore[method-assign]
    await world.poll()
    assert world.kube.patches == []
