"""GpuQuota on the real API server, the real operator and the simulator.

- 20 one-GPU GpuPods applied at once into a namespace with hard.gpus 4: exactly 4 remote
  creates; the other 16 stay Pending with Synced=False, QuotaExceeded (used/hard in the
  message) and an Event. Deleting 2 running ones admits exactly 2 more, the oldest waiting
  ones, within seconds of the release (not on kopf's 30 s retry timer). The status and the
  gpupod_quota_* metrics show what is held.
- The operator SIGKILLed again and again in the middle of admissions never over-admits: at
  no sample are more remote pods live than the quota allows, and each admitted GpuPod is
  created once.
- pricePerHour: estimated before the create from the provider's quoted price for the GPU
  type, as many admitted as fit, and each reservation corrected to the price of its pod.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest

from gpupod_operator.devenv.controlplane import ControlPlane
from gpupod_operator.devenv.process import free_port
from gpupod_operator.devenv.simulator_process import SimulatorProcess

from . import survival as sv
from .conftest import StartOperator
from .gpupods import GpuPods, live_pods, wait_for

pytestmark = pytest.mark.e2e

API = "/apis/gpupod.dev/v1alpha1"
GPU_TYPE = "NVIDIA_RTX_4090_24G"  # 0.45 USD per GPU-hour in the simulator's catalog
WAIT_DELAY = 30.0  # controller.quota.WAIT_DELAY: kopf's retry of a waiting GpuPod

Doc = dict[str, Any]


def quota_path(namespace: str, name: str = "") -> str:
    return f"{API}/namespaces/{namespace}/gpuquotas" + (f"/{name}" if name else "")


def create_quota(cp: ControlPlane, namespace: str, name: str, **hard: Any) -> None:
    cp.request(
        "POST",
        quota_path(namespace),
        {
            "apiVersion": "gpupod.dev/v1alpha1",
            "kind": "GpuQuota",
            "metadata": {"name": name},
            "spec": {"hard": hard},
        },
    )


def quota_status(cp: ControlPlane, namespace: str, name: str) -> Doc:
    return cp.request("GET", quota_path(namespace, name)).get("status") or {}


def creates(sim: SimulatorProcess) -> int:
    return sum(sim.stats()["requests"].get("create", {}).values())


def live(sim: SimulatorProcess, namespace: str) -> list[Doc]:
    return live_pods(sim.pods(), f"{namespace}-")


def running_names(pods: GpuPods) -> list[str]:
    return sorted(
        n for n, o in pods.all().items() if (o.get("status") or {}).get("phase") == "Running"
    )


def reason(obj: Doc | None) -> str | None:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == "Synced":
            return str(c.get("reason"))
    return None


def test_twenty_at_once_admit_exactly_four_and_two_deleted_admit_two_more(
    control_plane: ControlPlane,
    namespace: str,
    simulator: SimulatorProcess,
    start_operator: StartOperator,
) -> None:
    port = free_port()
    create_quota(control_plane, namespace, "gpus", gpus=4)
    start_operator(args=sv.metrics_args(port))
    pods = GpuPods(control_plane, namespace)
    names = [f"q-{i:02d}" for i in range(20)]
    for name in names:
        pods.create(name, gpuType=GPU_TYPE, gpuCount=1)

    def counted() -> dict[str, list[str]] | None:
        objs = pods.all()
        running = [n for n, o in objs.items() if (o.get("status") or {}).get("phase") == "Running"]
        waiting = [n for n, o in objs.items() if reason(o) == "QuotaExceeded"]
        return (
            {"running": running, "waiting": waiting} if len(running) + len(waiting) == 20 else None
        )

    state = wait_for(counted, 90, "4 Running and 16 waiting", interval=0.5)
    assert len(state["running"]) == 4 and len(state["waiting"]) == 16, state
    assert creates(simulator) == 4
    assert len(live(simulator, namespace)) == 4
    waiter = pods.get(state["waiting"][0])
    assert waiter is not None and waiter["status"]["phase"] == "Pending"
    synced = next(c for c in waiter["status"]["conditions"] if c["type"] == "Synced")
    assert synced["status"] == "False"
    assert "GpuQuota gpus is full: gpus 4/4 used (this GpuPod needs 1)" in synced["message"]
    assert "QuotaExceeded" in wait_for(
        lambda: pods.event_reasons(state["waiting"][0]), 10, "the QuotaExceeded Event"
    )
    status = quota_status(control_plane, namespace, "gpus")
    assert status["used"]["gpus"] == 4 and status["used"]["pods"] == 4
    assert sorted(r["name"] for r in status["reservations"]) == sorted(state["running"])
    text = wait_for(
        lambda: (
            (t := sv.scrape(f"http://127.0.0.1:{port}/metrics"))
            and sv.metric(t, "gpupod_quota_used", f'namespace="{namespace}",resource="gpus"') == 4
            and t
        ),
        20,
        "gpupod_quota_used 4",
    )
    assert sv.metric(text, "gpupod_quota_hard", f'namespace="{namespace}",resource="gpus"') == 4
    assert wait_for(
        lambda: quota_status(control_plane, namespace, "gpus").get("waiting") == 16,
        20,
        "waiting 16",
    )

    # Oldest first: the next two admitted are the two oldest waiting ones.
    objs = pods.all()
    order = sorted(
        state["waiting"],
        key=lambda n: (objs[n]["metadata"]["creationTimestamp"], objs[n]["metadata"]["uid"]),
    )
    for name in state["running"][:2]:
        pods.delete(name)
    for name in state["running"][:2]:
        pods.wait_gone(name)
    released = time.monotonic()
    wait_for(lambda: creates(simulator) == 6, 60, "2 more creates", interval=0.3)
    admitted_after = time.monotonic() - released
    assert admitted_after < WAIT_DELAY / 2, f"admitted {admitted_after:.1f}s after the release"
    for name in order[:2]:
        pods.wait_phase(name, "Running")
    time.sleep(3)  # nothing else may follow: a third admission would show within this
    assert creates(simulator) == 6
    assert len(live(simulator, namespace)) == 4
    status = quota_status(control_plane, namespace, "gpus")
    assert status["used"]["gpus"] == 4
    assert sorted(r["name"] for r in status["reservations"]) == sorted(
        state["running"][2:] + order[:2]
    )
    print(
        f"QUOTA applied=20 hard.gpus=4 creates=4 after deleting 2: creates=6 "
        f"(admitted {admitted_after:.1f}s after the release)"
    )


def test_sigkill_in_the_middle_of_admissions_never_over_admits(
    control_plane: ControlPlane,
    namespace: str,
    simulator: SimulatorProcess,
    start_operator: StartOperator,
) -> None:
    rng = random.Random(sv.SEED)
    hard = 3
    create_quota(control_plane, namespace, "gpus", gpus=hard)
    pods = GpuPods(control_plane, namespace)
    killer = sv.Killer(start_operator(), simulator, rng)
    # Watch the provider side the whole time, not only between kills.
    samples: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append(len(live(simulator, namespace)))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    names = [f"k-{i:02d}" for i in range(12)]
    try:
        for batch in (names[:6], names[6:]):
            for name in batch:
                pods.create(name, gpuType=GPU_TYPE, gpuCount=1)
            for _ in range(3):
                killer.strike()
                killer.revive()
        # Settle: exactly `hard` admitted and running, the rest waiting.
        wait_for(lambda: len(running_names(pods)) == hard, 120, f"{hard} Running", interval=0.5)
        time.sleep(2)
        running = running_names(pods)
        assert len(live(simulator, namespace)) == hard and creates(simulator) == hard
        status = quota_status(control_plane, namespace, "gpus")
        assert status["used"]["gpus"] == hard
        assert sorted(r["name"] for r in status["reservations"]) == running
        # Everything deleted: waiting ones may be admitted as capacity frees, but a pod's
        # capacity is only released once it is TERMINATED, so still never more than `hard`.
        for name in names:
            pods.delete(name)
        for name in names:
            pods.wait_gone(name, timeout=120)
    finally:
        done.set()
        sampler.join()
    most = max(samples)
    assert most <= hard, f"{most} live remote pods at once under hard.gpus {hard}"
    assert live(simulator, namespace) == []
    assert creates(simulator) <= len(names)
    wait_for(
        lambda: quota_status(control_plane, namespace, "gpus").get("reservations") == [],
        30,
        "no reservation left",
    )
    print(
        f"QUOTA-KILL kills={killer.kills} hard={hard} most_live={most} samples={len(samples)} "
        f"creates={creates(simulator)}"
    )


def test_price_is_estimated_from_the_provider_quote_and_corrected_after_the_create(
    control_plane: ControlPlane,
    namespace: str,
    simulator: SimulatorProcess,
    start_operator: StartOperator,
) -> None:
    create_quota(control_plane, namespace, "money", pricePerHour="1.00")
    start_operator()
    pods = GpuPods(control_plane, namespace)
    # No pod of this type seen yet: the estimate comes from the provider's GPU type list.
    pods.create("first", gpuType=GPU_TYPE)
    pods.wait_phase("first", "Running")
    assert sum(simulator.stats()["requests"].get("types", {}).values()) == 1
    pods.create("second", gpuType=GPU_TYPE)
    pods.wait_phase("second", "Running")
    pods.create("third", gpuType=GPU_TYPE)  # 3 x 0.45 > 1.00
    synced = wait_for(
        lambda: (c := pods.condition("third", "Synced")).get("reason") == "QuotaExceeded" and c,
        30,
        "refused: over pricePerHour",
    )
    assert "pricePerHour 0.90/1.00 used (this GpuPod needs 0.45)" in synced["message"]
    assert creates(simulator) == 2
    status = wait_for(
        lambda: (
            (s := quota_status(control_plane, namespace, "money"))
            and all(not r["estimated"] for r in s.get("reservations") or [{"estimated": True}])
            and s
        ),
        30,
        "the estimates replaced by the quoted prices",
    )
    assert status["used"]["pricePerHour"] == "0.90"
    assert status["prices"][GPU_TYPE] == "0.45"  # kept for the next process
    assert {r["pricePerHour"] for r in status["reservations"]} == {"0.45"}
