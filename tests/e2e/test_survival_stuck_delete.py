"""Survival 6: deleting a GpuPod whose remote pod the provider refuses to delete. The finalizer
stays (the pod still bills), the GpuPod says why (status message, Synced=False DeleteFailed, a
Warning Event), and there are two ways out: the documented manual one,

    kubectl patch gpupod X --type merge -p '{"spec":{"deletionPolicy":"Orphan"}}'

which releases the GpuPod at once with an Orphaned Event naming the pod ID (the pod is left
running, on purpose), and the provider recovering, after which the delete completes by itself.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from gpupod_operator.devenv.controlplane import ControlPlane
from gpupod_operator.devenv.simulator_process import SimulatorProcess

from . import survival as sv
from .conftest import REPO_ROOT, StartOperator
from .gpupods import wait_for

pytestmark = pytest.mark.e2e

simulator = sv.simulator_fixture()
ORPHAN_PATCH = json.dumps({"spec": {"deletionPolicy": "Orphan"}}, separators=(",", ":"))
DOCUMENTED = f"kubectl patch gpupod NAME --type merge -p '{ORPHAN_PATCH}'"


def _stuck(cluster: sv.Cluster, name: str, pod_id: str) -> dict[str, Any] | None:
    """The GpuPod, once it is being deleted, still holds the finalizer and says why."""
    obj = cluster.get(name)
    if obj is None:
        raise AssertionError(f"{name} was released although its remote pod was not deleted")
    meta, status = obj["metadata"], obj.get("status") or {}
    synced = sv.condition(obj, "Synced")
    ok = (
        meta.get("deletionTimestamp")
        and sv.FINALIZER in meta.get("finalizers", [])
        and synced.get("status") == "False"
        and synced.get("reason") == "DeleteFailed"
        and f"cannot delete remote pod {pod_id}" in str(status.get("message"))
        and "deletionPolicy: Orphan" in str(status.get("message"))
        and cluster.event_count(name, "DeleteFailed", "Warning") >= 1
    )
    return obj if ok else None


def test_stuck_deletion_explains_itself_and_has_a_way_out(
    control_plane: ControlPlane,
    namespace: str,
    simulator: SimulatorProcess,
    start_operator: StartOperator,
    request: pytest.FixtureRequest,
) -> None:
    cluster = sv.Cluster(control_plane, namespace)
    start_operator(args=["--sync-interval", "1", "--fast-sync-interval", "0.5"])
    ids: dict[str, str] = {}
    for name in ("escape", "heals"):
        cluster.create(name)
    for name in ("escape", "heals"):
        ids[name] = wait_for(
            lambda n=name: sv.phase(o := cluster.get(n)) == "Running" and o["status"]["podId"],
            60,
            f"{name} Running",
        )

    simulator.set_faults(["delete:500:1.0"])  # the provider refuses every delete
    started = time.monotonic()
    for name in ids:
        cluster.delete(name)
    for name, pod_id in ids.items():
        wait_for(lambda n=name, p=pod_id: _stuck(cluster, n, p), 60, f"{name} stuck, saying why")
    stuck_after = time.monotonic() - started
    remote = {str(p["id"]): p["status"] for p in sv.remote_of(simulator, namespace)}
    assert remote == {ids["escape"]: "RUNNING", ids["heals"]: "RUNNING"}
    event = next(e for e in cluster.events("escape") if e["reason"] == "DeleteFailed")
    assert ids["escape"] in event["message"] and "deletionPolicy: Orphan" in event["message"]

    # The documented way out (exactly the README's command), while the provider still refuses.
    assert DOCUMENTED in (REPO_ROOT / "README.md").read_text(), "the README must document it"
    patched = time.monotonic()
    cluster.cp.kubectl(
        "patch", "gpupod", "escape", "-n", namespace, "--type", "merge", "-p", ORPHAN_PATCH
    )
    wait_for(lambda: cluster.get("escape") is None, 90, "escape released", 0.5)
    escape_seconds = time.monotonic() - patched
    orphaned = [e for e in cluster.events("escape") if e["reason"] == "Orphaned"]
    assert orphaned and orphaned[0]["type"] == "Warning", cluster.reasons()
    assert ids["escape"] in orphaned[0]["message"], orphaned[0]["message"]
    assert _stuck(cluster, "heals", ids["heals"]), "heals must stay until the provider recovers"
    refused = sv.results_of(simulator, "delete").get("500", 0)

    # The provider recovers: the other delete completes by itself.
    simulator.set_faults([])
    cleared = time.monotonic()
    wait_for(lambda: cluster.get("heals") is None, 90, "heals deleted", 0.5)
    heal_seconds = time.monotonic() - cleared
    remote = {str(p["id"]): p["status"] for p in sv.remote_of(simulator, namespace)}
    assert remote == {ids["escape"]: "RUNNING", ids["heals"]: "TERMINATED"}
    assert "Deleted" in cluster.reasons()

    # The orphan is the admin's now (that is what Orphan means); clean it up as they would.
    sv.delete_remote(simulator, ids["escape"])
    gone = sv.audit_gone(cluster, simulator)
    sv.report(
        request,
        "stuck-deletion",
        {
            "stuck_and_explained_after_seconds": round(stuck_after, 1),
            "delete_requests_refused": refused,
            "delete_failed_events": {n: cluster.event_count(n, "DeleteFailed") for n in ids},
            "released_after_orphan_patch_seconds": round(escape_seconds, 1),
            "orphaned_event": orphaned[0]["message"],
            "completed_after_fault_cleared_seconds": round(heal_seconds, 1),
            "leaks": len(gone.leaks),
        },
    )
