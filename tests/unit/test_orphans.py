"""The orphan decision without I/O: which pods are ours and unaccounted for, and when."""

from __future__ import annotations

import datetime as dt

import pytest

from gpupod_operator.domain import orphans as o
from gpupod_operator.domain.spec import cluster_tag, remote_name
from gpupod_operator.yotta import Pod

T0 = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
HERE, THERE = "cluster-here", "cluster-there"
TAG = cluster_tag(HERE)
UID_A = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
UID_B = "11111111-2222-3333-4444-555555555555"


def pod(id_: str, name: str, status: str = "RUNNING") -> Pod:
    return Pod.model_validate({"id": id_, "name": name, "status": status})


def ours(id_: str, uid: str = UID_A, status: str = "RUNNING", cluster: str = HERE) -> Pod:
    return pod(id_, remote_name("team", "train", uid, cluster), status)


def test_a_pod_of_ours_without_its_gpupod_is_an_orphan() -> None:
    lost = ours("1")
    assert o.orphans([lost], TAG, o.Known()) == [lost]


def test_a_pod_whose_gpupod_exists_is_not() -> None:
    assert o.orphans([ours("1")], TAG, o.Known(uids=frozenset({UID_A}))) == []


@pytest.mark.parametrize(
    "foreign",
    [
        ours("1", cluster=THERE),  # another cluster sharing the account
        pod("2", "made-in-the-console"),
        pod("3", "team-train-0f1e2d3c"),  # the older name format carries no cluster
    ],
)
def test_pods_not_named_by_this_cluster_are_never_orphans(foreign: Pod) -> None:
    assert o.orphans([foreign], TAG, o.Known()) == []


@pytest.mark.parametrize("status", ["TERMINATED", "TERMINATING"])
def test_a_pod_on_its_way_out_is_not_an_orphan(status: str) -> None:
    assert o.orphans([ours("1", status=status)], TAG, o.Known()) == []


@pytest.mark.parametrize("status", ["INITIALIZE", "PAUSED", "FAILED", "UNKNOWN"])
def test_any_other_status_can_be_an_orphan(status: str) -> None:
    assert len(o.orphans([ours("1", status=status)], TAG, o.Known())) == 1


def test_released_recorded_adopted_and_creating_pods_are_not_orphans() -> None:
    creating = ours("4", UID_B)
    cases = [
        o.Known(released_uids=frozenset({UID_A})),  # deletionPolicy: Orphan
        o.Known(released_pod_ids=frozenset({"1"})),  # released after an Observe adoption
        o.Known(pod_ids=frozenset({"1"})),  # another GpuPod adopted it
    ]
    for known in cases:
        assert o.orphans([ours("1")], TAG, known) == [], known
    pending = o.Known(pending_names=frozenset({creating.name or ""}))
    assert o.orphans([creating], TAG, pending) == []


def test_sightings_report_once_and_restart_the_grace_when_a_pod_stops_being_one() -> None:
    s, grace = o.Sightings(), dt.timedelta(seconds=10)
    assert s.update(["1", "2"], T0) == ["1", "2"]
    assert s.update(["1", "2"], T0 + dt.timedelta(seconds=5)) == []  # not reported again
    assert s.due(T0 + dt.timedelta(seconds=9), grace) == []
    assert s.due(T0 + dt.timedelta(seconds=10), grace) == ["1", "2"]
    assert s.update(["1"], T0 + dt.timedelta(seconds=11)) == []  # 2 was claimed meanwhile
    assert s.update(["1", "2"], T0 + dt.timedelta(seconds=12)) == ["2"]  # new sighting
    assert s.due(T0 + dt.timedelta(seconds=13), grace) == ["1"]
    s.forget("1")
    assert s.due(T0 + dt.timedelta(seconds=99), grace) == ["2"]
