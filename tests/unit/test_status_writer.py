"""The status writer on the fake API server: a patch at the version it was computed from, and
on a conflict a fresh read and a recompute, so no writer undoes what another wrote meanwhile.

The two writers are the reconciler (Synced, via `sync=`) and the poller (Ready=Unknown during
an outage, via `unreachable=`); their computes here call `domain.status.project` as they do.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from gpupod_operator.controller.kube import Conflict, KubeError, ObjectRef
from gpupod_operator.controller.status_writer import CONFLICT_RETRIES, Compute
from gpupod_operator.domain import status as st

from ..e2e.gpupods import condition
from .reconciler_fakes import NAME, NS, T0, World, Worlds, gpupod, pod

CONFLICT = Conflict(409, "the object has been modified")
OUTAGE = "the Yotta API cannot be reached: connection refused"


def poller_outage(current: Mapping[str, Any], _generation: int) -> dict[str, Any] | None:
    """What the poller writes after OUTAGE_AFTER failed polls."""
    return st.project(current, now=T0, gpu_count=1, unreachable=OUTAGE)


def reconciler_unavailable(current: Mapping[str, Any], generation: int) -> dict[str, Any] | None:
    """What a reconcile writes when its provider call failed: only Synced is news."""
    sync = st.Sync.failed("ProviderUnavailable", "503 Service Unavailable")
    return st.project(current, now=T0, gpu_count=1, generation=generation, sync=sync)


def reconciler_synced(current: Mapping[str, Any], generation: int) -> dict[str, Any] | None:
    return st.project(current, now=T0, gpu_count=1, generation=generation, sync=st.Sync.ok())


def rendered(*conditions: st.Condition) -> list[dict[str, Any]]:
    return [c.render([], T0) for c in conditions]


READY_TRUE = st.Condition(st.READY, st.ConditionStatus.TRUE, "Running", "the remote pod is RUNNING")
READY_UNREACHABLE = st.Condition(
    st.READY, st.ConditionStatus.UNKNOWN, "ProviderUnreachable", OUTAGE
)
SYNCED_TRUE = st.Condition(
    st.SYNCED, st.ConditionStatus.TRUE, "Reconciled", "the remote pod matches the spec", 1
)
RUNNING: dict[str, Any] = {"podId": "p1", "phase": "Running"}


@dataclass(frozen=True)
class Want:
    ops: list[str]
    written: bool  # write() returned the object (else None)
    conditions: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # type: (status, reason)


@dataclass(frozen=True)
class Case:
    reason: str
    status: dict[str, Any]  # what the writer read (at resourceVersion 1)
    stored: dict[str, Any] | None  # the GpuPod as stored now (None: deleted)
    compute: Compute
    want: Want
    reread: bool = True
    faults: tuple[KubeError | None, ...] = ()


@pytest.fixture
async def worlds() -> AsyncIterator[Worlds]:
    made = Worlds()
    yield made
    await made.aclose()


REF = ObjectRef.of(gpupod())  # at resourceVersion 1

CASES: dict[str, Case] = {
    "NoConflict": Case(
        reason="At the version it read, the writer's patch goes through at once.",
        status={**RUNNING, "conditions": rendered(READY_TRUE)},
        stored=gpupod({**RUNNING, "conditions": rendered(READY_TRUE)}),
        compute=poller_outage,
        want=Want(
            ops=["patch"], written=True, conditions={"Ready": ("Unknown", "ProviderUnreachable")}
        ),
    ),
    "PollerAfterReconciler": Case(
        reason="The reconciler wrote Synced after the poller read: the poller's conflict "
        "re-reads, and its Ready=Unknown joins the reconciler's Synced instead of erasing it.",
        status={**RUNNING, "conditions": rendered(READY_TRUE)},
        stored=gpupod({**RUNNING, "conditions": rendered(READY_TRUE, SYNCED_TRUE)}, rv="2"),
        compute=poller_outage,
        want=Want(
            ops=["patch (conflict)", "get", "patch"],
            written=True,
            conditions={
                "Ready": ("Unknown", "ProviderUnreachable"),
                "Synced": ("True", "Reconciled"),
            },
        ),
    ),
    "ReconcilerAfterPoller": Case(
        reason="The poller wrote Ready=Unknown (provider unreachable) after the reconciler "
        "read; the reconciler, whose own call just failed, adds Synced and must leave Ready as "
        "the poller set it.",
        status={**RUNNING, "conditions": rendered(READY_TRUE)},
        stored=gpupod({**RUNNING, "conditions": rendered(READY_UNREACHABLE)}, rv="2"),
        compute=reconciler_unavailable,
        want=Want(
            ops=["patch (conflict)", "get", "patch"],
            written=True,
            conditions={
                "Ready": ("Unknown", "ProviderUnreachable"),
                "Synced": ("False", "ProviderUnavailable"),
            },
        ),
    ),
    "NoRereadOnConflict": Case(
        reason="With reread=False (the poller's routine sync) a conflict is given up: the next "
        "round compares with the fresher status anyway.",
        status={**RUNNING, "conditions": rendered(READY_TRUE)},
        stored=gpupod({**RUNNING, "conditions": rendered(READY_TRUE, SYNCED_TRUE)}, rv="2"),
        compute=poller_outage,
        reread=False,
        want=Want(
            ops=["patch (conflict)"],
            written=False,
            conditions={"Ready": ("True", "Running"), "Synced": ("True", "Reconciled")},
        ),
    ),
    "NameReused": Case(
        reason="After a conflict the name belongs to a new GpuPod (another uid): not ours.",
        status=RUNNING,
        stored={
            **gpupod(RUNNING, rv="2"),
            "metadata": {"namespace": NS, "name": NAME, "uid": "other", "resourceVersion": "2"},
        },
        compute=reconciler_synced,
        want=Want(ops=["patch (conflict)", "get"], written=False),
    ),
    "DeletedBeforeTheRead": Case(
        reason="After a conflict the GpuPod is gone: nothing to write.",
        status=RUNNING,
        stored=None,
        faults=(CONFLICT,),
        compute=reconciler_synced,
        want=Want(ops=["patch (conflict)", "get"], written=False),
    ),
    "Deleted": Case(
        reason="A GpuPod deleted before the patch: nothing to write, and no error.",
        status=RUNNING,
        stored=None,
        compute=reconciler_synced,
        want=Want(ops=["patch (gone)"], written=False),
    ),
    "NothingChanges": Case(
        reason="A compute that changes nothing sends no patch at all.",
        status=RUNNING,
        stored=gpupod(RUNNING),
        compute=lambda _current, _generation: None,
        want=Want(ops=[], written=False),
    ),
}


async def write(w: World, case: Case) -> dict[str, Any] | None:
    return await w.rt.status.write(REF, case.status, 1, case.compute, reread=case.reread)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_write(worlds: Worlds, case: Case) -> None:
    w = worlds.new(case.stored, faults=case.faults)
    written = await write(w, case)
    assert w.log == case.want.ops, case.reason
    assert (written is not None) is case.want.written, case.reason
    if written is not None:
        assert written == w.kube.obj, "the whole object as stored is returned"
    for type_, want in case.want.conditions.items():
        got = condition(w.kube.obj, type_)
        assert (got.get("status"), got.get("reason")) == want, f"{case.reason}\n{got}"


async def test_the_recompute_sees_the_fresh_status_and_writes_at_its_version(
    worlds: Worlds,
) -> None:
    fresh = gpupod({**RUNNING, "message": "written by the other writer"}, rv="7")
    w = worlds.new(fresh)
    seen: list[Mapping[str, Any]] = []

    def compute(current: Mapping[str, Any], generation: int) -> dict[str, Any] | None:
        seen.append(dict(current))
        return reconciler_synced(current, generation)

    await w.rt.status.write(REF, RUNNING, 1, compute)
    assert [s.get("message") for s in seen] == [None, "written by the other writer"]
    assert w.log == ["patch (conflict)", "get", "patch"]
    assert w.kube.obj is not None and w.kube.obj["metadata"]["resourceVersion"] == "8"
    # The other writer's field survives: the patch was computed from it.
    assert w.kube.status["message"] == "written by the other writer"


async def test_a_gpupod_that_keeps_changing_raises_conflict(worlds: Worlds) -> None:
    w = worlds.new(gpupod(RUNNING), faults=[CONFLICT] * CONFLICT_RETRIES)
    with pytest.raises(Conflict):
        await w.rt.status.write(REF, RUNNING, 1, reconciler_synced)
    assert w.log == ["patch (conflict)", "get"] * CONFLICT_RETRIES


async def test_an_api_error_is_raised_not_retried(worlds: Worlds) -> None:
    w = worlds.new(gpupod(RUNNING), faults=[KubeError(500, "etcdserver: leader changed")])
    with pytest.raises(KubeError) as raised:
        await w.rt.status.write(REF, RUNNING, 1, reconciler_synced)
    assert raised.value.status == 500 and w.log == ["patch (error)"]


async def test_a_write_updates_the_registry_and_posts_the_phase_change_once(
    worlds: Worlds,
) -> None:
    w = worlds.new(gpupod({"podId": "p1", "phase": "Initializing"}))
    before = {"podId": "p1", "phase": "Initializing"}
    seen = st.Observed(pod("p1", region="us-east-1"))

    def compute(current: Mapping[str, Any], _generation: int) -> dict[str, Any] | None:
        return st.project(current, now=T0 + dt.timedelta(seconds=1), gpu_count=1, seen=seen)

    assert await w.rt.status.write(REF, before, 1, compute) is not None
    await w.flush_events()
    tracked = w.registry.get(NS, NAME)
    # The poller decides from the registry: it must hold what was just written.
    assert tracked is not None and tracked.status["phase"] == "Running"
    assert tracked.ref.resource_version == "2"
    assert w.events == [("Normal", "Running", "remote pod p1 is RUNNING in us-east-1")]
    assert w.metrics.registry.get_sample_value("gpupod_status_patches_total") == 1


async def test_a_gpupod_deleted_under_the_writer_leaves_the_registry(worlds: Worlds) -> None:
    w = worlds.new(None)
    w.registry.upsert(gpupod(RUNNING))
    assert await w.rt.status.write(REF, RUNNING, 1, reconciler_synced) is None
    assert w.registry.get(NS, NAME) is None  # else the poller keeps writing to it
