"""controller/listers.py, and the quota admission and account counting built on it.

- `slim` drops what an index never reads (managedFields, kubectl's copy of the manifest).
- `IndexLister` serves our own last write until the watch shows that version, and forgets it
  on a lost swap or when the object is gone from the index.
- Quota admission from an index stays exact with two processes whose indexes never catch up
  (every write a compare-and-swap), and a one-process burst sends one status write per
  admission, also before the watch shows its writes: no lost swap, no fresh read.
- Registry.users is a count kept with every change (no scan of all GpuPods per release).
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Collection, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry

from gpupod_operator.controller.kube import ObjectRef
from gpupod_operator.controller.listers import LAST_APPLIED, IndexLister, Key, slim
from gpupod_operator.controller.metrics import Metrics
from gpupod_operator.controller.quota import QuotaController
from gpupod_operator.controller.registry import Registry
from gpupod_operator.domain.accounts import AccountId
from gpupod_operator.domain.spec import GpuPodSpec

from .reconciler_fakes import NS, Log
from .test_tenancy_controller import TenancyKube

Doc = dict[str, Any]


def quota(name: str, version: str, **status: Any) -> Doc:
    return {
        "metadata": {"name": name, "namespace": NS, "resourceVersion": version},
        "spec": {"hard": {"gpus": 4}},
        "status": status,
    }


def test_slim_drops_managed_fields_and_the_last_applied_manifest_only() -> None:
    body = {
        "metadata": {
            "name": "q",
            "namespace": NS,
            "resourceVersion": "7",
            "finalizers": ["gpupod.dev/in-use"],
            "managedFields": [{"manager": "kubectl"}],
            "annotations": {LAST_APPLIED: "{...}", "team": "a"},
        },
        "spec": {"hard": {"gpus": 4}},
    }
    assert slim(body) == {
        "metadata": {
            "name": "q",
            "namespace": NS,
            "resourceVersion": "7",
            "finalizers": ["gpupod.dev/in-use"],
            "annotations": {"team": "a"},
        },
        "spec": {"hard": {"gpus": 4}},
    }
    assert "managedFields" in body["metadata"]  # the watch's body is not changed
    only_applied = {"metadata": {"name": "q", "annotations": {LAST_APPLIED: "{}"}}}
    assert slim(only_applied) == {"metadata": {"name": "q"}}


async def test_our_write_is_served_until_the_watch_shows_it_then_the_watch_again() -> None:
    index: dict[Key, Collection[Doc]] = {(NS, "q"): [quota("q", "1")]}
    lister = IndexLister(index)
    lister.wrote(quota("q", "2", used={"gpus": 1}))
    assert (await lister.find(NS, "q") or {})["status"] == {"used": {"gpus": 1}}
    # The watch delivers our version: served from the index from now on.
    index[(NS, "q")] = [quota("q", "2", used={"gpus": 1}, fromWatch=True)]
    assert (await lister.find(NS, "q") or {})["status"]["fromWatch"] is True
    index[(NS, "q")] = [quota("q", "3", used={"gpus": 2})]
    assert [b["metadata"]["resourceVersion"] for b in await lister.list(NS)] == ["3"]


async def test_a_lost_swap_or_a_deletion_forgets_our_write() -> None:
    index: dict[Key, Collection[Doc]] = {(NS, "q"): [quota("q", "1")], (NS, "r"): [quota("r", "1")]}
    lister = IndexLister(index)
    lister.wrote(quota("q", "2"))
    lister.conflicted(NS, "q")
    assert (await lister.find(NS, "q") or {})["metadata"]["resourceVersion"] == "1"
    lister.wrote(quota("r", "2"))
    del index[(NS, "r")]
    assert await lister.find(NS, "r") is None
    index[(NS, "r")] = [quota("r", "5")]  # made again: the old write is not laid over it
    assert (await lister.find(NS, "r") or {})["metadata"]["resourceVersion"] == "5"
    assert await lister.list("elsewhere") == []
    assert [b["metadata"]["name"] for b in await lister.list()] == ["q", "r"]


class StoreIndex(Mapping[Key, Collection[Doc]]):
    """kopf's index of the fake's quotas as a watch with no lag keeps it (a copy per read)."""

    def __init__(self, kube: TenancyKube) -> None:
        self._kube = kube

    def __getitem__(self, key: Key) -> Collection[Doc]:
        return [copy.deepcopy(self._kube.quotas[key[1]])]

    def __iter__(self) -> Iterator[Key]:
        return iter([(NS, name) for name in self._kube.quotas])

    def __len__(self) -> int:
        return len(self._kube.quotas)


class CountingKube(TenancyKube):
    def __init__(self, log: Log) -> None:
        super().__init__(log)
        self.calls: list[str] = []

    async def list_objects(self, plural: str, namespace: str | None = None) -> list[Doc]:
        self.calls.append("list")
        return await super().list_objects(plural, namespace)

    async def get_object(self, plural: str, namespace: str, name: str) -> Doc:
        self.calls.append("get")
        return await super().get_object(plural, namespace, name)

    async def patch_object_status(
        self, plural: str, namespace: str, name: str, resource_version: str, status: Any
    ) -> Doc:
        self.calls.append("patch")
        return await super().patch_object_status(plural, namespace, name, resource_version, status)


SPEC = GpuPodSpec.parse({"image": "x", "gpuType": "RTX", "gpuCount": 1})


async def admit_all(controllers: list[QuotaController], n: int) -> list[bool]:
    async def one(i: int) -> bool:
        ref = ObjectRef(NS, f"p{i}", f"uid-{i:02d}")
        controller = controllers[i % len(controllers)]
        return await controller.admit(ref, SPEC, f"2026-12-01T10:00:{i:02d}Z") is None

    return list(await asyncio.gather(*(one(i) for i in range(n))))


async def test_two_processes_on_indexes_that_never_catch_up_admit_exactly_the_hard_limit() -> None:
    kube = CountingKube([])
    kube.add_quota("q", gpus=4, pods=10)
    frozen: dict[Key, Collection[Doc]] = {(NS, "q"): [copy.deepcopy(kube.quotas["q"])]}
    metrics = Metrics(CollectorRegistry())
    a = QuotaController(kube, Registry(), metrics, lister=IndexLister(frozen))
    b = QuotaController(kube, Registry(), metrics, lister=IndexLister(dict(frozen)))
    results = await admit_all([a, b], 20)
    assert sum(results) == 4
    assert len(kube.held("q")) == 4
    assert kube.quotas["q"]["status"]["used"]["gpus"] == 4
    assert "list" not in kube.calls  # the index is all they list


async def test_a_burst_in_one_process_writes_once_per_admission_and_never_reads() -> None:
    """Before the watch shows a write, the next admission builds on what the write returned."""
    for index in ("lagging", "current"):
        kube = CountingKube([])
        kube.add_quota("q", gpus=4, pods=10)
        lagging: dict[Key, Collection[Doc]] = {(NS, "q"): [copy.deepcopy(kube.quotas["q"])]}
        lister = IndexLister(lagging if index == "lagging" else StoreIndex(kube))
        controller = QuotaController(kube, Registry(), Metrics(CollectorRegistry()), lister=lister)
        results = await admit_all([controller], 10)
        assert sum(results) == 4
        assert kube.calls == ["patch"] * 4, index  # refusals write nothing; no 409, GET, LIST


def tracked(name: str, account: str | None) -> Doc:
    status = {"account": {"kind": "YottaAccount", "name": account}} if account else {}
    return {
        "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}"},
        "spec": {"image": "x", "gpuType": "RTX"},
        "status": status,
    }


def test_users_of_an_account_follow_upserts_releases_and_removals() -> None:
    registry = Registry()
    team, other = AccountId("YottaAccount", NS, "team"), AccountId("YottaAccount", NS, "other")
    registry.upsert(tracked("a", None))
    registry.upsert(tracked("a", "team"))  # the account pinned later
    registry.upsert(tracked("b", "team"))
    registry.upsert(tracked("b", "team"))  # an update: still one user
    registry.upsert(tracked("c", "other"))
    assert (registry.users(team), registry.users(other)) == (2, 1)
    registry.release(NS, "a")
    registry.release(NS, "a")  # twice: counted once
    registry.upsert(tracked("a", "team"))  # a released GpuPod's later event: still released
    assert registry.users(team) == 1
    registry.remove(NS, "a")
    registry.remove(NS, "b")
    registry.remove(NS, "b")
    assert (registry.users(team), registry.users(other)) == (0, 1)
    registry.upsert(tracked("a", "team"))  # made again under the same name: a new user
    assert registry.users(team) == 1


def test_tracked_statuses_equal_what_was_written_and_share_their_strings() -> None:
    registry = Registry()
    ready = {"type": "Ready", "status": "True", "reason": "Running", "message": "x" * 100}
    written = [tracked(name, "team") for name in ("a", "b")]
    for body in written:
        body["status"]["conditions"] = [ready]
    bodies = [json.loads(json.dumps(body)) for body in written]  # as the API's answers come
    a, b = (registry.upsert(body).status for body in bodies)
    assert a == {k: v for k, v in bodies[0]["status"].items() if k != "createPending"}
    # The JSON decoder made two of each; the registry keeps one (long strings stay as they are).
    first, second = a["conditions"][0], b["conditions"][0]
    assert first["reason"] is second["reason"] and next(iter(first)) is next(iter(second))
    assert first["message"] == second["message"]
