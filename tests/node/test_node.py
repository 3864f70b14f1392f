"""The opt-in local node (``NODE=1 make dev-up``): containerd, kubelet, kube-scheduler and the
CNI bridge next to a real control plane (with kube-controller-manager), for real.

`make node-e2e` runs this module; it is not part of `make test` (it needs root, containerd, runc,
the CNI plugins and buildah from Debian, kubelet + kube-scheduler from `NODE=1 make
control-plane`, and it changes host state that the teardown restores). One node per machine:
kubelet's ports 10248/10250 and the bridge name are fixed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpupod_operator.devenv.controlplane import ControlPlane
from gpupod_operator.devenv.node import BRIDGE, SYSCTLS, LocalNode
from gpupod_operator.devenv.simulator_process import SimulatorProcess

from ..e2e.gpupods import wait_for

SERVER_POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "http"},
    "spec": {
        "terminationGracePeriodSeconds": 1,
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [
            {
                "name": "http",
                "image": "gpupod-operator:0.1.0",
                "imagePullPolicy": "Never",
                "command": ["python3", "-m", "http.server", "8080", "-d", "/tmp"],
                "securityContext": {
                    "readOnlyRootFilesystem": True,
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                },
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
            }
        ],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    },
}


def _sysctls() -> dict[str, str]:
    return {k: (Path("/proc/sys") / k).read_text().strip() for k in SYSCTLS}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ControlPlane, LocalNode]]:
    missing = [t for t in ("containerd", "runc", "ctr", "buildah") if shutil.which(t) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: apt-get install containerd runc buildah")
    built = subprocess.run(["bash", "hack/build-image.sh"], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-3000:]
    before = _sysctls()
    run_dir = tmp_path_factory.mktemp("node")
    plane = ControlPlane(run_dir / "cp").start()
    local = LocalNode(run_dir / "node", plane, log_dir=run_dir / "logs")
    try:
        local.start()
        yield plane, local
    finally:
        try:
            local.stop()
        finally:
            plane.stop()
        assert not any(p.running for p in local.processes)
        shims = subprocess.run(["pgrep", "-f", str(local.socket)], capture_output=True, text=True)
        assert not shims.stdout.strip(), f"shims left: {shims.stdout}"
        assert str(run_dir) not in Path("/proc/self/mounts").read_text()
        gone = subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True)
        assert gone.returncode != 0, f"{BRIDGE} left"
        assert _sysctls() == before


def _pod(plane: ControlPlane, namespace: str, body: dict[str, Any]) -> str:
    plane.request("POST", f"/api/v1/namespaces/{namespace}/pods", body)
    return str(body["metadata"]["name"])


def _get_pod(plane: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    return plane.request("GET", f"/api/v1/namespaces/{namespace}/pods/{name}")


def _run_to_completion(
    plane: ControlPlane, namespace: str, body: dict[str, Any]
) -> tuple[str, str]:
    """Create a Pod with restartPolicy Never; its final phase and its logs."""
    name = _pod(plane, namespace, body)

    def finished() -> str | None:
        phase = _get_pod(plane, namespace, name)["status"].get("phase")
        return str(phase) if phase in ("Succeeded", "Failed") else None

    phase = wait_for(finished, 90, f"pod {name} to finish")
    return phase, plane.kubectl("logs", "-n", namespace, name).stdout


def test_node_is_ready_and_untainted(node: tuple[ControlPlane, LocalNode]) -> None:
    plane, local = node
    got = plane.request("GET", f"/api/v1/nodes/{local.name}")
    ready = {c["type"]: c["status"] for c in got["status"]["conditions"]}["Ready"]
    assert ready == "True" and not got["spec"].get("taints")


def test_a_scheduled_pod_serves_and_passes_its_probe(node: tuple[ControlPlane, LocalNode]) -> None:
    plane, local = node
    ns = plane.create_namespace("node-http")
    name = _pod(plane, ns, json.loads(json.dumps(SERVER_POD)))

    def ready() -> dict[str, Any] | None:
        pod = _get_pod(plane, ns, name)
        conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
        return pod if conditions.get("Ready") == "True" else None

    pod = wait_for(ready, 90, "the http pod Ready")
    assert pod["spec"]["nodeName"] == local.name  # placed by kube-scheduler
    with urllib.request.urlopen(f"http://{pod['status']['podIP']}:8080/", timeout=5) as answer:
        assert answer.status == 200
    logs = plane.kubectl("logs", "-n", ns, name).stdout
    assert '"GET / HTTP/1.1" 200' in logs


def test_the_operator_image_runs_its_entrypoint(node: tuple[ControlPlane, LocalNode]) -> None:
    plane, _local = node
    ns = plane.create_namespace("node-help")
    body = json.loads(json.dumps(SERVER_POD))
    body["metadata"]["name"] = "help"
    body["spec"]["restartPolicy"] = "Never"
    container = body["spec"]["containers"][0]
    del container["command"], container["readinessProbe"]
    container["args"] = ["--help"]
    phase, logs = _run_to_completion(plane, ns, body)
    assert phase == "Succeeded", logs
    assert "usage: gpupod-operator" in logs


def test_pods_reach_a_simulator_on_the_bridge_address(
    node: tuple[ControlPlane, LocalNode], tmp_path: Path
) -> None:
    """What `NODE=1 make dev-up` exports as GPUPOD_NODE_YOTTA_API_URL: the simulator listening
    on the bridge's host address, reached from a Pod (and from the host)."""
    plane, local = node
    simulator = SimulatorProcess(host=local.gateway, log_path=tmp_path / "simulator.log")
    try:
        simulator.start()
        with urllib.request.urlopen(f"{simulator.url}/_sim/stats", timeout=5) as answer:
            assert answer.status == 200
        ns = plane.create_namespace("node-sim")
        body = json.loads(json.dumps(SERVER_POD))
        body["metadata"]["name"] = "client"
        body["spec"]["restartPolicy"] = "Never"
        container = body["spec"]["containers"][0]
        del container["readinessProbe"]
        container["command"] = [
            "python3",
            "-c",
            "import sys, urllib.request as u; "
            "print(u.urlopen(sys.argv[1] + '/_sim/stats', timeout=10).status)",
            simulator.url,
        ]
        phase, logs = _run_to_completion(plane, ns, body)
        assert phase == "Succeeded", logs
        assert logs.strip() == "200"
    finally:
        simulator.stop()
