"""spec.adopt end to end: a pod made in the "console" (the simulator's API, with the key) is
taken over by a GpuPod with 0 creates; Manage acts on it, Observe never does; a second adopter
and an unknown pod ID are refused, and nothing is ever created for them."""

from __future__ import annotations

import pytest

from gpupod_operator.devenv.controlplane import ControlPlane
from gpupod_operator.devenv.simulator_process import SimulatorProcess

from .conftest import StartOperator
from .consolepods import console_pod, creates, example, remote, remote_status
from .gpupods import GpuPods, wait_for

pytestmark = pytest.mark.e2e

FAST = ["--sync-interval", "1", "--fast-sync-interval", "0.5"]


@pytest.fixture
def gpupods(control_plane: ControlPlane, crds: list[str], namespace: str) -> GpuPods:
    return GpuPods(control_plane, namespace)


def apply_example(gpupods: GpuPods, name: str, **adopt: str) -> None:
    gpupods.cp.kubectl("apply", "-n", gpupods.ns, "-f", "-", input=example(name, **adopt))


def test_manage_adopts_with_zero_creates_then_pauses_resumes_and_deletes_it(
    gpupods: GpuPods, simulator: SimulatorProcess, start_operator: StartOperator
) -> None:
    pod_id = console_pod(simulator, "my-console-notebook", gpu_count=2)
    start_operator(args=FAST)
    before = creates(simulator)
    apply_example(gpupods, "gpupod-adopt.yaml", podId=pod_id)  # examples/gpupod-adopt.yaml
    status = gpupods.wait_phase("console-notebook", "Running")
    assert status["podId"] == pod_id and status["remoteName"] == "my-console-notebook"
    pod = remote(simulator, pod_id)
    assert float(status["pricePerHour"]) == pytest.approx(float(pod["singleCardPrice"]) * 2)
    # in sync once the adoption is confirmed (a second look, ADOPT_CONFIRM later)
    wait_for(
        lambda: gpupods.condition("console-notebook", "Synced").get("status") == "True",
        15,
        "adoption confirmed",
    )
    assert "Adopted" in gpupods.event_reasons("console-notebook")

    gpupods.patch_spec("console-notebook", paused=True)
    gpupods.wait_phase("console-notebook", "Paused")
    assert remote_status(simulator, pod_id) == "PAUSED"
    gpupods.patch_spec("console-notebook", paused=False)
    gpupods.wait_phase("console-notebook", "Running")
    assert remote_status(simulator, pod_id) == "RUNNING"

    gpupods.delete("console-notebook")
    gpupods.wait_gone("console-notebook")
    assert remote_status(simulator, pod_id) == "TERMINATED"
    assert creates(simulator) - before == 0  # the number: creates during adoption


def test_observe_mirrors_never_acts_and_deleting_leaves_the_pod_running(
    gpupods: GpuPods, simulator: SimulatorProcess, start_operator: StartOperator
) -> None:
    pod_id = console_pod(simulator, "shared-dashboard")
    operator = start_operator(args=FAST)
    before = creates(simulator)
    apply_example(gpupods, "gpupod-observe.yaml", podId=pod_id)  # examples/gpupod-observe.yaml
    gpupods.wait_phase("team-dashboard-view", "Running")
    gpupods.patch_spec("team-dashboard-view", paused=True)
    # Observe: the reconcile of the change ends in sync without touching the pod.
    wait_for(
        lambda: (
            (c := gpupods.condition("team-dashboard-view", "Synced")).get("status") == "True"
            and c.get("observedGeneration") == 2
        ),
        30,
        "the paused change reconciled",
    )
    assert remote_status(simulator, pod_id) == "RUNNING"
    # The pod moves on its own: the GpuPod mirrors it (a pause made in the console).
    simulator.force_status(pod_id, "PAUSED")
    gpupods.wait_phase("team-dashboard-view", "Paused")
    simulator.force_status(pod_id, "RUNNING")
    gpupods.wait_phase("team-dashboard-view", "Running")

    gpupods.delete("team-dashboard-view")
    gpupods.wait_gone("team-dashboard-view", timeout=15)
    assert "Released" in gpupods.event_reasons("team-dashboard-view")
    assert remote_status(simulator, pod_id) == "RUNNING"
    stats = simulator.stats()["requests"]
    for op in ("pause", "resume", "delete"):
        assert sum(stats.get(op, {}).values()) == 0, (op, stats.get(op))
    assert creates(simulator) - before == 0
    assert "Traceback" not in operator.log_text()


