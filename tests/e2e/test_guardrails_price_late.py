"""The price cap when the create's answer carries no price (the v1 dialect: `data` is the bare
pod ID): the first observation that shows the price, the poller's, marks the guard, and the
reconciler deletes the pod, still before it reaches RUNNING."""

from __future__ import annotations

import pytest

from gpupod_operator.devenv.controlplane import ControlPlane
from gpupod_operator.devenv.simulator_process import SimulatorProcess

from . import survival as sv
from .conftest import StartOperator
from .gpupods import GpuPods, wait_for
from .test_guardrails import OPERATOR_ARGS, PROVISION_SECONDS, _remote, _requests, _stays, _synced

pytestmark = pytest.mark.e2e

simulator = sv.simulator_fixture(
    "--provision-seconds", str(PROVISION_SECONDS), "--dialect", "create_data=id"
)


def test_price_seen_first_by_the_poller_still_deletes_before_running(
    control_plane: ControlPlane,
    namespace: str,
    simulator: SimulatorProcess,
    start_operator: StartOperator,
) -> None:
    start_operator(args=OPERATOR_ARGS)
    pods = GpuPods(control_plane, namespace)
    pods.create("late", gpuType="NVIDIA_RTX_5090_32G", maxPricePerHour="0.50")
    status = pods.wait_phase("late", "Failed", timeout=30)
    synced = _synced(pods, "late", "PriceExceeded")
    assert "$0.65/h" in synced["message"] and "$0.50/h" in synced["message"]
    remote = wait_for(
        lambda: (p := _remote(simulator, status["podId"]))["status"] == "TERMINATED" and p,
        10,
        "the remote pod TERMINATED",
    )
    after = (remote["updatedAt"] - 500 - remote["createdAt"]) / 1000  # TERMINATING began
    print(f"\nprice cap (price seen by the poller): deleted {after:.2f}s after create")
    assert after < PROVISION_SECONDS  # it never reached RUNNING
    _stays(pods, "late", "Failed")
    assert _requests(simulator, "create") == 1
    assert "Running" not in pods.event_reasons("late")
    pods.delete("late")
    pods.wait_gone("late")
