"""spec.adopt and the released-pods record, through the reconciler on a real Runtime over the
fakes: what is sent to the provider (never a create) and what the GpuPod shows."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import kopf
import pytest

from gpupod_operator.controller import reconciler
from gpupod_operator.controller.kube import KubeError, ObjectRef
from gpupod_operator.controller.orphans import Released
from gpupod_operator.domain.decisions import NameLookup, Recorded

from ..e2e.gpupods import condition
from .reconciler_fakes import Fns, World, Worlds, gpupod, pod, returns

POD_ID = "900000000000000007"
CONSOLE_NAME = "made-in-the-console"
ADOPT = {"image": None, "gpuType": None}


def adopter(mode: str = "Manage", status: dict[str, Any] | None = None, **meta: Any) -> Any:
    body = gpupod(status, adopt={"podId": POD_ID, "mode": mode}, **ADOPT)
    body["spec"] = {k: v for k, v in body["spec"].items() if v is not None}
    body["metadata"].update(creationTimestamp="2026-11-27T12:00:05Z", **meta)
    return body


def console_pod(status: str = "RUNNING") -> Any:
    return pod(POD_ID, status, name=CONSOLE_NAME, gpuCount=2, singleCardPrice=0.5)


class FakeReleased(Released):
    def __init__(self, log: list[str], fail: bool = False) -> None:  # no ConfigMap behind it
        self.log, self.fail = log, fail

    async def record(self, ref: ObjectRef, recorded: Recorded) -> None:
        self.log.append(f"released {ref.uid} {recorded.pod_id}")
        if self.fail:
            raise KubeError(500, "etcd is down (from the test)")


@pytest.fixture
async def worlds() -> AsyncIterator[Worlds]:
    made = Worlds()
    yield made
    await made.aclose()


async def run(w: World, handler: Any, body: Any) -> Exception | None:
    try:
        await handler(w.rt, body, 0)
    except Exception as e:
        return e
    return None


async def test_manage_takes_over_a_console_pod_with_no_create_and_mirrors_it(
    worlds: Worlds,
) -> None:
    w = worlds.new(adopter(), Fns(observe=returns(console_pod())))
    error = await run(w, reconciler.reconcile, w.stored())
    # One read, one write recording the ID (it clears a marker that was never set): no create.
    assert w.log == [f"observe {POD_ID}", f"patch -createPending podId={POD_ID} -replacing"]
    # ... then a second look before anything acts on it (a claimant applied at the same time)
    assert isinstance(error, kopf.TemporaryError)
    assert condition(w.kube.obj, "Synced")["reason"] == "ConfirmingOwnership"
    assert await run(w, reconciler.reconcile, w.stored()) is None
    assert "create" not in w.log
    status = w.kube.status
    assert status["podId"] == POD_ID and status["remoteName"] == CONSOLE_NAME
    assert status["phase"] == "Running" and status["pricePerHour"] == "1.00"
    assert condition(w.kube.obj, "Synced")["status"] == "True"
    await w.flush_events()
    assert "Normal/Adopted" in w.event_reasons()


async def test_an_unknown_pod_id_fails_clearly_and_creates_nothing(worlds: Worlds) -> None:
    w = worlds.new(adopter(), Fns(observe=returns(None)))
    assert await run(w, reconciler.reconcile, w.stored()) is None
    assert "create" not in w.log and not any("createPending" in op for op in w.log)
    synced = condition(w.kube.obj, "Synced")
    assert (synced["status"], synced["reason"]) == ("False", "AdoptionFailed")
    assert POD_ID in synced["message"] and w.kube.status["phase"] == "Failed"
    assert "podId" not in w.kube.status
    await w.flush_events()
    assert "Warning/AdoptionFailed" in w.event_reasons()


async def test_a_second_adopter_is_refused_without_a_call_naming_the_owner(
    worlds: Worlds,
) -> None:
    w = worlds.new(adopter(), Fns())  # any provider call fails the test
    first = adopter(
        status={"podId": POD_ID}, name="first", uid="00000000-0000-0000-0000-0000000000aa"
    )
    first["metadata"]["creationTimestamp"] = "2026-11-27T12:00:00Z"
    w.registry.upsert(first)
    w.registry.upsert(w.stored())  # itself, as the watch shows it
    assert await run(w, reconciler.reconcile, w.stored()) is None
    assert w.log == ["patch"]
    synced = condition(w.kube.obj, "Synced")
    assert (synced["status"], synced["reason"]) == ("False", "AlreadyOwned")
    assert "ns/first" in synced["message"] and POD_ID in synced["message"]


async def test_the_younger_of_two_adopters_gives_the_pod_up_without_touching_it(
    worlds: Worlds,
) -> None:
    # It adopted before it saw the older one (applied at the same moment): it forgets the ID.
    w = worlds.new(adopter(status={"podId": POD_ID, "phase": "Running"}), Fns())
    older = adopter(name="older", uid="00000000-0000-0000-0000-0000000000aa")
    older["metadata"]["creationTimestamp"] = "2026-11-27T12:00:00Z"
    w.registry.upsert(older)
    assert await run(w, reconciler.reconcile, w.stored()) is None
    assert "podId" not in w.kube.status
    assert condition(w.kube.obj, "Synced")["reason"] == "AlreadyOwned"
    # and deleting it leaves the pod alone
    w.kube.obj["metadata"]["deletionTimestamp"] = "2026-11-27T12:01:00Z"  # type: ignore[index]
    w.log.clear()
    assert await run(w, reconciler.finalize, w.stored()) is None
    assert w.log == []


async def test_observe_never_pauses_and_its_deletion_releases_at_once_on_record(
    worlds: Worlds,
) -> None:
    w = worlds.new(adopter("Observe", paused=None), Fns(observe=returns(console_pod())))
    w.rt.released = FakeReleased(w.log)
    body = w.stored()
    body["spec"]["paused"] = True
    w.kube.obj = copy.deepcopy(body)
    assert isinstance(await run(w, reconciler.reconcile, w.stored()), kopf.TemporaryError)
    assert await run(w, reconciler.reconcile, w.stored()) is None  # confirmed
    assert not any(op.startswith(("pause", "resume", "delete")) for op in w.log)
    assert w.kube.status["phase"] == "Running"
    w.log.clear()
    assert await run(w, reconciler.finalize, w.stored()) is None
    assert w.log == [f"released {w.stored()['metadata']['uid']} {POD_ID}"]  # no delete
    await w.flush_events()
    assert "Normal/Released" in w.event_reasons()


async def test_deletion_policy_orphan_is_recorded_before_the_finalizer_may_go(
    worlds: Worlds,
) -> None:
    body = gpupod({"podId": "p1", "phase": "Running"}, deletionPolicy="Orphan")
    w = worlds.new(body, Fns())
    w.rt.released = FakeReleased(w.log, fail=True)
    error = await run(w, reconciler.finalize, w.stored())
    # Not recorded: the finalizer stays (kopf retries) rather than leave a pod to the sweep.
    assert isinstance(error, kopf.TemporaryError) and "released" in str(error)
    w.rt.released = FakeReleased(w.log)
    assert await run(w, reconciler.finalize, w.stored()) is None
    assert w.log[-1] == f"released {body['metadata']['uid']} p1"


async def test_a_create_marker_of_the_older_name_format_is_looked_up_under_that_name(
    worlds: Worlds,
) -> None:
    # Written by an operator before names carried the cluster: the stored name wins, so the
    # lookup finds the pod that create made instead of creating one under the new name.
    old_name = "ns-gp-0f3c9a2e"
    marker = {"remoteName": old_name, "since": "2026-11-27T12:00:00Z"}
    asked: list[str] = []

    def look_up(name: str, since: dt.datetime) -> NameLookup:
        asked.append(name)
        return NameLookup([pod("p1", name=old_name)], since + dt.timedelta(seconds=1))

    w = worlds.new(
        gpupod({"createPending": marker, "remoteName": old_name, "phase": "Creating"}),
        Fns(look_up=look_up),
    )
    assert await run(w, reconciler.reconcile, w.stored()) is None
    assert asked == [old_name] and "create" not in w.log
    assert w.kube.status["podId"] == "p1" and w.kube.status["remoteName"] == old_name
