"""The local control plane is a real Kubernetes API server, and the harness leaves nothing behind.

A tiny CRD of its own (group ``<random>.devenv.test``, kind ``Widget``) proves what only a real
kube-apiserver does: Established conditions, OpenAPI schema and CEL validation, finalizers,
watches and RBAC for a ServiceAccount token. The process tests at the end need no binaries.
"""

from __future__ import annotations

import base64
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client as _client
from kubernetes import config as _config
from kubernetes import watch as _watch

from gpupod_operator.devenv import controlplane as controlplane_module
from gpupod_operator.devenv.controlplane import ApiError, ControlPlane, KubectlError
from gpupod_operator.devenv.operator_process import OperatorProcess
from gpupod_operator.devenv.paths import control_plane_version
from gpupod_operator.devenv.process import (
    ManagedProcess,
    ProcessExitedError,
    free_port,
    pid_is_running,
)
from gpupod_operator.devenv.simulator_process import SimulatorProcess

from .gpupods import wait_for

GROUP = f"g{uuid.uuid4().hex[:8]}.devenv.test"
VERSION = "v1"
PLURAL = "widgets"
CRD_NAME = f"{PLURAL}.{GROUP}"
HOLD = "devenv.test/hold"

# The kubernetes client is only partly typed; treat it as dynamic here.
k8s_client: Any = _client
k8s_config: Any = _config
k8s_watch: Any = _watch


def widget_crd() -> dict[str, Any]:
    spec_schema = {
        "type": "object",
        "required": ["color"],
        "properties": {
            "color": {"type": "string", "enum": ["red", "green", "blue"]},
            "size": {"type": "integer", "minimum": 1, "maximum": 10},
            "owner": {"type": "string"},
        },
        "x-kubernetes-validations": [
            {"rule": "self.color != 'blue' || self.size <= 5", "message": "blue widgets max 5"},
        ],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": PLURAL, "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": spec_schema,
                                "status": {
                                    "type": "object",
                                    "x-kubernetes-preserve-unknown-fields": True,
                                },
                            },
                        }
                    },
                }
            ],
        },
    }


def widget(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Widget",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"color": "red", "size": 1, **spec},
    }


def widgets_path(namespace: str, name: str = "") -> str:
    base = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
    return f"{base}/{name}" if name else base


