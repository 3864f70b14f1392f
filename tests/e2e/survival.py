"""Shared helpers of the survival suite (`tests/e2e/test_survival_*.py`, issue 6).

Every scenario ends with the same two-sided audit: the remote side through the simulator's
`GET /_sim/pods` (every pod it ever created, terminated ones too) and the Kubernetes side
through the API. `audit_running` / `audit_gone` are that audit; `report` prints the figures
(visible with `pytest -rP`) and records them as junit properties.

Knobs (environment), so `make soak` can run the same scenarios longer:
- `GPUPOD_SURVIVAL_SEED`: seed of the test's RNG and of the simulator's faults (default fixed).
- `GPUPOD_SURVIVAL_PODS`, `GPUPOD_SURVIVAL_KILLS`: crash loop size (default 50 pods, 10 kills
  per phase); `GPUPOD_SURVIVAL_FAULT_PODS`: GpuPods of the 30%-faults run (default 24).
- `GPUPOD_SURVIVAL_REPORT`: append every scenario's figures to this JSON-lines file.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from gpupod_operator.devenv.controlplane import ApiError
from gpupod_operator.devenv.operator_process import OperatorProcess
from gpupod_operator.devenv.simulator_process import SimulatorProcess
from gpupod_operator.domain.spec import remote_name

from .conftest import FAST_SIMULATOR_ARGS, _attach_logs
from .gpupods import GpuPods, condition, is_live, phase

FINALIZER = "gpupod.dev/finalizer"
IMAGE = "nvidia/cuda:12.4.1-base-ubuntu22.04"
GPU_TYPE = "NVIDIA_RTX_4090_24G"


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


SEED = env_int("GPUPOD_SURVIVAL_SEED", 20260611)


# --------------------------------------------------------------------------- fixtures


def simulator_fixture(*extra_args: str, api_key: str | None = None) -> Any:
    """A `simulator` fixture with extra command-line flags (seed, timeout-fault length...).

    Assign it to the name `simulator` in a test module: pytest then hands it to the conftest's
    `start_operator` too, so the operator talks to this simulator.
    """

    @pytest.fixture
    def simulator(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[SimulatorProcess]:
        sim = SimulatorProcess(
            args=(*FAST_SIMULATOR_ARGS, "--seed", str(SEED), *extra_args),
            api_key=api_key,
            log_path=tmp_path / "simulator.log",
        )
        try:
            sim.start()
            _attach_logs(request, "simulator", sim.process)
            yield sim
        finally:
            sim.stop()

    return simulator


# --------------------------------------------------------------------------- waiting


def poll_until(check: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Like `wait_for`, but a timeout is an answer (False), not a failure."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


# --------------------------------------------------------------------------- Kubernetes side


class Cluster(GpuPods):
    """GpuPods of one namespace for bulk scenarios: writes through the API too (one request
    each, no kubectl process), tolerant of objects that are already gone."""

    def delete(self, name: str, wait: bool = False) -> None:
        try:
            self.cp.request("DELETE", f"{self.path}/{name}")
        except ApiError as e:
            if e.status != 404:
                raise

    def patch_spec(self, name: str, **spec: Any) -> None:
        self.cp.request("PATCH", f"{self.path}/{name}", {"spec": spec})

    def event_count(self, name: str, reason: str, type_: str | None = None) -> int:
        return sum(
            1
            for e in self.events(name)
            if e["reason"] == reason and (type_ is None or e["type"] == type_)
        )

    def reasons(self) -> dict[str, int]:
        """Events of the namespace by reason (Events outlive their GpuPods here: no GC runs)."""
        return dict(sorted(Counter(e["reason"] for e in self.events()).items()))


def settled(obj: dict[str, Any] | None, phase_: str) -> bool:
    """In `phase_` with both conditions agreeing: Ready matches, Synced is True."""
    ready = "True" if phase_ == "Running" else "False"
    return (
        phase(obj) == phase_
        and condition(obj, "Ready").get("status") == ready
        and condition(obj, "Synced").get("status") == "True"
    )


# --------------------------------------------------------------------------- remote side


def remote_of(sim: SimulatorProcess, namespace: str) -> list[dict[str, Any]]:
    """Every pod the simulator ever created for GpuPods of `namespace` (remote names start
    with the namespace), terminated ones included."""
    return [p for p in sim.pods() if str(p.get("name", "")).startswith(f"{namespace}-")]


def delete_remote(sim: SimulatorProcess, pod_id: str) -> None:
    """Delete a pod through the public API, as an admin would, and wait until TERMINATED."""
    response = httpx.delete(
        f"{sim.url}/v2/pods/{pod_id}", headers={"X-Api-Key": sim.api_key}, timeout=10
    )
    response.raise_for_status()
    assert response.json()["code"] == 10000, response.text
    poll_until(
        lambda: any(str(p["id"]) == pod_id and not is_live(p) for p in sim.pods()), timeout=30
    )


def requests_by_op(sim: SimulatorProcess) -> dict[str, int]:
    """Requests the simulator answered, by endpoint (any result, faults included)."""
    return {op: sum(r.values()) for op, r in sim.stats()["requests"].items()}


def results_of(sim: SimulatorProcess, op: str) -> dict[str, int]:
    return dict(sim.stats()["requests"].get(op, {}))


def faults_injected(sim: SimulatorProcess) -> dict[str, int]:
    """Faults the simulator injected, by kind, over all endpoints."""
    out: Counter[str] = Counter()
    for kinds in sim.stats()["faults"].values():
        out.update(kinds)
    return dict(out)


@dataclass
class Audit:
    """The two-sided count at the end of a scenario."""

    gpupods: int
    live_remote: int
    remote_ever: int  # pods the provider ever created for this namespace
    creates_per_gpupod: dict[str, int] = field(default_factory=dict)
    leaks: list[str] = field(default_factory=list)  # live pods nobody owns (or owned twice)

    def figures(self) -> dict[str, Any]:
        spread = Counter(self.creates_per_gpupod.values())
        return {
            "gpupods": self.gpupods,
            "live_remote_pods": self.live_remote,
            "remote_pods_ever_created": self.remote_ever,
            "remote_pods_per_gpupod": dict(sorted(spread.items())),
            "leaks": len(self.leaks),
        }


def audit_running(
    cluster: Cluster,
    sim: SimulatorProcess,
    names: list[str],
    *,
    paused: tuple[str, ...] = (),
    absent: tuple[str, ...] = (),
) -> Audit:
    """Every GpuPod in `names` shows Running (Paused if in `paused`) with the podId of exactly
    one live remote pod in the same state that carries its deterministic remote name; no other
    live pod exists for the namespace; each GpuPod was created at the provider exactly once.
    The GpuPods in `absent` exist too but must never have reached the provider."""
    objs = cluster.all()
    assert sorted(objs) == sorted([*names, *absent]), "the GpuPods are not the ones created"
    remote = remote_of(sim, cluster.ns)
    live = {str(p["id"]): p for p in remote if is_live(p)}
    ever = Counter(str(p["name"]) for p in remote)
    audit = Audit(len(objs), len(live), len(remote))
    owned: Counter[str] = Counter()
    # The operator's default cluster id: the kube-system namespace UID.
    cluster_id = cluster.cp.request("GET", "/api/v1/namespaces/kube-system")["metadata"]["uid"]
    for name, obj in objs.items():
        status = obj.get("status") or {}
        expected = remote_name(cluster.ns, name, obj["metadata"]["uid"], cluster_id)
        audit.creates_per_gpupod[name] = ever[expected]
        if name in absent:
            assert not status.get("podId") and not ever[expected], f"{name} reached the provider"
            continue
        phase_ = "Paused" if name in paused else "Running"
        assert settled(obj, phase_), f"{name}: {status}"
        assert status.get("remoteName") == expected, f"{name}: {status.get('remoteName')}"
        pod_id = str(status.get("podId"))
        pod = live.get(pod_id)
        assert pod is not None, f"{name}: podId {pod_id} is not a live remote pod"
        assert pod["name"] == expected, f"{name}: pod {pod_id} is named {pod['name']}"
        assert pod["status"] == phase_.upper(), f"{name}: remote pod {pod_id} is {pod['status']}"
        owned[pod_id] += 1
    for pod_id, pod in live.items():
        if owned[pod_id] != 1:
            audit.leaks.append(f"{pod_id} ({pod['name']}, {pod['status']}) owned {owned[pod_id]}x")
    duplicated = {n: c for n, c in audit.creates_per_gpupod.items() if c != 1 and n not in absent}
    assert not audit.leaks, f"live remote pods without exactly one owner: {audit.leaks}"
    assert not duplicated, f"GpuPods created at the provider more than once: {duplicated}"
    assert audit.live_remote == len(names)
    return audit


def audit_gone(cluster: Cluster, sim: SimulatorProcess) -> Audit:
    """No GpuPod left in the namespace and no live remote pod for it."""
    objs = cluster.all()
    remote = remote_of(sim, cluster.ns)
    live = [p for p in remote if is_live(p)]
    audit = Audit(len(objs), len(live), len(remote))
    audit.leaks = [f"{p['id']} ({p['name']}, {p['status']})" for p in live]
    assert not objs, f"GpuPods left: {sorted(objs)}"
    assert not audit.leaks, f"live remote pods left behind: {audit.leaks}"
    return audit


# --------------------------------------------------------------------------- metrics


def scrape(url: str) -> str:
    return httpx.get(url, timeout=5.0).text


def metric(text: str, name: str, labels: str = "") -> float | None:
    """The value of one sample in Prometheus text format (`labels` as written, e.g.
    'operation="create",result="ok"'), or None."""
    selector = re.escape(name + (f"{{{labels}}}" if labels else ""))
    match = re.search(rf"^{selector} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


def metrics_args(port: int) -> list[str]:
    return ["--metrics-port", str(port), "--metrics-addr", "127.0.0.1"]


# --------------------------------------------------------------------------- chaos


@dataclass
class Killer:
    """SIGKILLs the operator at random moments and starts it again, from a seeded RNG.

    Half of the kills land at a uniformly random moment after the operator came up; the other
    half wait for the next `aim` request (create, delete) to reach the simulator and kill within
    150 ms of it: between a POST and the status patch that records the pod ID is where a crash
    can duplicate a pod, between a DELETE and the finalizer's removal where it can forget one.
    """

    operator: OperatorProcess
    sim: SimulatorProcess
    rng: random.Random
    aim: str = "create"
    kills: int = 0
    aimed: int = 0

    def _requests(self) -> int:
        return sum(self.sim.stats()["requests"].get(self.aim, {}).values())

    def strike(self) -> None:
        if self.rng.random() < 0.5:
            before = self._requests()
            if poll_until(lambda: self._requests() > before, timeout=3.0):
                self.aimed += 1
            time.sleep(self.rng.uniform(0.0, 0.15))  # chaos: the kill moment itself
        else:
            time.sleep(self.rng.uniform(0.2, 2.5))  # chaos: the kill moment itself
        self.operator.kill()
        self.kills += 1

    def revive(self) -> None:
        self.operator.start()


# --------------------------------------------------------------------------- reporting


def report(request: pytest.FixtureRequest, scenario: str, figures: dict[str, Any]) -> None:
    """Print a scenario's figures (`pytest -rP` shows them) and keep them as junit
    properties; with $GPUPOD_SURVIVAL_REPORT also append them to that JSON-lines file."""
    line = json.dumps({"scenario": scenario, "seed": SEED, **figures}, sort_keys=True)
    print(f"SURVIVAL {line}")
    request.node.user_properties.append(("survival", line))
    path = os.environ.get("GPUPOD_SURVIVAL_REPORT", "").strip()
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
