"""controller/quota.py, controller/policy.py and their one hook in the reconciler, over fakes.

- The reconciler: a policy violation or a full quota stops the create BEFORE the create
  marker (no marker, no POST), with Synced=False, phase Pending and an Event; an admitted
  GpuPod's reservation is written before the marker; a reservation held from before a crash
  is reused without a write; capacity is released when the finalizer may go and when the
  remote pod is confirmed gone.
- Exactness: two controllers (two operator processes) admitting 20 GpuPods concurrently over
  one quota store with resourceVersion preconditions admit exactly `hard`.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import kopf
import pytest
from prometheus_client import CollectorRegistry

from gpupod_operator.controller import reconciler
from gpupod_operator.controller.kube import Conflict, Gone, KubeApi, ObjectRef
from gpupod_operator.controller.metrics import Metrics
from gpupod_operator.controller.policy import PolicyGate
from gpupod_operator.controller.quota import QuotaController
from gpupod_operator.controller.registry import Registry
from gpupod_operator.domain.spec import GpuPodSpec
from gpupod_operator.yotta import GpuType

from ..e2e.gpupods import condition
from .reconciler_fakes import NS, UID, Fns, Log, World, Worlds, gpupod, pod, returns

Doc = dict[str, Any]


class TenancyKube(KubeApi):
    """GpuQuotas and GpuTenantPolicies as the API server keeps them: a status patch at
    another resourceVersion is a Conflict. Quota writes are logged in `log` as
    `quota <name> [uids held]`."""

    def __init__(self, log: Log, labels: dict[str, str] | None = None) -> None:  # no cluster
        self.log = log
        self.quotas: dict[str, Doc] = {}
        self.policies: list[Doc] = []
        self.labels = labels or {}
        self.gpupods: set[str] = set()  # UIDs of GpuPods that exist

    def add_quota(self, name: str, **hard: Any) -> None:
        self.quotas[name] = {
            "metadata": {"name": name, "namespace": NS, "resourceVersion": "1"},
            "spec": {"hard": hard},
            "status": {},
        }

    def held(self, name: str) -> list[str]:
        return sorted(r["uid"] for r in self.quotas[name]["status"].get("reservations") or [])

    async def list_objects(self, plural: str, namespace: str | None = None) -> list[Doc]:
        await asyncio.sleep(0)  # let concurrent admissions interleave, as over a network
        if plural == "gputenantpolicies":
            return copy.deepcopy(self.policies)
        return [copy.deepcopy(q) for q in self.quotas.values()]

    async def get_object(self, plural: str, namespace: str, name: str) -> Doc:
        await asyncio.sleep(0)
        return copy.deepcopy(self.quotas[name])

    async def patch_object_status(
        self, plural: str, namespace: str, name: str, resource_version: str, status: Any
    ) -> Doc:
        await asyncio.sleep(0)
        stored = self.quotas[name]
        if stored["metadata"]["resourceVersion"] != resource_version:
            raise Conflict(409, "the object has been modified")
        stored["status"] = {**stored["status"], **copy.deepcopy(status)}
        stored["metadata"]["resourceVersion"] = str(int(resource_version) + 1)
        self.log.append(f"quota {name} {self.held(name)}")
        return copy.deepcopy(stored)

    async def get_namespace_labels(self, name: str) -> dict[str, str] | None:
        return dict(self.labels)

    async def get(self, ref: ObjectRef) -> Doc:
        if ref.uid not in self.gpupods:
            raise Gone(404, "not found")
        return {"metadata": {"uid": ref.uid, "name": ref.name, "namespace": ref.namespace}}


@pytest.fixture
async def worlds() -> AsyncIterator[Worlds]:
    made = Worlds()
    try:
        yield made
    finally:
        await made.aclose()


async def attempt(w: World, body: Doc | None = None) -> None:
    """One reconcile; a retry it asks for (waiting for the pod to start) is fine here."""
    with contextlib.suppress(kopf.TemporaryError):
        await reconciler.reconcile(w.rt, body or w.stored(), 0)


def tenancy(w: World, labels: dict[str, str] | None = None) -> TenancyKube:
    kube = TenancyKube(w.log, labels)
    w.rt.policy = PolicyGate(kube, ttl=0)
    w.rt.quota = QuotaController(kube, w.registry, w.metrics)
    return kube


# At most 2 GPUs per pod in namespaces labelled tier=gold.
GOLD_CAP: Doc = {
    "metadata": {"name": "cap"},
    "spec": {"namespaceSelector": {"matchLabels": {"tier": "gold"}}, "maxGpuCountPerPod": 2},
}
CREATED = Fns(
    create=returns(pod("p1", "INITIALIZE", singleCardPrice="0.45", gpuCount=1, gpuType="RTX"))
)


async def test_a_policy_violation_stops_before_the_marker_with_reason_and_event(
    worlds: Worlds,
) -> None:
    w = worlds.new(gpupod(gpuCount=4), CREATED)
    kube = tenancy(w, {"tier": "gold"})
    kube.policies = [GOLD_CAP]
    kube.add_quota("q", gpus=8)
    with pytest.raises(kopf.TemporaryError):
        await reconciler.reconcile(w.rt, w.stored(), 0)
    assert "create" not in w.log and not any("+createPending" in line for line in w.log)
    assert kube.held("q") == []  # the policy is checked before any capacity is taken
    stored = w.stored()
    assert stored["status"]["phase"] == "Pending"
    synced = condition(stored, "Synced")
    assert (synced["status"], synced["reason"]) == ("False", "PolicyViolation")
    assert synced["message"].startswith("spec.gpuCount 4 exceeds the limit in namespace ns")
    await w.flush_events()
    assert w.event_reasons() == ["Warning/PolicyViolation"]


async def test_a_policy_for_other_namespaces_does_not_stop_the_create(worlds: Worlds) -> None:
    w = worlds.new(gpupod(gpuCount=4), CREATED)
    kube = tenancy(w, {"tier": "silver"})
    kube.policies = [GOLD_CAP]
    await attempt(w)
    assert "create" in w.log


async def test_the_reservation_is_written_before_the_marker_and_corrected_after_the_create(
    worlds: Worlds,
) -> None:
    w = worlds.new(gpupod(), CREATED)
    kube = tenancy(w)
    kube.add_quota("q", gpus=4, pricePerHour="10")
    kube.quotas["q"]["status"] = {"prices": {"RTX": "0.40"}}  # persisted by an earlier process
    w.rt.quota.prices.clear()  # type: ignore[union-attr]
    await attempt(w, gpupod(gpuType="RTX"))
    quota_writes = [i for i, line in enumerate(w.log) if line.startswith("quota")]
    marker = next(i for i, line in enumerate(w.log) if "+createPending" in line)
    assert quota_writes[0] < marker < w.log.index("create") < quota_writes[1]
    (reservation,) = kube.quotas["q"]["status"]["reservations"]
    assert reservation["uid"] == UID
    assert (reservation["pricePerHour"], reservation["estimated"]) == ("0.45", False)
    assert kube.quotas["q"]["status"]["prices"] == {"RTX": "0.45"}


async def test_a_full_quota_keeps_the_gpupod_pending_with_used_and_hard(worlds: Worlds) -> None:
    w = worlds.new(gpupod(), CREATED)
    kube = tenancy(w)
    kube.add_quota("q", gpus=1)
    kube.quotas["q"]["status"] = {
        "reservations": [
            {"uid": "other", "name": "other", "gpus": 1, "pods": 1, "pricePerHour": "0.45"}
        ]
    }
    with pytest.raises(kopf.TemporaryError) as raised:
        await reconciler.reconcile(w.rt, w.stored(), 0)
    assert raised.value.delay == 30.0
    assert "create" not in w.log and not any("+createPending" in line for line in w.log)
    stored = w.stored()
    synced = condition(stored, "Synced")
    assert (stored["status"]["phase"], synced["reason"]) == ("Pending", "QuotaExceeded")
    assert "gpus 1/1 used (this GpuPod needs 1)" in synced["message"]
    await w.flush_events()
    assert w.event_reasons() == ["Warning/QuotaExceeded"]
    assert [r.uid for r in w.rt.quota.waiting(NS)] == [UID]  # type: ignore[union-attr]


async def test_a_reservation_held_from_before_a_crash_is_reused_without_a_write(
    worlds: Worlds,
) -> None:
    w = worlds.new(gpupod(), CREATED)
    kube = tenancy(w)
    kube.add_quota("q", gpus=1)  # full, but by this very GpuPod
    kube.quotas["q"]["status"] = {
        "reservations": [{"uid": UID, "name": "gp", "gpus": 1, "pods": 1, "pricePerHour": "0.45"}]
    }
    await attempt(w)
    assert "create" in w.log
    assert kube.held("q") == [UID]
    # No admission write before the marker; after the create, the quote is remembered.
    writes = [i for i, line in enumerate(w.log) if line.startswith("quota")]
    assert len(writes) == 1 and writes[0] > w.log.index("create")
    assert kube.quotas["q"]["status"]["prices"] == {"RTX": "0.45"}


async def test_release_when_the_finalizer_may_go_and_when_the_pod_is_confirmed_gone(
    worlds: Worlds,
) -> None:
    reserved = [{"uid": UID, "name": "gp", "gpus": 1, "pods": 1, "pricePerHour": "0.45"}]
    # Deleted before any create: released as the finalizer goes.
    w = worlds.new(gpupod())
    kube = tenancy(w)
    kube.add_quota("q", gpus=1)
    kube.quotas["q"]["status"] = {"reservations": copy.deepcopy(reserved)}
    await reconciler.finalize(w.rt, w.stored(), 0)
    assert kube.held("q") == []
    # The remote pod vanished (Lost): confirmed gone, released.
    running = gpupod({"podId": "p1", "remoteName": "x", "specHash": None, "phase": "Running"})
    w = worlds.new(running, Fns(observe=returns(None)))
    kube = tenancy(w)
    kube.add_quota("q", gpus=1)
    kube.quotas["q"]["status"] = {"reservations": copy.deepcopy(reserved)}
    await reconciler.reconcile(w.rt, w.stored(), 0)
    assert condition(w.stored(), "Synced")["reason"] == "RemotePodLost"
    assert kube.held("q") == []
    # FAILED is not gone: the pod still exists, the capacity stays held.
    w = worlds.new(running, Fns(observe=returns(pod("p1", "FAILED"))))
    kube = tenancy(w)
    kube.add_quota("q", gpus=1)
    kube.quotas["q"]["status"] = {"reservations": copy.deepcopy(reserved)}
    await reconciler.reconcile(w.rt, w.stored(), 0)
    assert kube.held("q") == [UID]


async def test_two_processes_admitting_twenty_at_once_admit_exactly_the_hard_limit() -> None:
    log: Log = []
    kube = TenancyKube(log)
    kube.add_quota("q", gpus=4, pods=10)
    metrics = Metrics(CollectorRegistry())
    a = QuotaController(kube, Registry(), metrics)
    b = QuotaController(kube, Registry(), metrics)
    spec = GpuPodSpec.parse({"image": "x", "gpuType": "RTX", "gpuCount": 1})

    async def one(i: int) -> bool:
        ref = ObjectRef(NS, f"p{i}", f"uid-{i:02d}")
        refused = await (a if i % 2 else b).admit(ref, spec, f"2026-12-01T10:00:{i:02d}Z")
        return refused is None

    results = await asyncio.gather(*(one(i) for i in range(20)))
    assert sum(results) == 4
    assert len(kube.held("q")) == 4
    assert kube.quotas["q"]["status"]["used"]["gpus"] == 4
    # Admitted again (a retry after a crash): the same four, nothing counted twice.
    again = await asyncio.gather(*(one(i) for i in range(20)))
    assert again == results and len(kube.held("q")) == 4


async def test_upkeep_drops_reservations_of_deleted_gpupods_and_reports_metrics() -> None:
    log: Log = []
    kube = TenancyKube(log)
    kube.add_quota("q", gpus=4)
    kube.quotas["q"]["status"] = {
        "reservations": [
            {"uid": "alive", "name": "a", "gpus": 1, "pods": 1, "pricePerHour": "0.45"},
            {"uid": "gone", "name": "g", "gpus": 2, "pods": 1, "pricePerHour": "0.90"},
        ]
    }
    kube.gpupods = {"alive"}  # not in the registry either, but the fresh read finds it
    registry = Registry()
    metrics = Metrics(CollectorRegistry())
    controller = QuotaController(kube, registry, metrics)  # -A: every quota
    await controller.pass_once()
    assert kube.held("q") == ["alive"]
    assert kube.quotas["q"]["status"]["used"]["gpus"] == 1
    assert (
        metrics.registry.get_sample_value(
            "gpupod_quota_used", {"namespace": NS, "resource": "gpus"}
        )
        == 1
    )
    assert (
        metrics.registry.get_sample_value(
            "gpupod_quota_hard", {"namespace": NS, "resource": "gpus"}
        )
        == 4
    )
    assert (
        metrics.registry.get_sample_value(
            "gpupod_quota_hard", {"namespace": NS, "resource": "pods"}
        )
        is None
    )


async def test_an_unknown_price_is_asked_of_the_provider_once_and_refused_if_it_has_none() -> None:
    log: Log = []
    kube = TenancyKube(log)
    kube.add_quota("q", pricePerHour="1.00")
    asked: list[int] = []

    async def quote() -> list[GpuType]:
        asked.append(1)
        return [GpuType(gpuType="RTX", singleCardPrice=Decimal("0.45"))]

    controller = QuotaController(kube, Registry(), Metrics(CollectorRegistry()), quote=quote)
    rtx = GpuPodSpec.parse({"image": "x", "gpuType": "RTX", "gpuCount": 2})
    assert await controller.admit(ObjectRef(NS, "a", "uid-a"), rtx, "t") is None
    assert kube.quotas["q"]["status"]["used"]["pricePerHour"] == "0.90"
    other = GpuPodSpec.parse({"image": "x", "gpuType": "H100", "gpuCount": 1})
    refused = await controller.admit(ObjectRef(NS, "b", "uid-b"), other, "t")
    assert refused is not None and "no price is known yet for GPU type H100" in refused.message
    assert len(asked) == 1  # the second ask came within the minute: not sent


async def test_without_a_price_limit_the_provider_is_never_asked() -> None:
    kube = TenancyKube([])
    kube.add_quota("q", gpus=2)

    async def quote() -> list[GpuType]:
        raise AssertionError("asked")

    controller = QuotaController(kube, Registry(), Metrics(CollectorRegistry()), quote=quote)
    spec = GpuPodSpec.parse({"image": "x", "gpuType": "H100", "gpuCount": 1})
    assert await controller.admit(ObjectRef(NS, "a", "uid-a"), spec, "t") is None


async def test_a_recreate_that_needs_more_than_fits_waits_without_holding_its_old_amounts() -> None:
    kube = TenancyKube([])
    kube.add_quota("q", gpus=4)
    kube.quotas["q"]["status"] = {
        "reservations": [
            {"uid": "mine", "name": "m", "gpus": 2, "pods": 1, "pricePerHour": "0.90"},
            {"uid": "other", "name": "o", "gpus": 2, "pods": 1, "pricePerHour": "0.90"},
        ]
    }
    controller = QuotaController(kube, Registry(), Metrics(CollectorRegistry()))
    bigger = GpuPodSpec.parse({"image": "x", "gpuType": "RTX", "gpuCount": 4})
    refused = await controller.admit(ObjectRef(NS, "m", "mine"), bigger, "t")
    assert refused is not None and "gpus 2/4 used (this GpuPod needs 4)" in refused.message
    assert kube.held("q") == ["other"]


async def test_a_release_reconciles_at_once_the_oldest_waiting_gpupods_that_fit() -> None:
    kube = TenancyKube([])
    kube.add_quota("q", gpus=2)
    registry = Registry()
    controller = QuotaController(kube, registry, Metrics(CollectorRegistry()))
    kicked: list[str] = []

    async def kick(ref: ObjectRef) -> None:
        kicked.append(ref.name)

    controller.kick = kick
    spec = GpuPodSpec.parse({"image": "x", "gpuType": "RTX", "gpuCount": 1})
    refs = {n: ObjectRef(NS, n, f"uid-{n}") for n in ("a", "b", "c", "d", "e")}
    for name, ref in refs.items():  # created in this order, one second apart
        registry.upsert(
            {
                "metadata": {"namespace": NS, "name": name, "uid": ref.uid},
                "spec": {"gpuCount": 1},
            }
        )
        kube.gpupods.add(ref.uid)
        await controller.admit(ref, spec, f"2026-12-01T10:00:0{'abcde'.index(name)}Z")
    assert kube.held("q") == ["uid-a", "uid-b"]
    assert [r.name for r in controller.waiting(NS)] == ["c", "d", "e"]
    await controller.release(refs["a"])
    await controller.pass_once()
    await asyncio.gather(*controller._kicking.values())
    assert kicked == ["c"]  # the oldest waiting one, and only as many as fit
    assert kube.quotas["q"]["status"]["waiting"] == 3


async def test_policies_and_labels_are_read_at_most_once_per_ttl() -> None:
    reads: list[str] = []

    class Counting(TenancyKube):
        async def list_objects(self, plural: str, namespace: str | None = None) -> list[Doc]:
            reads.append(plural)
            return await super().list_objects(plural, namespace)

        async def get_namespace_labels(self, name: str) -> dict[str, str] | None:
            reads.append(f"namespace {name}")
            return await super().get_namespace_labels(name)

    kube = Counting([], {"tier": "gold"})
    kube.policies = [GOLD_CAP]
    now = [100.0]
    gate = PolicyGate(kube, ttl=2.0, clock=lambda: now[0])
    big = GpuPodSpec.parse({"image": "x", "gpuType": "RTX", "gpuCount": 4})
    for _ in range(5):
        assert [v.policy for v in await gate.check(NS, big)] == ["cap"]
    assert reads == ["gputenantpolicies", f"namespace {NS}"]
    kube.policies = []  # deleted: seen once the TTL has passed
    now[0] += 2.5
    assert await gate.check(NS, big) == []
    assert reads == ["gputenantpolicies", f"namespace {NS}", "gputenantpolicies"]