@pytest.fixture(scope="module")
def widget_crd_applied(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> str:
    directory = tmp_path_factory.mktemp("widget-crd")
    (directory / "widgets.yaml").write_text(yaml.safe_dump(widget_crd()))
    assert control_plane.apply_crds(directory) == [CRD_NAME]
    return CRD_NAME


# --------------------------------------------------------------------------- the API server


def test_version_is_the_pinned_release(control_plane: ControlPlane) -> None:
    version = control_plane.request("GET", "/version")
    expected = control_plane_version(control_plane.bin_dir) or "v1.36.3"
    assert version["gitVersion"] == expected
    assert version["major"] == "1" and not version["gitVersion"].startswith("v0.0.0")


def test_readyz_and_kubeconfig(control_plane: ControlPlane, tmp_path: Path) -> None:
    assert control_plane.get_text("/readyz").strip() == "ok"
    # KUBECONFIG is set for the session: a plain kubectl, as a developer types it, works.
    assert control_plane.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
    namespaces = control_plane.kubectl("get", "namespaces", "-o", "name").stdout.split()
    assert "namespace/default" in namespaces
    # A client certificate identity in system:masters works as well as the token.
    admin_cert = control_plane.client_cert_kubeconfig(
        tmp_path / "cert.kubeconfig", "cert-admin", ["system:masters"]
    )
    who = control_plane.kubectl("auth", "whoami", "-o", "json", kubeconfig=admin_cert).stdout
    assert '"cert-admin"' in who


def test_crd_becomes_established(control_plane: ControlPlane, widget_crd_applied: str) -> None:
    crd = control_plane.request(
        "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{widget_crd_applied}"
    )
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions["Established"] == "True"
    assert conditions["NamesAccepted"] == "True"
    resources = control_plane.request("GET", f"/apis/{GROUP}/{VERSION}")["resources"]
    assert {r["name"] for r in resources} == {PLURAL, f"{PLURAL}/status"}


def test_schema_invalid_objects_are_rejected(
    control_plane: ControlPlane, widget_crd_applied: str, namespace: str
) -> None:
    path = widgets_path(namespace)
    with pytest.raises(ApiError) as wrong_type:
        control_plane.request("POST", path, widget("w1", namespace, size="big"))
    assert wrong_type.value.status == 422
    assert "spec.size" in wrong_type.value.message
    assert "must be of type integer" in wrong_type.value.message

    with pytest.raises(ApiError) as out_of_range:
        control_plane.request("POST", path, widget("w2", namespace, size=11, color="purple"))
    message = out_of_range.value.message
    assert out_of_range.value.status == 422
    assert "should be less than or equal to 10" in message
    assert 'spec.color: Unsupported value: "purple"' in message

    with pytest.raises(ApiError) as cel:
        control_plane.request("POST", path, widget("w3", namespace, color="blue", size=7))
    assert cel.value.status == 422 and "blue widgets max 5" in cel.value.message

    # Through kubectl (field validation Strict): unknown fields are refused too.
    obj = widget("w4", namespace, shape="round")
    rejected = control_plane.kubectl("apply", "-f", "-", input=yaml.safe_dump(obj), check=False)
    assert rejected.returncode != 0
    assert 'unknown field "spec.shape"' in rejected.stderr

    assert control_plane.request("GET", path)["items"] == []  # nothing was stored
    control_plane.request("POST", path, widget("ok", namespace, color="blue", size=5))


def test_finalizer_holds_deletion_until_removed(
    control_plane: ControlPlane, widget_crd_applied: str, namespace: str
) -> None:
    obj = widget("held", namespace)
    obj["metadata"]["finalizers"] = [HOLD]
    path = widgets_path(namespace, "held")
    control_plane.request("POST", widgets_path(namespace), obj)

    control_plane.request("DELETE", path)
    time.sleep(0.5)
    still_there = control_plane.request("GET", path)
    assert still_there["metadata"]["deletionTimestamp"]
    assert still_there["metadata"]["finalizers"] == [HOLD]

    control_plane.request("PATCH", path, {"metadata": {"finalizers": None}})
    with pytest.raises(ApiError) as gone:
        control_plane.request("GET", path)
    assert gone.value.status == 404


def test_watch_delivers_added_modified_deleted(
    control_plane: ControlPlane, widget_crd_applied: str, namespace: str
) -> None:
    api = k8s_client.CustomObjectsApi(
        k8s_config.new_client_from_config(config_file=str(control_plane.admin_kubeconfig))
    )
    start_version = api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)[
        "metadata"
    ]["resourceVersion"]
    events: list[tuple[str, str, int]] = []
    watcher = k8s_watch.Watch()

    def collect() -> None:
        for event in watcher.stream(
            api.list_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            resource_version=start_version,
            timeout_seconds=30,
        ):
            obj = event["object"]
            events.append((event["type"], obj["metadata"]["name"], obj["spec"]["size"]))
            if event["type"] == "DELETED":
                watcher.stop()

    thread = threading.Thread(target=collect, daemon=True)
    thread.start()
    time.sleep(0.3)  # the watch is usually open by now; if not, it replays from start_version
    control_plane.request("POST", widgets_path(namespace), widget("watched", namespace))
    control_plane.request("PATCH", widgets_path(namespace, "watched"), {"spec": {"size": 2}})
    control_plane.request("DELETE", widgets_path(namespace, "watched"))
    thread.join(timeout=30)
    assert not thread.is_alive(), f"watch did not finish; got {events}"
    assert events == [
        ("ADDED", "watched", 1),
        ("MODIFIED", "watched", 2),
        ("DELETED", "watched", 2),
    ]


