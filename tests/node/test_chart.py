"""What a platform engineer does with the chart, on the local node, unpatched: `helm install`
with the built image, a GpuPod to Running through the operator's in-cluster service-account
login, `kubectl delete pod` of the operator, `helm upgrade`, `helm uninstall`."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpupod_operator.devenv.controlplane import ControlPlane
from gpupod_operator.devenv.node import LocalNode
from gpupod_operator.devenv.simulator_process import SimulatorProcess

from ..e2e.gpupods import GpuPods, condition, manifest, wait_for
from ..tools import built_helm
from .prometheus import Prometheus, assert_every_panel_has_data

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "gpupod-operator"
RELEASE, RELEASE_NS = "gpo", "gpupod-system"
SELECTOR = f"app.kubernetes.io/instance={RELEASE}"


@pytest.fixture(scope="module")
def helm() -> Path:
    return built_helm()


@pytest.fixture(scope="module")
def simulator(
    node: tuple[ControlPlane, LocalNode], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SimulatorProcess]:
    """On the bridge's host address: what Pods reach (GPUPOD_NODE_YOTTA_API_URL in dev-up)."""
    _plane, local = node
    log = tmp_path_factory.mktemp("chart") / "simulator.log"
    sim = SimulatorProcess(host=local.gateway, log_path=log).start()
    yield sim
    sim.stop()


def run_helm(helm: Path, plane: ControlPlane, *args: str) -> str:
    result = subprocess.run(
        [str(helm), f"--kubeconfig={plane.admin_kubeconfig}", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stderr}"
    return result.stdout


def operator_pods(plane: ControlPlane) -> list[dict[str, Any]]:
    path = f"/api/v1/namespaces/{RELEASE_NS}/pods?labelSelector={SELECTOR}"
    return list(plane.request("GET", path)["items"])


def ready_pod(plane: ControlPlane, other_than: str = "") -> dict[str, Any] | None:
    """The one operator pod, Ready, not ``other_than`` (by name), nothing else terminating."""
    pods = operator_pods(plane)
    if len(pods) != 1 or pods[0]["metadata"]["name"] == other_than:
        return None
    pod = pods[0]
    return pod if condition(pod, "Ready").get("status") == "True" else None


def available(plane: ControlPlane) -> bool:
    deploy = plane.request(
        "GET", f"/apis/apps/v1/namespaces/{RELEASE_NS}/deployments/{RELEASE}-gpupod-operator"
    )
    return (
        condition(deploy, "Available").get("status") == "True"
        and deploy["status"].get("readyReplicas") == 1
    )


# What the apiserver answers for a few seconds after the chart's admission policies appear
# (README, Install): the finalizer policy's schema not loaded yet (it reads /openapi/v3 every
# 5 s; failurePolicy Ignore does not cover this refusal), the tenant policy's paramKind not
# watched yet.
SETTLING = ("There can be a delay", "not yet synced to use for admission")


def admitted(plane: ControlPlane, namespace: str, manifest_text: str) -> bool | None:
    """Whether a server-side dry run of the create is admitted with the finalizer the chart's
    MutatingAdmissionPolicy sets (so the policy is in effect, not merely not loaded yet). Any
    refusal but the settling ones fails the test."""
    result = plane.kubectl(
        "apply",
        "--dry-run=server",
        "-o",
        "jsonpath={.metadata.finalizers}",
        "-n",
        namespace,
        "-f",
        "-",
        input=manifest_text,
        check=False,
    )
    if result.returncode != 0:
        assert any(s in result.stderr for s in SETTLING), result.stderr
        return None
    return "gpupod.dev/finalizer" in result.stdout or None


def creates(sim: SimulatorProcess) -> int:
    return sum(sim.stats()["requests"].get("create", {}).values())


def check_dashboard(
    plane: ControlPlane, pod: dict[str, Any], gpupods: GpuPods, run_dir: Path
) -> None:
    """A real Prometheus scrapes the operator pod's metrics port; every panel of the installed
    dashboard ConfigMap gets a series. A GpuPod whose Secret is missing makes the reconcile
    error panel's series exist (counters with labels appear on their first increment)."""
    broken = manifest("needs-secret")
    broken["spec"]["env"] = [
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "token"}}}
    ]
    gpupods.apply(broken)
    configmap = plane.request(
        "GET", f"/api/v1/namespaces/{RELEASE_NS}/configmaps/{RELEASE}-gpupod-operator-dashboard"
    )
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    prometheus = Prometheus(run_dir, f"{pod['status']['podIP']}:9090").start()
    try:
        found = assert_every_panel_has_data(prometheus, configmap["data"]["gpupod-operator.json"])
    finally:
        prometheus.stop()
    assert len(found) >= 10, found
    gpupods.delete("needs-secret")
    gpupods.wait_gone("needs-secret", timeout=60)


