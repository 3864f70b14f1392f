"""Survival 3: the Yotta API goes away (the simulator process is stopped) for longer than three
poll rounds and comes back on the same port. The operator says so (Ready=Unknown with reason
ProviderUnreachable, a Warning Event, `gpupod_remote_up 0`), keeps doing the work that needs no
provider (a missing Secret is reported, a never-created GpuPod is deleted), and recovers by
itself: same operator process, Ready=True again, `gpupod_remote_up 1`, queued work done.

The simulator keeps its pods in memory, so a restarted one has forgotten them; a real provider
would not. The test puts the pod back the way the provider would still have it: the simulator
is seeded, so re-creating the first pod under the same name gives it the same ID. Until that is
done the restarted simulator fails every list and get (started with those faults), so the
operator never sees the empty provider: to it, the outage simply lasts until the faults clear.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from gpupod_operator.devenv.controlplane import ControlPlane
from gpupod_operator.devenv.process import free_port
from gpupod_operator.devenv.simulator_process import SimulatorProcess

from . import survival as sv
from .conftest import StartOperator
from .gpupods import wait_for

pytestmark = pytest.mark.e2e

simulator = sv.simulator_fixture()

SYNC = 1.0  # poll interval; three failed polls are needed before the outage is reported
OUTAGE_FAULTS = ("list:500:1", "get:500:1")
MISSING = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k"}}}]


def _ready(obj: dict[str, Any] | None) -> tuple[str | None, str | None]:
    c = sv.condition(obj, "Ready")
    return c.get("status"), c.get("reason")


def _start_with_faults(sim: SimulatorProcess, faults: tuple[str, ...]) -> None:
    """Start the stopped simulator with `faults` in force from its first request on."""
    base = list(sim.args)
    sim.args = [*base, *(arg for f in faults for arg in ("--fault", f))]
    try:
        sim.start()
    finally:
        sim.args = base  # a later restart starts clean


def _restore(sim: SimulatorProcess, remote_name: str) -> str:
    """Re-create the provider's pod after the simulator lost it (same seed: same ID)."""
    response = httpx.post(
        f"{sim.url}/v2/pods",
        headers={"X-Api-Key": sim.api_key},
        json={"name": remote_name, "image": sv.IMAGE, "gpuType": sv.GPU_TYPE, "gpuCount": 1},
        timeout=10,
    )
    response.raise_for_status()
    return str(response.json()["data"]["id"])


def test_provider_outage_is_reported_survived_and_recovered(
    control_plane: ControlPlane,
    namespace: str,
    simulator: SimulatorProcess,
    start_operator: StartOperator,
    request: pytest.FixtureRequest,
) -> None:
    cluster = sv.Cluster(control_plane, namespace)
    port = free_port()
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    operator = start_operator(
        args=["--sync-interval", str(SYNC), "--fast-sync-interval", "0.5", *sv.metrics_args(port)]
    )
    pid = operator.pid

    cluster.create("steady")
    cluster.create("orphan-secret", env=MISSING)  # never created remotely: no Secret
    steady = wait_for(
        lambda: sv.phase(o := cluster.get("steady")) == "Running" and o, 60, "steady Running"
    )
    pod_id, remote_name = steady["status"]["podId"], steady["status"]["remoteName"]
    wait_for(
        lambda: (
            sv.condition(cluster.get("orphan-secret"), "Synced").get("reason") == "SecretNotFound"
        ),
        30,
        "orphan-secret SecretNotFound",
    )
    assert [str(p["id"]) for p in sv.remote_of(simulator, namespace)] == [pod_id]
    assert sv.metric(sv.scrape(metrics_url), "gpupod_remote_up") == 1.0

    # ---- outage
    simulator.stop()
    down = time.monotonic()
    cluster.create("queued")  # needs the provider: must wait for it
    cluster.create("needs-secret", env=MISSING)  # needs no provider: reported now
    cluster.delete("orphan-secret")  # never created: released without the provider

    unknown = wait_for(
        lambda: _ready(o := cluster.get("steady")) == ("Unknown", "ProviderUnreachable") and o,
        90,
        "steady Ready=Unknown ProviderUnreachable",
        interval=0.5,
    )
    detected = time.monotonic() - down
    text = sv.scrape(metrics_url)
    assert sv.metric(text, "gpupod_remote_up") == 0.0
    assert cluster.event_count("steady", "ProviderUnreachable", "Warning") == 1
    assert sv.phase(unknown) == "Running"  # last known; the condition says it is stale
    wait_for(lambda: cluster.get("orphan-secret") is None, 30, "orphan-secret released")
    needs = wait_for(
        lambda: (
            (c := sv.condition(cluster.get("needs-secret"), "Synced")).get("reason")
            == "SecretNotFound"
            and c
        ),
        30,
        "needs-secret SecretNotFound during the outage",
    )
    assert needs["status"] == "False" and "absent" in needs["message"]
    queued = wait_for(
        lambda: (c := sv.condition(cluster.get("queued"), "Synced")).get("status") == "False" and c,
        60,
        "queued Synced=False while the provider is down",
    )
    assert operator.running and operator.pid == pid

    # ---- the provider comes back (see the module docstring)
    _start_with_faults(simulator, OUTAGE_FAULTS)
    assert _restore(simulator, remote_name) == pod_id
    outage = time.monotonic() - down
    simulator.set_faults([])
    back = time.monotonic()

    wait_for(lambda: _ready(cluster.get("steady")) == ("True", "Running"), 60, "steady Ready")
    recovered = time.monotonic() - back
    wait_for(
        lambda: sv.metric(sv.scrape(metrics_url), "gpupod_remote_up") == 1.0, 30, "remote_up 1"
    )
    wait_for(lambda: sv.phase(cluster.get("queued")) == "Running", 90, "queued Running", 0.5)
    queued_done = time.monotonic() - back
    assert operator.running and operator.pid == pid, "recovered without a restart"
    sv.audit_running(cluster, simulator, ["queued", "steady"], absent=("needs-secret",))

    for name in ("queued", "steady", "needs-secret"):
        cluster.delete(name)
    wait_for(lambda: not cluster.all(), 60, "every GpuPod gone", 0.5)
    gone = sv.audit_gone(cluster, simulator)
    sv.report(
        request,
        "provider-outage",
        {
            "sync_interval": SYNC,
            "outage_seconds": round(outage, 1),
            "reported_after_seconds": round(detected, 1),
            "ready_during_outage": "Unknown/ProviderUnreachable",
            "provider_unreachable_events": cluster.event_count("steady", "ProviderUnreachable"),
            "queued_synced_reason_during_outage": queued.get("reason"),
            "served_during_outage": ["needs-secret: SecretNotFound", "orphan-secret: released"],
            "ready_again_after_seconds": round(recovered, 1),
            "queued_running_after_seconds": round(queued_done, 1),
            "operator_restarts": 0,
            "leaks": len(gone.leaks),
        },
    )