# --------------------------------------------------------------------------- RBAC


@dataclass
class Restricted:
    token: str
    kubeconfig: Path
    home: str
    other: str


@pytest.fixture
def restricted(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> Restricted:
    """A ServiceAccount whose only right is `get` on configmaps in its own namespace."""
    other = control_plane.create_namespace(f"{namespace}-other"[:63])
    for ns in (namespace, other):
        control_plane.request(
            "POST",
            f"/api/v1/namespaces/{ns}/configmaps",
            {"metadata": {"name": "cfg"}, "data": {"k": "v"}},
        )
    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
    control_plane.request(
        "POST",
        f"{rbac}/roles",
        {
            "metadata": {"name": "get-configmaps"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}],
        },
    )
    control_plane.request(
        "POST",
        f"{rbac}/rolebindings",
        {
            "metadata": {"name": "limited-get-configmaps"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "get-configmaps",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "limited", "namespace": namespace}],
        },
    )
    kubeconfig = control_plane.service_account_kubeconfig(
        namespace, "limited", tmp_path / "limited.kubeconfig"
    )
    token = control_plane.service_account_token(namespace, "limited")
    return Restricted(token, kubeconfig, namespace, other)


def test_restricted_identity_gets_only_what_its_role_grants(
    control_plane: ControlPlane, restricted: Restricted
) -> None:
    home, other, token = restricted.home, restricted.other, restricted.token
    got = control_plane.request("GET", f"/api/v1/namespaces/{home}/configmaps/cfg", token=token)
    assert got["data"] == {"k": "v"}

    refused = {
        "list in its namespace": ("GET", f"/api/v1/namespaces/{home}/configmaps", None),
        "create in its namespace": (
            "POST",
            f"/api/v1/namespaces/{home}/configmaps",
            {"metadata": {"name": "new"}},
        ),
        "update in its namespace": (
            "PATCH",
            f"/api/v1/namespaces/{home}/configmaps/cfg",
            {"data": {"k": "changed"}},
        ),
        "get elsewhere": ("GET", f"/api/v1/namespaces/{other}/configmaps/cfg", None),
        "delete elsewhere": ("DELETE", f"/api/v1/namespaces/{other}/configmaps/cfg", None),
        "secrets": ("GET", f"/api/v1/namespaces/{home}/secrets", None),
    }
    for what, (method, path, body) in refused.items():
        with pytest.raises(ApiError) as denied:
            control_plane.request(method, path, body, token=token)
        assert denied.value.status == 403, what
        assert f"system:serviceaccount:{home}:limited" in denied.value.message, what

    # The same identity through its kubeconfig and kubectl.
    as_sa = restricted.kubeconfig
    assert control_plane.kubectl("get", "configmap", "cfg", "-o", "name", kubeconfig=as_sa).stdout
    can_list = control_plane.kubectl(
        "auth", "can-i", "list", "configmaps", kubeconfig=as_sa, check=False
    )
    assert can_list.stdout.strip() == "no"
    with pytest.raises(KubectlError, match="Forbidden"):
        control_plane.kubectl("get", "configmaps", "-n", other, kubeconfig=as_sa)
    # Nothing was changed by the refused writes.
    cfg = control_plane.request("GET", f"/api/v1/namespaces/{home}/configmaps/cfg")
    assert cfg["data"] == {"k": "v"}


# ------------------------------------------------------------------------ kube-controller-manager

#: Seconds a kube-controller-manager controller may take; each finishes in a few seconds here.
KCM_TIMEOUT = 60.0


def _wait(check: Callable[[], Any], what: str) -> Any:
    return wait_for(check, KCM_TIMEOUT, what, interval=0.05)


def _get_or_none(plane: ControlPlane, path: str) -> dict[str, Any] | None:
    try:
        return plane.request("GET", path)
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise


def _configmap(name: str, owner: dict[str, Any] | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if owner is not None:
        metadata["ownerReferences"] = [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"],
            }
        ]
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": {"k": "v"}}


