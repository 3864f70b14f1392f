"""Accounts end to end: YottaAccount / ClusterYottaAccount, resolution, the pinned account, key
rotation and namespace deletion, on the real apiserver + kube-controller-manager, the real
operator process and a simulator with several accounts (one per `--api-key`, DESIGN §2.7).

Simulator accounts: 0 is the operator's own key (`simulator.api_key`), 1..3 are KEYS[0..2].
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpupod_operator.devenv.controlplane import ApiError, ControlPlane
from gpupod_operator.devenv.paths import kubectl_path
from gpupod_operator.devenv.simulator_process import SimulatorProcess, new_api_key
from gpupod_operator.domain.accounts import fingerprint

from .conftest import FAST_SIMULATOR_ARGS, REPO_ROOT, StartOperator, _attach_logs
from .gpupods import GpuPods, live_pods, wait_for

API = "/apis/gpupod.dev/v1alpha1"
IN_USE = "gpupod.dev/in-use"
KEYS = [new_api_key(f"tenant{i}") for i in range(3)]
FAST = ["--sync-interval", "2", "--fast-sync-interval", "0.5"]
TEAMS = ("team-a", "team-b")  # the README's namespaces


@pytest.fixture
def simulator(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[SimulatorProcess]:
    """This module's simulator: four accounts (the operator's key, then KEYS)."""
    sim = SimulatorProcess(
        args=FAST_SIMULATOR_ARGS, extra_api_keys=KEYS, log_path=tmp_path / "simulator.log"
    )
    try:
        sim.start()
        _attach_logs(request, "simulator", sim.process)
        yield sim
    finally:
        sim.stop()


def _ns(cp: ControlPlane, prefix: str, labels: dict[str, str] | None = None) -> str:
    return cp.create_namespace(f"t-acc-{prefix}-{uuid.uuid4().hex[:6]}", labels)


def secret(cp: ControlPlane, ns: str, name: str, key: str) -> None:
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}}
    cp.request("POST", f"/api/v1/namespaces/{ns}/secrets", {**body, "stringData": {"api-key": key}})


def rotate(cp: ControlPlane, ns: str, name: str, key: str) -> None:
    data = {"api-key": base64.b64encode(key.encode()).decode()}
    cp.request("PATCH", f"/api/v1/namespaces/{ns}/secrets/{name}", {"data": data})


def yotta_account(cp: ControlPlane, ns: str, name: str, secret_name: str) -> None:
    body = {
        "apiVersion": "gpupod.dev/v1alpha1",
        "kind": "YottaAccount",
        "metadata": {"name": name},
        "spec": {"apiKeySecretRef": {"name": secret_name, "key": "api-key"}},
    }
    cp.request("POST", f"{API}/namespaces/{ns}/yottaaccounts", body)


def cluster_account(cp: ControlPlane, name: str, allowed: dict[str, Any] | None) -> str:
    spec: dict[str, Any] = {"apiKeySecretRef": {"name": name, "key": "api-key"}}
    if allowed is not None:
        spec["allowedNamespaces"] = allowed
    body = {
        "apiVersion": "gpupod.dev/v1alpha1",
        "kind": "ClusterYottaAccount",
        "metadata": {"name": name},
        "spec": spec,
    }
    cp.request("POST", f"{API}/clusteryottaaccounts", body)
    return name


def get(cp: ControlPlane, path: str) -> dict[str, Any] | None:
    try:
        return cp.request("GET", path)
    except ApiError as e:
        if e.status == 404:
            return None
        raise


def finalizers(cp: ControlPlane, path: str) -> list[str]:
    return list(((get(cp, path) or {}).get("metadata") or {}).get("finalizers") or [])


def remote(sim: SimulatorProcess, name_part: str) -> list[dict[str, Any]]:
    """Live remote pods whose name contains `name_part` (namespace-name-uid)."""
    return [p for p in live_pods(sim.pods()) if name_part in str(p.get("name"))]


def account_of(sim: SimulatorProcess, ns: str, name: str) -> list[int]:
    return [int(p["account"]) for p in remote(sim, f"{ns}-{name}-")]


def synced_reason(pods: GpuPods, name: str) -> str | None:
    c = pods.condition(name, "Synced")
    return c.get("reason") if c.get("status") == "False" else None


def creates(sim: SimulatorProcess) -> int:
    return sum((sim.stats()["requests"].get("create") or {}).values())


# --------------------------------------------------------------------------- tests


def test_two_namespaces_two_accounts_each_pod_in_its_own_account(
    control_plane: ControlPlane, simulator: SimulatorProcess, start_operator: StartOperator
) -> None:
    cp = control_plane
    ns_a, ns_b = _ns(cp, "a"), _ns(cp, "b")
    secret(cp, ns_a, "yotta", KEYS[0])
    yotta_account(cp, ns_a, "team", "yotta")  # named: GpuPods use it by accountRef
    secret(cp, ns_b, "yotta", KEYS[1])
    yotta_account(cp, ns_b, "default", "yotta")  # the namespace default: no accountRef needed
    start_operator([ns_a, ns_b], args=FAST)
    a, b = GpuPods(cp, ns_a), GpuPods(cp, ns_b)
    a.create("gpu", accountRef={"kind": "YottaAccount", "name": "team"})
    b.create("gpu")
    status_a, status_b = a.wait_phase("gpu", "Running"), b.wait_phase("gpu", "Running")

    assert account_of(simulator, ns_a, "gpu") == [1]
    assert account_of(simulator, ns_b, "gpu") == [2]
    assert status_a["account"] == {
        "kind": "YottaAccount",
        "name": "team",
        "keyFingerprint": fingerprint(KEYS[0]),
    }
    assert status_b["account"]["name"] == "default"
    assert status_b["account"]["keyFingerprint"] == fingerprint(KEYS[1])
    assert KEYS[0] not in json.dumps(a.get("gpu")) and KEYS[1] not in json.dumps(b.get("gpu"))
    # The account and its Secret are held while the GpuPod uses them; kubectl shows it.
    account_path = f"{API}/namespaces/{ns_a}/yottaaccounts/team"
    assert IN_USE in finalizers(cp, account_path)
    assert IN_USE in finalizers(cp, f"/api/v1/namespaces/{ns_a}/secrets/yotta")
    shown = cp.kubectl("get", "yottaaccounts", "-n", ns_a, "-o", "wide").stdout
    assert "team" in shown and "True" in shown and fingerprint(KEYS[0]) in shown, shown
    account = get(cp, account_path) or {}
    assert account["status"]["gpuPods"] == 1

    a.delete("gpu")
    b.delete("gpu")
    a.wait_gone("gpu")
    b.wait_gone("gpu")
    assert remote(simulator, ns_a) == [] and remote(simulator, ns_b) == []
    # The last GpuPod gone: nothing holds the account or its Secret any more.
    wait_for(lambda: IN_USE not in finalizers(cp, account_path), 10, "in-use finalizer removed")
    assert IN_USE not in finalizers(cp, f"/api/v1/namespaces/{ns_a}/secrets/yotta")
    assert (get(cp, account_path) or {})["status"]["gpuPods"] == 0


def test_cluster_account_only_for_the_namespaces_it_allows(
    control_plane: ControlPlane, simulator: SimulatorProcess, start_operator: StartOperator
) -> None:
    cp = control_plane
    op_ns = _ns(cp, "op")
    ns_named, ns_labelled, ns_other = _ns(cp, "n"), _ns(cp, "l", {"gpu-tier": "gold"}), _ns(cp, "o")
    name = f"shared-{uuid.uuid4().hex[:6]}"
    secret(cp, op_ns, name, KEYS[2])
    cluster_account(
        cp, name, {"names": [ns_named], "selector": {"matchLabels": {"gpu-tier": "gold"}}}
    )
    closed = cluster_account(cp, f"closed-{uuid.uuid4().hex[:6]}", None)
    secret(cp, op_ns, closed, KEYS[2])
    start_operator([ns_named, ns_labelled, ns_other], args=[*FAST, "--operator-namespace", op_ns])
    ref = {"kind": "ClusterYottaAccount", "name": name}
    for ns in (ns_named, ns_labelled, ns_other):
        GpuPods(cp, ns).create("gpu", accountRef=ref)
    GpuPods(cp, ns_named).create("closed", accountRef={**ref, "name": closed})

    for ns in (ns_named, ns_labelled):
        GpuPods(cp, ns).wait_phase("gpu", "Running")
        assert account_of(simulator, ns, "gpu") == [3]
    other = GpuPods(cp, ns_other)
    wait_for(lambda: synced_reason(other, "gpu") == "AccountNotAllowed", 30, "AccountNotAllowed")
    message = other.condition("gpu", "Synced")["message"]
    assert f"does not allow namespace {ns_other}" in message and "allowedNamespaces" in message
    named = GpuPods(cp, ns_named)
    wait_for(lambda: synced_reason(named, "closed") == "AccountNotAllowed", 30, "omitted = none")
    assert other.status("gpu")["phase"] == "Pending"
    assert "AccountNotAllowed" in other.event_reasons("gpu")
    # Nothing was sent for the refused ones: only the two allowed creates reached the API.
    assert creates(simulator) == 2
    assert remote(simulator, ns_other) == [] and remote(simulator, f"{ns_named}-closed-") == []

    # Its endpoint cannot move under the pods pinned to it.
    with pytest.raises(ApiError) as e:
        patch = {"spec": {"apiUrl": "https://elsewhere.example"}}
        cp.request("PATCH", f"{API}/clusteryottaaccounts/{name}", patch)
    assert e.value.status == 422 and "apiUrl is immutable" in str(e.value)
    for ns in (ns_named, ns_labelled):
        GpuPods(cp, ns).delete("gpu")
        GpuPods(cp, ns).wait_gone("gpu")
    named.delete("closed")
    named.wait_gone("closed")
    assert live_pods(simulator.pods()) == []
    for account in (name, closed):  # cluster-scoped: other tests share them otherwise
        cp.request("DELETE", f"{API}/clusteryottaaccounts/{account}")
        path = f"{API}/clusteryottaaccounts/{account}"
        wait_for(lambda path=path: get(cp, path) is None, 30, f"{path} gone")


def test_missing_secret_is_account_not_found_without_any_api_call(
    control_plane: ControlPlane,
    simulator: SimulatorProcess,
    start_operator: StartOperator,
    namespace: str,
) -> None:
    cp = control_plane
    yotta_account(cp, namespace, "default", "not-yet")
    start_operator(args=FAST)
    pods = GpuPods(cp, namespace)
    pods.create("gpu")
    wait_for(lambda: synced_reason(pods, "gpu") == "AccountNotFound", 30, "AccountNotFound")
    message = pods.condition("gpu", "Synced")["message"]
    assert f"Secret {namespace}/not-yet" in message and "kubectl -n" in message
    assert pods.status("gpu")["phase"] == "Pending"
    assert "account" not in pods.status("gpu")  # nothing pinned: nothing was created
    stats = simulator.stats()
    assert creates(simulator) == 0
    # Only the operator's own account was ever called (its periodic List), never another key.
    assert set(stats["byAccount"]) <= {"0"} and "create" not in stats["byAccount"].get("0", {})
    assert "401" not in json.dumps(stats["requests"])

    secret(cp, namespace, "not-yet", KEYS[0])  # the fix the message names
    pods.wait_phase("gpu", "Running", timeout=60)
    assert account_of(simulator, namespace, "gpu") == [1]
    pods.delete("gpu")
    pods.wait_gone("gpu")


def test_a_key_the_api_refuses_is_unauthorized_and_the_secret_ref_is_immutable(
    control_plane: ControlPlane,
    simulator: SimulatorProcess,
    start_operator: StartOperator,
    namespace: str,
) -> None:
    cp = control_plane
    secret(cp, namespace, "yotta", new_api_key("unknown"))  # no simulator account has it
    yotta_account(cp, namespace, "default", "yotta")
    start_operator(args=FAST)
    pods = GpuPods(cp, namespace)
    pods.create("gpu")
    wait_for(lambda: synced_reason(pods, "gpu") == "Unauthorized", 30, "Unauthorized")
    assert "refused the key" in pods.condition("gpu", "Synced")["message"]
    assert simulator.stats()["requests"]["create"] == {"401": 1}
    assert remote(simulator, namespace) == []
    # The account cannot be re-pointed at another Secret (its in-use finalizer is on this one).
    path = f"{API}/namespaces/{namespace}/yottaaccounts/default"
    with pytest.raises(ApiError) as e:
        cp.request("PATCH", path, {"spec": {"apiKeySecretRef": {"name": "other", "key": "k"}}})
    assert e.value.status == 422 and "apiKeySecretRef is immutable" in str(e.value)


def test_pinned_account_outlives_a_new_default(
    control_plane: ControlPlane,
    simulator: SimulatorProcess,
    start_operator: StartOperator,
    namespace: str,
) -> None:
    cp = control_plane
    start_operator(args=FAST)
    pods = GpuPods(cp, namespace)
    pods.create("old")
    status = pods.wait_phase("old", "Running")
    assert status["account"] == {
        "kind": "Operator",
        "name": "",
        "keyFingerprint": fingerprint(simulator.api_key),
    }
    # A YottaAccount named default appears: new GpuPods use it, the old one stays pinned.
    secret(cp, namespace, "yotta", KEYS[0])
    yotta_account(cp, namespace, "default", "yotta")
    pods.create("new")
    pods.wait_phase("new", "Running")
    assert account_of(simulator, namespace, "new") == [1]
    pods.patch_spec("old", paused=True)
    pods.wait_phase("old", "Paused")
    pods.patch_spec("old", paused=False)
    pods.wait_phase("old", "Running")
    assert account_of(simulator, namespace, "old") == [0]
    assert pods.status("old")["account"]["kind"] == "Operator"
    for name in ("old", "new"):
        pods.delete(name)
    for name in ("old", "new"):
        pods.wait_gone(name)
    assert remote(simulator, namespace) == []
    assert creates(simulator) == 2  # never recreated anywhere


def test_key_rotation_without_restart_and_a_pod_under_another_key_is_not_gone(
    control_plane: ControlPlane,
    simulator: SimulatorProcess,
    start_operator: StartOperator,
    namespace: str,
) -> None:
    cp = control_plane
    secret(cp, namespace, "yotta", KEYS[0])
    yotta_account(cp, namespace, "default", "yotta")
    operator = start_operator(args=FAST)
    pods = GpuPods(cp, namespace)
    pods.create("first")
    pods.wait_phase("first", "Running")
    assert account_of(simulator, namespace, "first") == [1]

    # The Secret now holds a key of another account: used from the next call, no restart.
    rotate(cp, namespace, "yotta", KEYS[1])
    pods.create("second")
    second = pods.wait_phase("second", "Running")
    assert account_of(simulator, namespace, "second") == [2]
    assert second["account"]["keyFingerprint"] == fingerprint(KEYS[1])

    # "first" is not visible with that key: not gone, not recreated, not Lost; it says why.
    wait_for(lambda: synced_reason(pods, "first") == "AccountChanged", 30, "AccountChanged")
    assert pods.status("first")["phase"] == "Running"
    assert "Put the original API key back" in pods.condition("first", "Synced")["message"]
    assert "AccountChanged" in pods.event_reasons("first")
    pods.delete("first")
    wait_for(lambda: synced_reason(pods, "first") == "AccountChanged", 30, "still AccountChanged")
    assert pods.get("first") is not None  # the finalizer stays: the pod may still bill
    assert account_of(simulator, namespace, "first") == [1]
    assert creates(simulator) == 2

    # The original key back: the pod is found again and deleted with it.
    rotate(cp, namespace, "yotta", KEYS[0])
    pods.wait_gone("first", timeout=60)
    assert account_of(simulator, namespace, "first") == []
    rotate(cp, namespace, "yotta", KEYS[1])
    pods.delete("second")
    pods.wait_gone("second", timeout=60)
    assert remote(simulator, namespace) == []
    assert operator.running and creates(simulator) == 2
    for key in KEYS:
        assert key not in operator.process.log_tail(10_000)


def test_deleting_the_namespace_deletes_every_remote_pod_and_the_namespace_goes(
    control_plane: ControlPlane, simulator: SimulatorProcess, start_operator: StartOperator
) -> None:
    cp = control_plane
    ns = _ns(cp, "del")
    secret(cp, ns, "yotta", KEYS[0])
    yotta_account(cp, ns, "default", "yotta")
    start_operator([ns], args=FAST)
    pods = GpuPods(cp, ns)
    names = [f"gpu-{i}" for i in range(3)]
    for name in names:
        pods.create(name)
    for name in names:
        pods.wait_phase(name, "Running")
    assert len(remote(simulator, ns)) == 3

    started = time.monotonic()
    cp.request("DELETE", f"/api/v1/namespaces/{ns}")
    wait_for(lambda: get(cp, f"/api/v1/namespaces/{ns}") is None, 120, f"namespace {ns} gone")
    print(f"namespace with 3 GpuPods gone in {time.monotonic() - started:.1f}s")
    assert remote(simulator, ns) == []
    assert [p["account"] for p in simulator.pods() if ns in str(p.get("name"))] == [1, 1, 1]


def readme_commands() -> list[str]:
    """The shell commands of the README's "Accounts" subsection, in order (continued lines
    joined)."""
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("### Accounts\n") :]
    section = re.split(r"\n##+ ", section, maxsplit=1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    text = "\n".join(blocks).replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip()]


def test_readme_accounts_walkthrough_runs_as_written(
    control_plane: ControlPlane, simulator: SimulatorProcess, start_operator: StartOperator
) -> None:
    """Every command of the README's Accounts subsection, verbatim but for the keys, with the
    examples it applies; then what it claims: where each pod is, and nothing left over."""
    cp = control_plane
    cp.create_namespace("gpupod-system")  # where the chart runs the operator
    # The operator is ready only once it watches its namespaces: they exist before it starts
    # (their `kubectl create namespace` lines are then checked, not run).
    made_here = {f"kubectl create namespace {ns}": cp.create_namespace(ns) for ns in TEAMS}
    start_operator(list(TEAMS), args=[*FAST, "--operator-namespace", "gpupod-system"])
    keys = {"YOUR_KEY": KEYS[0], "SHARED_KEY": KEYS[2], "NEW_KEY": KEYS[0]}
    env = {
        **os.environ,
        "KUBECONFIG": str(cp.admin_kubeconfig),
        "PATH": f"{kubectl_path().parent}{os.pathsep}{os.environ['PATH']}",
    }
    outputs: list[str] = []
    commands = readme_commands()
    assert len(commands) >= 12 and commands[-1].startswith("kubectl delete namespace")
    try:
        for command in commands:
            if command.startswith("kubectl delete namespace"):
                # Before the namespaces go: each pod is in the account the README says.
                assert account_of(simulator, "team-a", "tenant-gpu") == [1]
                assert account_of(simulator, "team-b", "hello-gpu") == [3]
            if command in made_here:
                assert get(cp, f"/api/v1/namespaces/{made_here[command]}") is not None
                continue
            for word, key in keys.items():
                command = command.replace(word, key)
            result = subprocess.run(
                ["bash", "-c", command],
                cwd=REPO_ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=180,
                check=False,
            )
            assert result.returncode == 0, (command.split("=api-key=")[0], result.stderr)
            outputs.append(result.stdout)
        shown = "".join(outputs)
        assert '"kind":"YottaAccount","name":"team-a"' in shown, shown
        assert f'"keyFingerprint":"{fingerprint(KEYS[0])}"' in shown
        assert "ClusterYottaAccount/default" in shown
        assert remote(simulator, "team-a-") == [] and remote(simulator, "team-b-") == []
        assert len(made_here) == len(TEAMS)  # the README creates each of them
        for ns in TEAMS:
            assert get(cp, f"/api/v1/namespaces/{ns}") is None
    finally:
        shared = f"{API}/clusteryottaaccounts/default"
        if get(cp, shared) is not None:
            cp.request("DELETE", shared)  # cluster-wide: must not outlive this test
        for key in KEYS:
            assert all(key not in out for out in outputs)
