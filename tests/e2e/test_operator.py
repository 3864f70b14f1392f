"""The product, end to end: a real kube-apiserver + etcd, the operator as a real process, the
Yotta simulator over HTTP. Each test checks both sides: the GpuPod through the Kubernetes API
and the remote pods through the simulator's admin API."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from gpupod_operator.devenv.controlplane import ControlPlane
from gpupod_operator.devenv.operator_process import OperatorProcess
from gpupod_operator.devenv.process import free_port
from gpupod_operator.devenv.simulator_process import SimulatorProcess

from .conftest import StartOperator
from .gpupods import GpuPods, live_pods, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def gpupods(control_plane: ControlPlane, crds: list[str], namespace: str) -> GpuPods:
    return GpuPods(control_plane, namespace)


@pytest.fixture
def metrics_operator(start_operator: StartOperator) -> tuple[OperatorProcess, str]:
    port = free_port()
    return start_operator(args=["--metrics-port", str(port), "--metrics-addr", "127.0.0.1"]), (
        f"http://127.0.0.1:{port}/metrics"
    )


def remote(sim: SimulatorProcess, pod_id: str) -> dict[str, Any]:
    return next(p for p in sim.pods() if str(p["id"]) == pod_id)


def creates(sim: SimulatorProcess) -> int:
    return sum(sim.stats()["requests"].get("create", {}).values())


def test_apply_reaches_running_with_id_endpoints_and_price(
    gpupods: GpuPods, simulator: SimulatorProcess, operator: OperatorProcess
) -> None:
    gpupods.create("web", gpuCount=2, expose=[{"port": 8000, "protocol": "HTTP"}])
    gpupods.cp.kubectl(
        "wait", "--for=condition=Ready", "gpupod/web", "-n", gpupods.ns, "--timeout=60s"
    )
    status = gpupods.status("web")
    assert status["phase"] == "Running" and status["remoteStatus"] == "RUNNING"
    pod = remote(simulator, status["podId"])
    assert pod["name"] == status["remoteName"] and pod["name"].startswith(f"{gpupods.ns}-web-")
    assert int(status["podId"]) > 2**53  # kept exact as a string
    price = status["pricePerHour"]
    assert float(price) == pytest.approx(float(pod["singleCardPrice"]) * 2)
    assert status["endpoints"][0]["port"] == 8000 and status["endpoints"][0]["host"]
    assert status["region"] and status["observedGeneration"] == 1
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "True",
        "Synced": "True",
    }
    assert "Running" in gpupods.event_reasons("web")
    assert creates(simulator) == 1
    # printer columns show it to a tenant
    table = gpupods.cp.kubectl("get", "gpod", "-n", gpupods.ns).stdout
    assert "Running" in table and status["podId"] in table and price in table


def test_pause_and_resume(
    gpupods: GpuPods, simulator: SimulatorProcess, operator: OperatorProcess
) -> None:
    gpupods.create("nb")
    pod_id = gpupods.wait_phase("nb", "Running")["podId"]
    gpupods.patch_spec("nb", paused=True)
    gpupods.wait_phase("nb", "Paused")
    assert remote(simulator, pod_id)["status"] == "PAUSED"
    assert gpupods.condition("nb", "Ready")["status"] == "False"
    gpupods.patch_spec("nb", paused=False)
    gpupods.wait_phase("nb", "Running")
    assert remote(simulator, pod_id)["status"] == "RUNNING"
    reasons = gpupods.event_reasons("nb")
    assert "Pausing" in reasons and "Resuming" in reasons
    assert gpupods.status("nb")["podId"] == pod_id and creates(simulator) == 1


def test_created_paused_is_paused_once_running(
    gpupods: GpuPods, simulator: SimulatorProcess, operator: OperatorProcess
) -> None:
    gpupods.create("sleepy", paused=True)
    status = gpupods.wait_phase("sleepy", "Paused", timeout=60)
    assert remote(simulator, status["podId"])["status"] == "PAUSED"


def test_immutable_change_is_refused_by_the_api_server_and_nothing_happens(
    gpupods: GpuPods, simulator: SimulatorProcess, operator: OperatorProcess
) -> None:
    gpupods.create("fixed")
    pod_id = gpupods.wait_phase("fixed", "Running")["podId"]
    result = gpupods.cp.kubectl(
        "patch",
        "gpupod",
        "fixed",
        "-n",
        gpupods.ns,
        "--type",
        "merge",
        "-p",
        json.dumps({"spec": {"gpuCount": 2}}),
        check=False,
    )
    assert result.returncode != 0
    assert "spec.gpuCount" in result.stderr and "updatePolicy" in result.stderr
    assert gpupods.status("fixed")["podId"] == pod_id
    assert remote(simulator, pod_id)["gpuCount"] == 1 and creates(simulator) == 1


def test_recreate_replaces_the_remote_pod(
    gpupods: GpuPods, simulator: SimulatorProcess, operator: OperatorProcess
) -> None:
    gpupods.create("swap", updatePolicy="Recreate")
    old_id = gpupods.wait_phase("swap", "Running")["podId"]
    gpupods.patch_spec("swap", gpuCount=2)
    new = wait_for(
        lambda: (
            (s := gpupods.status("swap")).get("podId") not in (None, old_id)
            and s.get("phase") == "Running"
            and s
        ),
        60,
        "a new remote pod Running",
    )
    assert remote(simulator, old_id)["status"] == "TERMINATED"
    assert remote(simulator, new["podId"])["gpuCount"] == 2
    assert len(live_pods(simulator.pods(), f"{gpupods.ns}-swap-")) == 1
    assert "Recreating" in gpupods.event_reasons("swap")
    assert new["observedGeneration"] == 2


def test_delete_terminates_the_remote_pod_then_releases_the_gpupod(
    gpupods: GpuPods, simulator: SimulatorProcess, operator: OperatorProcess
) -> None:
    gpupods.create("bye")
    pod_id = gpupods.wait_phase("bye", "Running")["podId"]
    gpupods.delete("bye")
    gpupods.wait_gone("bye")
    assert remote(simulator, pod_id)["status"] == "TERMINATED"
    assert not live_pods(simulator.pods())


def test_delete_of_a_never_created_gpupod_is_immediate(
    gpupods: GpuPods, simulator: SimulatorProcess, operator: OperatorProcess
) -> None:
    gpupods.create(
        "ghost", env=[{"name": "X", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}]
    )
    wait_for(
        lambda: gpupods.condition("ghost", "Synced").get("reason") == "SecretNotFound",
        30,
        "Synced=False SecretNotFound",
    )
    gpupods.delete("ghost")
    gpupods.wait_gone("ghost", timeout=20)
    assert creates(simulator) == 0


def test_orphan_leaves_the_remote_pod_and_names_it(
    gpupods: GpuPods, simulator: SimulatorProcess, operator: OperatorProcess
) -> None:
    gpupods.create("keep", deletionPolicy="Orphan")
    pod_id = gpupods.wait_phase("keep", "Running")["podId"]
    gpupods.delete("keep")
    gpupods.wait_gone("keep")
    assert remote(simulator, pod_id)["status"] == "RUNNING"
    orphaned = [e for e in gpupods.events("keep") if e["reason"] == "Orphaned"]
    assert orphaned and pod_id in orphaned[0]["message"]


def test_operator_stopped_during_delete_completes_after_restart(
    gpupods: GpuPods, simulator: SimulatorProcess, operator: OperatorProcess
) -> None:
    gpupods.create("later")
    pod_id = gpupods.wait_phase("later", "Running")["podId"]
    operator.stop()
    gpupods.delete("later")
    obj = gpupods.get("later")
    assert obj is not None and obj["metadata"]["deletionTimestamp"]
    assert "gpupod.dev/finalizer" in obj["metadata"]["finalizers"]
    assert remote(simulator, pod_id)["status"] == "RUNNING"
    operator.start()
    gpupods.wait_gone("later")
    assert remote(simulator, pod_id)["status"] == "TERMINATED"


def test_env_from_secret_reaches_the_remote_pod_and_nowhere_else(
    gpupods: GpuPods, simulator: SimulatorProcess, operator: OperatorProcess
) -> None:
    value = "tok-" + base64.b16encode(b"only-in-the-secret").decode()
    gpupods.cp.request(
        "POST",
        f"/api/v1/namespaces/{gpupods.ns}/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds"},
            "stringData": {"token": value},
        },
    )
    gpupods.create(
        "sec",
        env=[
            {"name": "PLAIN", "value": "visible"},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
        ],
    )
    pod_id = gpupods.wait_phase("sec", "Running")["podId"]
    env = {e["key"]: e["value"] for e in remote(simulator, pod_id)["environmentVars"]}
    assert env == {"PLAIN": "visible", "TOKEN": value}
    obj = json.dumps(gpupods.get("sec"))
    events = json.dumps(gpupods.events())
    log = operator.process.log_path.read_text(errors="replace")
    for where, text in (("GpuPod", obj), ("Events", events), ("operator log", log)):
        assert value not in text, f"the Secret value leaked into the {where}"
        assert simulator.api_key not in text, f"the API key leaked into the {where}"


def test_missing_secret_waits_and_recovers_when_it_appears(
    gpupods: GpuPods, simulator: SimulatorProcess, operator: OperatorProcess
) -> None:
    gpupods.create(
        "wait",
        env=[
            {"name": "T", "valueFrom": {"secretKeyRef": {"name": "late", "key": "k"}}},
        ],
    )
    synced = wait_for(
        lambda: (c := gpupods.condition("wait", "Synced")).get("reason") == "SecretNotFound" and c,
        30,
        "Synced=False SecretNotFound",
    )
    assert synced["status"] == "False" and "late" in synced["message"]
    assert "SecretNotFound" in gpupods.event_reasons("wait")
    assert creates(simulator) == 0
    gpupods.cp.request(
        "POST",
        f"/api/v1/namespaces/{gpupods.ns}/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "late"},
            "stringData": {"k": "v"},
        },
    )
    gpupods.wait_phase("wait", "Running", timeout=60)
    assert creates(simulator) == 1


def test_rejected_create_is_a_permanent_visible_failure_without_retries(
    gpupods: GpuPods, simulator: SimulatorProcess, operator: OperatorProcess
) -> None:
    gpupods.create("typo", gpuType="NVIDIA_RTX_9999_1G")
    synced = wait_for(
        lambda: (c := gpupods.condition("typo", "Synced")).get("reason") == "CreateRejected" and c,
        30,
        "Synced=False CreateRejected",
    )
    assert "gpuType" in synced["message"]
    assert gpupods.status("typo")["phase"] == "Failed"
    assert "CreateRejected" in gpupods.event_reasons("typo")
    # No retry storm: the create is not repeated while nothing changes. Wait for the operator
    # to be demonstrably busy with something else meanwhile (a second GpuPod reaching Running).
    gpupods.create("other")
    gpupods.wait_phase("other", "Running")
    assert simulator.stats()["requests"]["create"] == {"10001": 1, "ok": 1}
    # The fix: switch to Recreate and correct the field in one apply.
    gpupods.patch_spec("typo", updatePolicy="Recreate", gpuType="NVIDIA_RTX_4090_24G")
    gpupods.wait_phase("typo", "Running")


def test_remote_failure_and_out_of_band_deletion_are_reported_not_recreated(
    gpupods: GpuPods, simulator: SimulatorProcess, operator: OperatorProcess
) -> None:
    gpupods.create("sick")
    gpupods.create("vanish")
    sick = gpupods.wait_phase("sick", "Running")["podId"]
    gone = gpupods.wait_phase("vanish", "Running")["podId"]
    simulator.force_status(sick, "FAILED")
    httpx.delete(f"{simulator.url}/_sim/pods/{gone}").raise_for_status()
    gpupods.wait_phase("sick", "Failed", timeout=60)
    gpupods.wait_phase("vanish", "Lost", timeout=60)
    assert gpupods.condition("sick", "Ready")["status"] == "False"
    assert gpupods.condition("vanish", "Ready")["status"] == "False"
    assert "RemotePodFailed" in gpupods.event_reasons("sick")
    assert "RemotePodLost" in gpupods.event_reasons("vanish")
    assert creates(simulator) == 2
    # deleting a GpuPod whose pod is already gone is immediate success
    gpupods.delete("vanish")
    gpupods.wait_gone("vanish", timeout=30)


def test_metrics_are_served(
    gpupods: GpuPods, simulator: SimulatorProcess, metrics_operator: tuple[OperatorProcess, str]
) -> None:
    _, url = metrics_operator
    gpupods.create("m", gpuCount=4)
    gpupods.wait_phase("m", "Running")

    def scraped() -> str | None:
        text = httpx.get(url).text
        return text if 'gpupod_gpus_in_use{gpu_type="NVIDIA_RTX_4090_24G"} 4.0' in text else None

    text = wait_for(scraped, 30, "metrics to show 4 GPUs in use")
    assert 'gpupod_remote_calls_total{operation="create",result="ok"} 1.0' in text
    assert 'gpupod_pods{phase="Running"} 1.0' in text
    assert "gpupod_remote_up 1.0" in text
    assert simulator.api_key not in text