def test_controller_manager_runs_as_its_own_identity(control_plane: ControlPlane) -> None:
    assert control_plane.controller_manager is not None and control_plane.controller_manager.running
    review = control_plane.kubectl(
        "auth", "whoami", "-o", "json", kubeconfig=control_plane.controller_manager_kubeconfig
    ).stdout
    assert '"username": "system:kube-controller-manager"' in review


def test_deleting_a_namespace_with_objects_completes(
    control_plane: ControlPlane, widget_crd_applied: str
) -> None:
    """The namespace controller empties the namespace (built-in kinds and a custom resource,
    found through discovery) and then removes it."""
    ns = control_plane.create_namespace(f"del-{uuid.uuid4().hex[:8]}")
    control_plane.request("POST", f"/api/v1/namespaces/{ns}/configmaps", _configmap("cfg"))
    control_plane.request(
        "POST",
        f"/api/v1/namespaces/{ns}/secrets",
        {"metadata": {"name": "s"}, "stringData": {"k": "v"}},
    )
    control_plane.request("POST", widgets_path(ns), widget("w", ns))
    control_plane.request("DELETE", f"/api/v1/namespaces/{ns}")
    assert control_plane.request("GET", f"/api/v1/namespaces/{ns}")["status"]["phase"] == (
        "Terminating"
    )
    _wait(
        lambda: _get_or_none(control_plane, f"/api/v1/namespaces/{ns}") is None,
        f"namespace {ns} to be gone",
    )
    # Nothing of it is left behind: a new namespace of the same name starts empty.
    control_plane.create_namespace(ns)
    for gone in ("configmaps/cfg", "secrets/s"):
        assert _get_or_none(control_plane, f"/api/v1/namespaces/{ns}/{gone}") is None, gone
    assert _get_or_none(control_plane, widgets_path(ns, "w")) is None
    control_plane.request("DELETE", f"/api/v1/namespaces/{ns}")


def test_garbage_collection_deletes_dependents_of_a_deleted_owner(
    control_plane: ControlPlane, namespace: str
) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    owner = control_plane.request("POST", base, _configmap("owner"))
    control_plane.request("POST", base, _configmap("dependent", owner))
    control_plane.request("POST", base, _configmap("bystander"))
    control_plane.request("DELETE", f"{base}/owner")
    _wait(lambda: _get_or_none(control_plane, f"{base}/dependent") is None, "the dependent gone")
    assert _get_or_none(control_plane, f"{base}/bystander") is not None


def test_garbage_collection_deletes_an_object_whose_owner_is_already_gone(
    control_plane: ControlPlane, namespace: str
) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    owner = control_plane.request("POST", base, _configmap("short-lived"))
    control_plane.request("DELETE", f"{base}/short-lived")
    _wait(lambda: _get_or_none(control_plane, f"{base}/short-lived") is None, "the owner gone")
    control_plane.request("POST", base, _configmap("orphan", owner))
    _wait(lambda: _get_or_none(control_plane, f"{base}/orphan") is None, "the orphan collected")


def test_a_service_account_gets_a_token(control_plane: ControlPlane, namespace: str) -> None:
    """The serviceaccount controller makes `default` in every namespace, the root CA publisher
    its kube-root-ca.crt, and the tokens controller fills a service-account-token Secret with
    a token the apiserver accepts as that ServiceAccount."""
    api = f"/api/v1/namespaces/{namespace}"
    _wait(lambda: _get_or_none(control_plane, f"{api}/serviceaccounts/default"), "default SA")
    root_ca = _wait(
        lambda: _get_or_none(control_plane, f"{api}/configmaps/kube-root-ca.crt"),
        "kube-root-ca.crt",
    )
    assert root_ca["data"]["ca.crt"] == control_plane.ca_path.read_text()
    control_plane.ensure_service_account(namespace, "robot")
    control_plane.request(
        "POST",
        f"{api}/secrets",
        {
            "metadata": {
                "name": "robot-token",
                "annotations": {"kubernetes.io/service-account.name": "robot"},
            },
            "type": "kubernetes.io/service-account-token",
        },
    )
    secret = _wait(
        lambda: (
            (s := control_plane.request("GET", f"{api}/secrets/robot-token"))
            and (s.get("data") or {}).get("token")
            and s
        ),
        "the tokens controller to fill robot-token",
    )
    token = base64.b64decode(secret["data"]["token"]).decode()
    assert base64.b64decode(secret["data"]["namespace"]).decode() == namespace
    review = control_plane.request(
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        token=token,
    )
    assert review["status"]["userInfo"]["username"] == f"system:serviceaccount:{namespace}:robot"


