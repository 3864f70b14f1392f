"""Survival 1: the operator is SIGKILLed over and over while GpuPods are created and deleted,
and the simulator loses create answers and fails requests. Afterwards every GpuPod has
exactly one remote pod (created once), and after deletion nothing is left on either side."""

from __future__ import annotations

import random
import time

import pytest

from gpupod_operator.devenv.controlplane import ControlPlane
from gpupod_operator.devenv.simulator_process import SimulatorProcess

from . import survival as sv
from .conftest import StartOperator
from .gpupods import wait_for

pytestmark = pytest.mark.e2e

simulator = sv.simulator_fixture()

PODS = sv.env_int("GPUPOD_SURVIVAL_PODS", 50)
KILLS = sv.env_int("GPUPOD_SURVIVAL_KILLS", 10)  # per phase (create, delete)
FAULTS = [
    "create:lost:0.25",  # performed, then the answer is a 500 or a dropped connection
    "create:500:0.15",  # refused before doing anything
    "delete:lost:0.2",
    "*:500:0.05",
]
OPERATOR_ARGS = ["--sync-interval", "2", "--fast-sync-interval", "0.5"]


def _cycles(names: list[str], kills: int) -> list[tuple[list[str], list[str]]]:
    """Split `names` over `kills` cycles: per cycle, what to touch while the operator runs
    and what to touch while it is dead (so both cases happen)."""
    out = []
    for i in range(kills):
        batch = names[i::kills]
        half = (len(batch) + 1) // 2
        out.append((batch[:half], batch[half:]))
    return out


def test_crash_loop_creates_each_pod_once_and_deletes_everything(
    control_plane: ControlPlane,
    namespace: str,
    simulator: SimulatorProcess,
    start_operator: StartOperator,
    request: pytest.FixtureRequest,
) -> None:
    rng = random.Random(sv.SEED)
    cluster = sv.Cluster(control_plane, namespace)
    simulator.set_faults(FAULTS)
    killer = sv.Killer(start_operator(args=OPERATOR_ARGS), simulator, rng)
    names = [f"crash-{i:02d}" for i in range(PODS)]

    # ---- create under kills
    started = time.monotonic()
    for alive, dead in _cycles(names, KILLS):
        for name in alive:
            cluster.create(name)
        killer.strike()
        for name in dead:
            cluster.create(name)
        killer.revive()
    create_kills, create_aimed = killer.kills, killer.aimed

    def all_running() -> bool:
        objs = cluster.all()
        return len(objs) == PODS and all(sv.settled(o, "Running") for o in objs.values())

    settling = time.monotonic()
    wait_for(all_running, 120 + 2 * PODS, f"all {PODS} GpuPods Running", interval=0.5)
    create_settle = time.monotonic() - settling
    create_seconds = time.monotonic() - started
    created = sv.audit_running(cluster, simulator, names)
    create_requests = sv.results_of(simulator, "create")
    faults_at_create = sv.faults_injected(simulator)

    # ---- delete under kills
    started = time.monotonic()
    killer.aim = "delete"
    order = names[:]
    rng.shuffle(order)
    for alive, dead in _cycles(order, KILLS):
        for name in alive:
            cluster.delete(name)
        killer.strike()
        for name in dead:
            cluster.delete(name)
        killer.revive()

    settling = time.monotonic()
    wait_for(lambda: not cluster.all(), 120 + 2 * PODS, "every GpuPod gone", interval=0.5)
    delete_settle = time.monotonic() - settling
    delete_seconds = time.monotonic() - started
    gone = sv.audit_gone(cluster, simulator)
    assert killer.operator.running, "the operator must still be up at the end"

    by_op = sv.requests_by_op(simulator)
    reasons = cluster.reasons()
    assert "DuplicateDeleted" not in reasons
    sv.report(
        request,
        "crash-loop",
        {
            "gpupods": PODS,
            "kills": killer.kills,
            "kills_during_create": create_kills,
            "kills_aimed_at_a_create": create_aimed,
            "kills_aimed_at_a_delete": killer.aimed - create_aimed,
            "faults_injected": sv.faults_injected(simulator),
            "faults_injected_during_create": faults_at_create,
            "create_requests": create_requests,
            "create_requests_per_gpupod": round(sum(create_requests.values()) / PODS, 2),
            "remote_pods_per_gpupod": created.figures()["remote_pods_per_gpupod"],
            "requests_by_endpoint": by_op,
            "live_remote_after_create": created.live_remote,
            "live_remote_after_delete": gone.live_remote,
            "gpupods_left": gone.gpupods,
            "leaks": len(created.leaks) + len(gone.leaks),
            "events_by_reason": reasons,
            "create_phase_seconds": round(create_seconds, 1),
            "delete_phase_seconds": round(delete_seconds, 1),
            "settle_seconds_after_last_kill": [round(create_settle, 1), round(delete_settle, 1)],
        },
    )
    assert killer.kills >= 2 * KILLS
