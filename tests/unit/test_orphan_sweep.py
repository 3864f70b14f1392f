"""The orphan sweep over fakes of its boundaries: when it reads the cluster, what it reports
(once), what it deletes (after the grace only) and what it never touches."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from gpupod_operator.config import OperatorConfig
from gpupod_operator.controller.events import EventRecorder
from gpupod_operator.controller.kube import KubeApi, ObjectRef
from gpupod_operator.controller.metrics import Metrics
from gpupod_operator.controller.orphans import OrphanSweep, Released
from gpupod_operator.controller.registry import Registry
from gpupod_operator.domain.spec import remote_name
from gpupod_operator.yotta import Pod

T0 = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
HERE = "cluster-here"
UID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
OTHER_UID = "11111111-2222-3333-4444-555555555555"


class FakeKube(KubeApi):
    def __init__(self) -> None:  # no cluster
        self.gpupods: list[dict[str, Any]] = []
        self.configmap: dict[str, str] = {}
        self.calls: list[str] = []

    async def list_gpupods(self, namespaces: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        self.calls.append("list-gpupods")
        return self.gpupods

    async def get_configmap_data(self, namespace: str, name: str) -> dict[str, str] | None:
        self.calls.append(f"get-configmap {namespace}/{name}")
        return dict(self.configmap)

    async def remove_configmap_entries(self, namespace: str, name: str, keys: list[str]) -> None:
        self.calls.append(f"remove {' '.join(keys)}")
        for key in keys:
            self.configmap.pop(key, None)


class FakeProvider:
    def __init__(self) -> None:
        self.deleted: list[str] = []
        self.gone: set[str] = set()  # GET answers "not found"
        self.got: list[str] = []

    async def delete(self, pod_id: str) -> None:
        self.deleted.append(pod_id)

    async def get(self, pod_id: str) -> Pod | None:
        self.got.append(pod_id)
        if pod_id in self.gone:
            return None
        return Pod.model_validate({"id": pod_id, "name": "x", "status": "RUNNING"})


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now


def ours(id_: str, uid: str = UID, cluster: str = HERE) -> Pod:
    name = remote_name("team", "train", uid, cluster)
    return Pod.model_validate({"id": id_, "name": name, "status": "RUNNING"})


def make(mode: str = "report", grace: float = 10, pod_name: str | None = "op-0") -> Any:
    config = OperatorConfig(
        api_url="http://yotta.invalid",
        api_key=SecretStr("k"),
        cluster_id=HERE,
        orphans=mode,
        orphan_grace=grace,
        sync_interval=0,
        pod_name=pod_name,
        pod_namespace="ops",
        pod_uid="pod-uid",
    )
    kube, provider, clock = FakeKube(), FakeProvider(), Clock()
    posted: list[tuple[ObjectRef, str, str, str]] = []

    async def post(ref: ObjectRef, type_: str, reason: str, message: str) -> None:
        posted.append((ref, type_, reason, message))

    events, metrics, registry = EventRecorder(post), Metrics(CollectorRegistry()), Registry()
    sweep = OrphanSweep(
        config,
        kube,
        provider,  # type: ignore[arg-type]
        events,
        metrics,
        registry,
        Released(kube, "ops"),
        clock=clock,
    )
    return sweep, kube, provider, clock, events, posted, metrics, registry


def gauge(metrics: Metrics) -> float:
    value = metrics.registry.get_sample_value("gpupod_orphan_pods")
    assert value is not None
    return value


async def test_nothing_unaccounted_for_costs_no_call_and_reports_zero() -> None:
    sweep, kube, _, _, _, _, metrics, registry = make()
    registry.upsert({"metadata": {"namespace": "team", "name": "train", "uid": UID}, "status": {}})
    await sweep.sweep([ours("1"), ours("2", cluster="elsewhere")])
    assert kube.calls == [] and gauge(metrics) == 0


async def test_an_orphan_is_confirmed_fresh_reported_once_on_the_operator_pod() -> None:
    sweep, kube, provider, clock, events, posted, metrics, _ = make()
    await sweep.sweep([ours("1")])
    # confirmed by a fresh GpuPod list, then the released record, in that order
    assert kube.calls == ["list-gpupods", "get-configmap ops/gpupod-released-pods"]
    assert gauge(metrics) == 1
    clock.now += dt.timedelta(seconds=60)
    await sweep.sweep([ours("1")])
    await events.flush()
    assert [(r.kind, r.name, r.uid, reason) for r, _, reason, _ in posted] == [
        ("Pod", "op-0", "pod-uid", "OrphanFound")
    ]
    assert "1" in posted[0][3] and "report" in posted[0][3]
    assert provider.deleted == []  # report mode never deletes


async def test_a_gpupod_the_watch_has_not_shown_yet_is_found_by_the_fresh_list() -> None:
    sweep, kube, _, _, _, _, metrics, _ = make("delete", grace=0)
    kube.gpupods = [{"metadata": {"uid": UID}, "spec": {}, "status": {}}]
    await sweep.sweep([ours("1")])
    assert gauge(metrics) == 0


async def test_released_adopted_and_creating_pods_are_spared_even_in_delete_mode() -> None:
    sweep, kube, provider, clock, *_ = make("delete", grace=0)
    kube.configmap = {UID: json.dumps({"podId": "1"})}
    kube.gpupods = [
        {"metadata": {"uid": "x"}, "spec": {"adopt": {"podId": "2"}}, "status": {}},
        {
            "metadata": {"uid": "y"},
            "spec": {},
            "status": {
                "createPending": {
                    "remoteName": ours("3", "22222222-0000-0000-0000-000000000000").name
                }
            },
        },
    ]
    pods = [ours("1"), ours("2", OTHER_UID), ours("3", "22222222-0000-0000-0000-000000000000")]
    for _ in range(3):
        await sweep.sweep(pods)
        clock.now += dt.timedelta(seconds=5)
    assert provider.deleted == []


async def test_delete_mode_waits_for_the_grace_from_the_first_sighting(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sweep, _, provider, clock, events, posted, _, _ = make("delete", grace=10, pod_name=None)
    await sweep.sweep([ours("1")])
    clock.now += dt.timedelta(seconds=9)
    await sweep.sweep([ours("1")])
    assert provider.deleted == []
    clock.now += dt.timedelta(seconds=1)
    await sweep.sweep([ours("1")])
    assert provider.deleted == ["1"]
    await events.flush()
    assert posted == []  # no Pod of its own to put Events on: log lines only
    lines = [r.getMessage() for r in caplog.records if r.name.endswith("orphans")]
    assert [line.split(":")[0] for line in lines if "Orphan" in line] == [
        "OrphanFound",
        "OrphanDeleted",
    ]


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"orphans": "purge"}, "--orphans"),
        ({"orphan_grace": -1.0}, "--orphan-grace"),
        ({"cluster_id": "  "}, "--cluster-id"),
    ],
)
def test_bad_orphan_settings_are_refused_naming_the_flag(
    overrides: dict[str, Any], names: str
) -> None:
    from gpupod_operator.config import ConfigError

    with pytest.raises(ConfigError, match=names):
        OperatorConfig.from_env({"YOTTA_API_KEY": "k"}, **overrides)


class UidKube(KubeApi):
    def __init__(self, answer: str | Exception) -> None:  # no cluster
        self.answer, self.asked = answer, 0

    async def namespace_uid(self, name: str) -> str:
        assert name == "kube-system"
        self.asked += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


async def test_the_cluster_id_is_the_kube_system_uid_unless_given() -> None:
    import kopf

    from gpupod_operator.controller.kube import KubeError
    from gpupod_operator.controller.orphans import resolve_cluster_id

    base = OperatorConfig.from_env({"YOTTA_API_KEY": "k"})
    kube = UidKube("7a1b-uid")
    assert (await resolve_cluster_id(base, kube)).cluster_id == "7a1b-uid"
    given = OperatorConfig.from_env({"YOTTA_API_KEY": "k"}, cluster_id="prod-eu")
    assert (await resolve_cluster_id(given, kube)).cluster_id == "prod-eu"
    assert kube.asked == 1  # not read when given
    with pytest.raises(kopf.PermanentError, match="--cluster-id"):
        await resolve_cluster_id(base, UidKube(KubeError(403, "forbidden")))


async def test_released_pods_that_are_gone_are_forgotten_every_few_rounds() -> None:
    from gpupod_operator.controller.orphans import PRUNE_EVERY

    sweep, kube, provider, clock, *_ = make()
    entry = lambda pod_id: json.dumps({"podId": pod_id})  # noqa: E731
    kube.configmap = {
        "uid-terminated": entry("1"),
        "uid-running": entry("2"),
        "uid-unlisted-gone": entry("3"),
        "uid-unlisted-alive": entry("4"),
        "uid-unconfirmed": json.dumps({"podId": None}),
    }
    provider.gone = {"3"}
    listed = [
        Pod.model_validate({"id": "1", "name": "a", "status": "TERMINATED"}),
        Pod.model_validate({"id": "2", "name": "b", "status": "RUNNING"}),
    ]
    for _ in range(PRUNE_EVERY - 1):
        await sweep.sweep(listed)
        clock.now += dt.timedelta(seconds=1)
    assert kube.calls == []  # nothing to do between prunes
    await sweep.sweep(listed)
    assert sorted(provider.got) == ["3", "4"]  # only a GET says an unlisted pod is gone
    assert sorted(kube.configmap) == ["uid-running", "uid-unconfirmed", "uid-unlisted-alive"]
