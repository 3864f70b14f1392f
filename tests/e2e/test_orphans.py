"""The orphan sweep end to end: remote pods named by this cluster whose GpuPod is gone are
reported (metric, one Event on the operator's Pod, a log line) and, with `--orphans delete`,
terminated after the grace; released pods and other clusters' pods are never touched."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import pytest

from gpupod_operator.devenv.controlplane import ControlPlane
from gpupod_operator.devenv.operator_process import OperatorProcess
from gpupod_operator.devenv.process import free_port
from gpupod_operator.devenv.simulator_process import SimulatorProcess

from .conftest import StartOperator
from .consolepods import EXAMPLES, console_delete, remote_status
from .gpupods import GpuPods, wait_for
from .survival import metric, metrics_args, scrape

pytestmark = pytest.mark.e2e

FAST = ["--sync-interval", "1", "--fast-sync-interval", "0.5"]
OPERATOR_POD = "gpupod-operator-7d9f-x2k4q"


@pytest.fixture
def gpupods(control_plane: ControlPlane, crds: list[str], namespace: str) -> GpuPods:
    return GpuPods(control_plane, namespace)


class Operator:
    """An operator run as if it were the chart's Pod in `namespace` (POD_* from the downward
    API), with metrics, a fast poll and its own cluster id."""

    def __init__(
        self, start: StartOperator, namespace: str, cluster_id: str, pod_name: str = OPERATOR_POD
    ) -> None:
        self.start_operator, self.ns, self.cluster_id, self.pod = (
            start,
            namespace,
            cluster_id,
            pod_name,
        )
        self.url = ""
        self.process: OperatorProcess | None = None

    def start(self, *flags: str) -> Operator:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/metrics"
        env = {"POD_NAME": self.pod, "POD_NAMESPACE": self.ns, "POD_UID": f"uid-{self.pod}"}
        args = [*FAST, *metrics_args(port), "--cluster-id", self.cluster_id, *flags]
        self.process = self.start_operator([self.ns], args=args, env=env)
        return self

    def stop(self) -> None:
        assert self.process is not None
        self.process.stop()

    def orphans(self) -> float | None:
        return metric(scrape(self.url), "gpupod_orphan_pods")


def events_on(gpupods: GpuPods, pod: str, reason: str) -> list[dict[str, Any]]:
    return [e for e in gpupods.events(pod) if e["reason"] == reason]


def logged_at(log: str, what: str) -> dt.datetime:
    """The time of the first log line containing `what` (`[2026-12-02 00:44:19,589] ...`)."""
    line = next(line for line in log.splitlines() if what in line)
    return dt.datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S,%f")


def lists(sim: SimulatorProcess) -> int:
    return sum(sim.stats()["requests"].get("list", {}).values())


def strip_and_delete(gpupods: GpuPods, name: str) -> None:
    """What a hurried admin does while the operator is down: the finalizer goes by hand."""
    gpupods.delete(name)
    gpupods.cp.kubectl(
        "patch", "gpupod", name, "-n", gpupods.ns, "--type", "merge",
        "-p", json.dumps({"metadata": {"finalizers": None}}),
    )  # fmt: skip
    gpupods.wait_gone(name, timeout=15)


def test_a_stripped_gpupod_is_reported_after_a_restart_then_deleted_after_the_grace(
    gpupods: GpuPods, simulator: SimulatorProcess, start_operator: StartOperator
) -> None:
    op = Operator(start_operator, gpupods.ns, "cluster-a").start()
    gpupods.create("lost")
    gpupods.create("kept")
    lost = gpupods.wait_phase("lost", "Running")["podId"]
    kept = gpupods.wait_phase("kept", "Running")["podId"]
    assert op.orphans() == 0
    op.stop()
    strip_and_delete(gpupods, "lost")

    op.start()  # report (the default)
    wait_for(lambda: op.orphans() == 1, 30, "the orphan reported in the metric")
    found = wait_for(lambda: events_on(gpupods, OPERATOR_POD, "OrphanFound"), 15, "the Event")
    assert len(found) == 1 and lost in found[0]["message"]
    assert found[0]["involvedObject"]["kind"] == "Pod"
    # as the README shows them
    table = gpupods.cp.kubectl(
        "get", "events", "-n", gpupods.ns, "--field-selector", "reason=OrphanFound"
    ).stdout
    assert lost in table and f"pod/{OPERATOR_POD}" in table
    assert op.process is not None and lost in op.process.log_text()
    # not repeated round after round, and report never deletes
    seen = lists(simulator)
    wait_for(lambda: lists(simulator) >= seen + 4, 30, "four more sweeps")
    assert len(events_on(gpupods, OPERATOR_POD, "OrphanFound")) == 1
    assert remote_status(simulator, lost) == "RUNNING"
    op.stop()

    started = time.monotonic()
    op.start("--orphans", "delete", "--orphan-grace", "2")
    wait_for(lambda: remote_status(simulator, lost) != "RUNNING", 30, "the orphan deleted")
    elapsed = time.monotonic() - started
    assert elapsed >= 2, elapsed  # never before the grace (counted again from the restart)
    wait_for(lambda: remote_status(simulator, lost) == "TERMINATED", 30, "the orphan TERMINATED")
    deleted = wait_for(lambda: events_on(gpupods, OPERATOR_POD, "OrphanDeleted"), 15, "Event")
    assert len(deleted) == 1 and lost in deleted[0]["message"]
    wait_for(lambda: op.orphans() == 0, 15, "no orphan left")
    assert remote_status(simulator, kept) == "RUNNING"  # a pod with its GpuPod is never one
    # the grace counts from the first sighting: the log's timestamps (ms) show the gap
    assert op.process is not None
    log = op.process.log_text()
    found_at, deleted_at = (
        logged_at(log, f"{reason}: ") for reason in ("OrphanFound", "OrphanDeleted")
    )
    gap = (deleted_at - found_at).total_seconds()
    assert gap >= 2, gap
    print(f"orphan deleted {gap:.2f} s after it was found (grace 2 s), {elapsed:.1f} s after start")


def test_a_deletion_policy_orphan_release_is_never_swept(
    gpupods: GpuPods, simulator: SimulatorProcess, start_operator: StartOperator
) -> None:
    op = Operator(start_operator, gpupods.ns, "cluster-a").start(
        "--orphans", "delete", "--orphan-grace", "0"
    )
    manifest = (EXAMPLES / "gpupod-orphan.yaml").read_text()  # examples/gpupod-orphan.yaml
    gpupods.cp.kubectl("apply", "-n", gpupods.ns, "-f", "-", input=manifest)
    pod_id = gpupods.wait_phase("long-training-run", "Running", timeout=90)["podId"]
    gpupods.delete("long-training-run")
    gpupods.wait_gone("long-training-run")
    released = f"/api/v1/namespaces/{gpupods.ns}/configmaps/gpupod-released-pods"
    cm = gpupods.cp.request("GET", released)
    assert [json.loads(v)["podId"] for v in cm["data"].values()] == [pod_id]
    # durable: a restart (nothing in memory) does not forget it either
    op.stop()
    op.start("--orphans", "delete", "--orphan-grace", "0")
    seen = lists(simulator)
    wait_for(lambda: lists(simulator) >= seen + 4, 30, "four sweeps")
    assert op.orphans() == 0
    assert remote_status(simulator, pod_id) == "RUNNING"
    assert not events_on(gpupods, OPERATOR_POD, "OrphanFound")
    # Once the pod is gone (ended in the console), the record forgets it: it stays small.
    console_delete(simulator, pod_id)
    wait_for(lambda: not gpupods.cp.request("GET", released).get("data"), 60, "the entry forgotten")


def test_two_clusters_on_one_account_never_take_each_others_pods_for_orphans(
    control_plane: ControlPlane,
    gpupods: GpuPods,
    simulator: SimulatorProcess,
    start_operator: StartOperator,
) -> None:
    other = GpuPods(control_plane, control_plane.create_namespace(f"{gpupods.ns[:50]}-b"))
    # Both in delete mode with no grace: any mistake would show as a terminated pod.
    a = Operator(start_operator, gpupods.ns, "cluster-a", "operator-a").start(
        "--orphans", "delete", "--orphan-grace", "0"
    )
    b = Operator(start_operator, other.ns, "cluster-b", "operator-b").start(
        "--orphans", "delete", "--orphan-grace", "0"
    )
    gpupods.create("in-a")
    other.create("in-b")
    other.create("left-by-b")
    pod_a = gpupods.wait_phase("in-a", "Running")["podId"]
    pod_b = other.wait_phase("in-b", "Running")["podId"]
    left = other.wait_phase("left-by-b", "Running")["podId"]
    # An orphan of cluster B, made while B is down: only B may ever touch it.
    b.stop()
    strip_and_delete(other, "left-by-b")
    seen = lists(simulator)
    wait_for(lambda: lists(simulator) >= seen + 4, 30, "four sweeps of A")
    assert a.orphans() == 0
    assert {remote_status(simulator, p) for p in (pod_a, pod_b, left)} == {"RUNNING"}
    assert not events_on(gpupods, "operator-a", "OrphanFound")
    # B, back, finds its own orphan and deletes it; A's pods stay.
    b.start("--orphans", "delete", "--orphan-grace", "0")
    wait_for(lambda: remote_status(simulator, left) != "RUNNING", 30, "B deleting its orphan")
    assert len(events_on(other, "operator-b", "OrphanDeleted")) == 1
    assert (
        remote_status(simulator, pod_a) == "RUNNING"
        and remote_status(simulator, pod_b) == "RUNNING"
    )
    assert a.orphans() == 0
