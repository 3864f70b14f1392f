"""The opt-in local node (``NODE=1 make dev-up``): containerd, kubelet, kube-scheduler and the
CNI bridge next to a real control plane (with kube-controller-manager), for real.

`make node-e2e` (part of `make test`) runs this module. It needs root (containerd, runc, the CNI
plugins and buildah from Debian, which it installs when missing; kubelet + kube-scheduler built
by `NODE=1 make control-plane`), and it changes host state that the teardown restores. One node
per machine: kubelet's ports 10248/10250 and the bridge name are fixed.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from gpupod_operator.devenv.controlplane import ControlPlane
from gpupod_operator.devenv.node import LocalNode
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


def _one_shot(name: str, **container: Any) -> dict[str, Any]:
    """SERVER_POD as a run-to-completion Pod: no probe, restartPolicy Never, ``container``
    fields (command or args) instead of the server's command."""
    body: dict[str, Any] = json.loads(json.dumps(SERVER_POD))
    body["metadata"]["name"] = name
    body["spec"]["restartPolicy"] = "Never"
    spec = body["spec"]["containers"][0]
    del spec["command"], spec["readinessProbe"]
    spec.update(container)
    return body


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
    phase, logs = _run_to_completion(plane, ns, _one_shot("help", args=["--help"]))
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
        command = [
            "python3",
            "-c",
            "import sys, urllib.request as u; "
            "print(u.urlopen(sys.argv[1] + '/_sim/stats', timeout=10).status)",
            simulator.url,
        ]
        phase, logs = _run_to_completion(plane, ns, _one_shot("client", command=command))
        assert phase == "Succeeded", logs
        assert logs.strip() == "200"
    finally:
        simulator.stop()


def _service_route_facts(plane: ControlPlane, namespace: str) -> str:
    """What a failed in-cluster login is checked against: whether the Pod's CA is this
    apiserver's, who listens on the port the Service is DNAT'ed to, and the nat table."""
    root_ca = plane.request("GET", f"/api/v1/namespaces/{namespace}/configmaps/kube-root-ca.crt")
    same_ca = root_ca["data"]["ca.crt"].strip() == plane.ca_path.read_text().strip()
    port = urlparse(plane.server).port
    listeners = _run_text("ss", "-ltnpH", f"sport = :{port}")
    return (
        f"kube-root-ca.crt is the apiserver's CA: {same_ca}\nlistening on {port}: {listeners}\n"
        + (_run_text("iptables", "-t", "nat", "-S"))
    )


def _run_text(*argv: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    return result.stdout + result.stderr


LOGIN = """
import json, os, ssl, urllib.request as u
d = "/var/run/secrets/kubernetes.io/serviceaccount/"
host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
review = b'{"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}'
request = u.Request(
    f"https://{host}:{port}/apis/authentication.k8s.io/v1/selfsubjectreviews", data=review,
    headers={"Authorization": "Bearer " + open(d + "token").read(),
             "Content-Type": "application/json"})
answer = u.urlopen(request, context=ssl.create_default_context(cafile=d + "ca.crt"), timeout=10)
print(host, port, json.load(answer)["status"]["userInfo"]["username"])
"""


def test_a_pod_logs_in_with_its_service_account_through_the_kubernetes_service(
    node: tuple[ControlPlane, LocalNode],
) -> None:
    """What every in-cluster client does: the mounted token and CA, KUBERNETES_SERVICE_HOST
    (10.0.0.1, the Service's ClusterIP, verified against the serving cert) and port 443."""
    plane, _local = node
    ns = plane.create_namespace("node-login")
    command = ["python3", "-c", LOGIN]
    phase, logs = _run_to_completion(plane, ns, _one_shot("login", command=command))
    assert phase == "Succeeded", f"{logs}\n{_service_route_facts(plane, ns)}"
    assert logs.split() == ["10.0.0.1", "443", f"system:serviceaccount:{ns}:default"]