def test_a_second_adopter_is_refused_naming_the_owner_and_an_unknown_id_creates_nothing(
    gpupods: GpuPods, simulator: SimulatorProcess, start_operator: StartOperator
) -> None:
    pod_id = console_pod(simulator, "contended")
    start_operator(args=FAST)
    before = creates(simulator)
    gpupods.create("first", adopt={"podId": pod_id})
    wait_for(
        lambda: gpupods.condition("first", "Synced").get("status") == "True", 30, "first owns it"
    )
    gpupods.create("second", adopt={"podId": pod_id, "mode": "Observe"})
    synced = wait_for(
        lambda: (c := gpupods.condition("second", "Synced")).get("reason") == "AlreadyOwned" and c,
        30,
        "second refused",
    )
    assert synced["status"] == "False" and f"{gpupods.ns}/first" in synced["message"]
    assert not gpupods.status("second").get("podId")
    assert "AlreadyOwned" in gpupods.event_reasons("second")

    unknown = "999999999999999999"
    gpupods.create("ghost", adopt={"podId": unknown})
    synced = wait_for(
        lambda: (c := gpupods.condition("ghost", "Synced")).get("reason") == "AdoptionFailed" and c,
        30,
        "ghost refused",
    )
    assert synced["status"] == "False" and unknown in synced["message"]
    assert gpupods.status("ghost")["phase"] == "Failed"

    # Deleting the refused ones leaves the owner's pod alone; the owner still has it.
    gpupods.delete("second")
    gpupods.delete("ghost")
    gpupods.wait_gone("second")
    gpupods.wait_gone("ghost")
    assert remote_status(simulator, pod_id) == "RUNNING"
    assert gpupods.status("first")["podId"] == pod_id
    assert creates(simulator) - before == 0


def test_two_adopters_applied_at_once_leave_exactly_one_owner(
    gpupods: GpuPods, simulator: SimulatorProcess, start_operator: StartOperator
) -> None:
    pod_id = console_pod(simulator, "raced")
    start_operator(args=FAST)
    manifests = [
        {
            "apiVersion": "gpupod.dev/v1alpha1",
            "kind": "GpuPod",
            "metadata": {"name": name},
            "spec": {"adopt": {"podId": pod_id}},
        }
        for name in ("racer-a", "racer-b")
    ]
    gpupods.apply({"apiVersion": "v1", "kind": "List", "items": manifests})

    def settled() -> list[str] | None:
        reasons = [gpupods.condition(n, "Synced").get("reason") for n in ("racer-a", "racer-b")]
        return reasons if sorted(map(str, reasons)) == ["AlreadyOwned", "Reconciled"] else None

    reasons = wait_for(settled, 30, "one owner and one refused")
    owners = [n for n in ("racer-a", "racer-b") if gpupods.status(n).get("podId") == pod_id]
    assert len(owners) == 1, reasons
    # the oldest (creationTimestamp, then UID) wins, whichever reconciled first
    objs = [gpupods.get(n) for n in ("racer-a", "racer-b")]
    oldest = min(objs, key=lambda o: (o["metadata"]["creationTimestamp"], o["metadata"]["uid"]))  # type: ignore[index]
    assert owners == [oldest["metadata"]["name"]]  # type: ignore[index]