def test_install_run_restart_upgrade_uninstall(
    node: tuple[ControlPlane, LocalNode], helm: Path, simulator: SimulatorProcess, tmp_path: Path
) -> None:
    plane, _local = node
    plane.create_namespace(RELEASE_NS)
    plane.request(
        "POST",
        f"/api/v1/namespaces/{RELEASE_NS}/secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "yotta-api-key"},
            "stringData": {"api-key": simulator.api_key},
        },
    )
    # helm --wait: until the Deployment is Available, which the readinessProbe makes mean
    # "logged in and watching".
    install = ["--set", "image.pullPolicy=Never", "--set", f"apiUrl={simulator.url}"]
    install += ["--set", "fastSyncInterval=1", "--set", "grafanaDashboard.enabled=true"]
    install += ["--wait", "--timeout=3m"]
    run_helm(helm, plane, "install", RELEASE, str(CHART), "-n", RELEASE_NS, *install)
    assert available(plane)
    first = wait_for(lambda: ready_pod(plane), 60, "the operator pod Ready")
    spec = first["spec"]
    # Unpatched: the chart's own ServiceAccount with its mounted token, no host network.
    assert spec["serviceAccountName"] == f"{RELEASE}-gpupod-operator"
    assert not spec.get("hostNetwork")
    assert any("projected" in v for v in spec["volumes"]), spec["volumes"]
    env = {e["name"] for e in spec["containers"][0].get("env", [])}
    assert "KUBECONFIG" not in env

    team = plane.create_namespace("team")
    gpupods = GpuPods(plane, team)
    example = (REPO / "examples" / "gpupod.yaml").read_text()
    wait_for(lambda: admitted(plane, team, example), 30, "a GpuPod create admitted")
    plane.kubectl("apply", "-n", team, "-f", "-", input=example)
    gpupods.wait_phase("hello-gpu", "Running", timeout=90)
    assert creates(simulator) == 1
    check_dashboard(plane, first, gpupods, tmp_path)

    # kubectl delete pod: the Deployment starts another one, which resumes without re-creating.
    old = first["metadata"]["name"]
    plane.kubectl("delete", "pod", "-n", RELEASE_NS, old, "--wait=false")
    second = wait_for(lambda: ready_pod(plane, other_than=old), 120, "a new operator pod Ready")
    assert second["status"]["containerStatuses"][0]["restartCount"] == 0
    wait_for(lambda: available(plane) or None, 60, "the Deployment Available again")
    assert gpupods.status("hello-gpu")["phase"] == "Running"
    remote = [p for p in simulator.pods() if p.get("status") != "TERMINATED"]
    assert len(remote) == 1 and creates(simulator) == 1, remote

    # helm upgrade with a changed value rolls the pod.
    upgrade = ["--reuse-values", "--set", "logLevel=DEBUG", "--wait", "--timeout=3m"]
    run_helm(helm, plane, "upgrade", RELEASE, str(CHART), "-n", RELEASE_NS, *upgrade)
    third = wait_for(
        lambda: ready_pod(plane, other_than=second["metadata"]["name"]), 120, "the rolled pod"
    )
    assert "--log-level=DEBUG" in third["spec"]["containers"][0]["args"]
    gpupods.wait_phase("hello-gpu", "Running", timeout=30)
    assert creates(simulator) == 1

    # The GpuPod's finalizer needs the operator: delete it before the operator goes.
    gpupods.delete("hello-gpu")
    gpupods.wait_gone("hello-gpu", timeout=90)
    assert all(p.get("status") == "TERMINATED" for p in simulator.pods())

    run_helm(helm, plane, "uninstall", RELEASE, "-n", RELEASE_NS, "--wait", "--timeout=2m")
    # The pod goes by garbage collection after its ReplicaSet: a SIGTERM, then its exit.
    wait_for(lambda: not operator_pods(plane) or None, 90, "the operator pod gone")
    left = plane.kubectl(
        "get",
        "all,serviceaccounts,secrets,configmaps,roles,rolebindings,leases,"
        "poddisruptionbudgets,networkpolicies,clusterroles,clusterrolebindings",
        "-A",
        "-l",
        SELECTOR,
        "-o",
        "json",
    ).stdout
    assert json.loads(left)["items"] == []
    # Left: the operator's Lease, runtime state helm never owned. It is NOT released: helm
    # deletes the RBAC objects with the Deployment, so the last leader's release on SIGTERM is
    # refused; it expires after leaseDurationSeconds (a reinstall waits that long to lead).