# --------------------------------------------------------------------------- lifecycle


def _processes_gone(pids: list[int]) -> bool:
    deadline = time.monotonic() + 5
    while any(pid_is_running(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_stop_leaves_no_process(control_plane: ControlPlane, tmp_path: Path) -> None:
    # A second, independent control plane (the session one keeps running).
    plane = ControlPlane(tmp_path / "second", bin_dir=control_plane.bin_dir).start()
    pids = [p.pid for p in plane.processes]
    assert len(pids) == 3 and all(pid_is_running(pid) for pid in pids)
    assert plane.request("GET", "/api/v1/namespaces/default")["metadata"]["name"] == "default"
    plane.stop()
    assert _processes_gone(pids), [pid for pid in pids if pid_is_running(pid)]
    assert not plane.etcd_data_dir.exists()
    plane.stop()  # idempotent


def test_failed_start_leaves_no_process(control_plane: ControlPlane, tmp_path: Path) -> None:
    plane = ControlPlane(
        tmp_path / "broken",
        bin_dir=control_plane.bin_dir,
        extra_apiserver_args=["--no-such-flag=1"],
    )
    with pytest.raises(ProcessExitedError, match="unknown flag: --no-such-flag"):
        plane.start()
    assert plane.etcd is not None and plane.apiserver is not None
    assert _processes_gone([plane.etcd.pid, plane.apiserver.pid])


def test_start_retries_when_a_port_is_taken(
    control_plane: ControlPlane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken])  # etcd's client port is taken by the time etcd binds it

        def racy_free_port(host: str = "127.0.0.1") -> int:
            return next(ports, None) or free_port(host)

        monkeypatch.setattr(controlplane_module, "free_port", racy_free_port)
        plane = ControlPlane(tmp_path / "racy", bin_dir=control_plane.bin_dir)
        try:
            plane.start()
            assert plane.etcd_url != f"http://127.0.0.1:{taken}"
            assert plane.etcd is not None
            assert "address already in use" in plane.etcd.log_text(since_start=False)
        finally:
            plane.stop()


# --------------------------------------------------------------------------- ManagedProcess

PYTHON = sys.executable


def _python(name: str, code: str, tmp_path: Path) -> ManagedProcess:
    return ManagedProcess(name, [PYTHON, "-u", "-c", code], log_path=tmp_path / f"{name}.log")


def _log_says(process: ManagedProcess, text: str) -> bool:
    return text in process.log_text()


def test_stop_kills_a_child_that_ignores_sigterm(tmp_path: Path) -> None:
    child = _python(
        "stubborn",
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready')\n"
        "time.sleep(600)\n",
        tmp_path,
    ).start()
    child.wait_ready(lambda: _log_says(child, "ready"), timeout=10)
    started = time.monotonic()
    child.stop(grace=1.0)
    took = time.monotonic() - started
    assert not child.running and not pid_is_running(child.pid)
    assert child.returncode == -9  # SIGKILL, after the grace period
    assert 1.0 <= took < 5.0


def test_stop_cleans_up_the_whole_process_group(tmp_path: Path) -> None:
    # The child starts a grandchild that ignores SIGTERM, then exits itself on SIGTERM:
    # stop() must not return while the grandchild is still there.
    parent = _python(
        "parent",
        "import subprocess, sys, time\n"
        "g = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
        "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)'])\n"
        "print('grandchild', g.pid)\n"
        "time.sleep(600)\n",
        tmp_path,
    ).start()
    parent.wait_ready(lambda: _log_says(parent, "grandchild "), timeout=10)
    grandchild = int(parent.log_text().split("grandchild ")[1].split()[0])
    assert pid_is_running(grandchild)
    parent.stop(grace=1.0)
    assert not pid_is_running(parent.pid)
    assert not pid_is_running(grandchild)


def test_stop_reaches_what_an_exited_leader_left_behind(tmp_path: Path) -> None:
    leader = _python(
        "leader",
        "import subprocess, sys\n"
        "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "print('grandchild', g.pid)\n",
        tmp_path,
    ).start()
    assert leader.wait(timeout=10)
    grandchild = int(leader.log_text().split("grandchild ")[1].split()[0])
    assert pid_is_running(grandchild)
    leader.stop(grace=1.0)
    assert not pid_is_running(grandchild)


def test_wait_ready_fails_fast_with_the_log_tail(tmp_path: Path) -> None:
    child = _python("crasher", "print('config is broken'); raise SystemExit(3)", tmp_path).start()
    started = time.monotonic()
    with pytest.raises(ProcessExitedError) as exited:
        child.wait_ready(lambda: False, timeout=60)
    assert time.monotonic() - started < 10
    assert exited.value.returncode == 3
    assert "config is broken" in str(exited.value)


def test_kill_is_immediate(tmp_path: Path) -> None:
    child = _python("victim", "import time; print('up'); time.sleep(600)", tmp_path).start()
    child.wait_ready(lambda: _log_says(child, "up"), timeout=10)
    child.kill()
    assert child.returncode == -9 and not pid_is_running(child.pid)


def test_secrets_are_redacted(tmp_path: Path) -> None:
    secret = "s3cret-" + uuid.uuid4().hex
    child = ManagedProcess(
        "leaky",
        [PYTHON, "-c", "import sys; print('key is', sys.argv[1])", secret],
        log_path=tmp_path / "leaky.log",
        secrets=[secret],
    ).start()
    assert child.wait(timeout=10)
    assert secret in child.log_path.read_text()  # the child printed it ...
    assert secret not in child.log_tail() + child.log_text()  # ... we never show it
    assert secret not in repr(child) + child.command_line
    sim = SimulatorProcess(api_key=secret)
    assert secret not in repr(sim)


# --------------------------------------------------------------------------- simulator, operator


def test_simulator_process_lifecycle(simulator: SimulatorProcess) -> None:
    url, first_pid = simulator.url, simulator.pid
    assert simulator.stats() and simulator.pods() == []
    simulator.set_faults(["create:500:0.5"])
    assert simulator.faults() == ["create:500:0.5"]

    simulator.kill()
    assert not simulator.running and not pid_is_running(first_pid)
    simulator.restart()  # same port, new process, faults re-applied
    assert simulator.url == url and simulator.pid != first_pid
    assert simulator.faults() == ["create:500:0.5"]
    simulator.set_faults([])
    assert simulator.faults() == []

    simulator.suspend()  # an outage that keeps state: connections hang
    with pytest.raises(httpx.TimeoutException):
        httpx.get(f"{url}/_sim/stats", timeout=0.5)
    simulator.resume()
    assert httpx.get(f"{url}/_sim/stats", timeout=5).status_code == 200


def test_operator_process_lifecycle(
    start_operator: Callable[..., OperatorProcess], namespace: str
) -> None:
    operator = start_operator()
    assert httpx.get(operator.liveness_url, timeout=5).status_code == 200
    assert f"-n {namespace}" in operator.process.command_line
    first = operator.pid
    operator.kill()
    assert not pid_is_running(first)
    operator.restart()
    assert operator.pid != first and operator.running
    assert httpx.get(operator.liveness_url, timeout=5).status_code == 200
