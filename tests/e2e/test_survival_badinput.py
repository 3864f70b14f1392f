"""Survival 4: bad input with the operator running. Every case of the CRD validation table
(`test_crd_validation.REJECTED`: wrong types and bounds of every field, gpuCount 3, port 0 and
70000, env with both value and valueFrom, missing image, a 300-character name, unknown
fields...) and every create-time field change under `updatePolicy: Reject` is refused by the API
server with an error naming the field, and none of it reaches the provider: the simulator counts
one create (the valid GpuPod the changes were tried on) and nothing else.

What the schema cannot know (a GPU type, region or registry credential the provider does not
have, more GPUs than a node holds, a volume that does not exist) is refused by the provider:
those GpuPods end Failed with Synced=False CreateRejected and the API's message, and are not
retried while the operator is demonstrably busy (poll rounds and another GpuPod's create).
"""

from __future__ import annotations

from typing import Any

import pytest

from gpupod_operator.devenv.controlplane import ControlPlane
from gpupod_operator.devenv.simulator_process import SimulatorProcess

from . import survival as sv
from .conftest import StartOperator
from .gpupods import wait_for
from .test_crd_validation import (
    BASE,
    CHANGES,
    RECREATE_HINT,
    REJECTED,
    Change,
    _rejected_manifest,
    apply,
    assert_mentions,
    gpupod,
    merged,
    run_parallel,
)

pytestmark = pytest.mark.e2e

simulator = sv.simulator_fixture()

# One valid GpuPod carrying every field the immutability cases change (their `before`s), except
# a persistent volume: the simulator has none, so it would be refused (see UNCATCHABLE).
IMMUTABLE_BASE: dict[str, Any] = {
    **BASE,
    **{k: v for c in CHANGES for k, v in c.before.items() if k != "persistentVolumes"},
}
IMMUTABLE: list[Change] = [c for c in CHANGES if "persistentVolumes" not in c.before]

# Valid for the schema, refused by the provider (the simulator's validation), and why. (A GPU
# count the CRD allowed but the simulator refused was here too, until both read one table of
# API limits, `api_limits.py`: no such count exists any more.)
UNCATCHABLE: dict[str, tuple[dict[str, Any], str]] = {
    "unknown-gpu-type": ({"gpuType": "NVIDIA_RTX_9999_1G"}, "gpuType"),
    "missing-registry-credential": ({"containerRegistryAuthId": 424242}, "containerRegistryAuth"),
    "unknown-region": ({"regions": ["mars-north-1"]}, "region"),
    "missing-volume": (
        {"persistentVolumes": [{"volumeId": 99999, "mountPath": "/data"}]},
        "volumeId 99999",
    ),
}


def test_bad_input_never_reaches_the_provider(
    control_plane: ControlPlane,
    namespace: str,
    simulator: SimulatorProcess,
    start_operator: StartOperator,
    request: pytest.FixtureRequest,
) -> None:
    cluster = sv.Cluster(control_plane, namespace)
    start_operator(args=["--sync-interval", "1", "--fast-sync-interval", "0.5"])

    # ---- refused by the API server, with the operator watching the namespace
    results = run_parallel(
        lambda case: apply(control_plane, _rejected_manifest(case, namespace)), REJECTED
    )
    for case, result in zip(REJECTED, results, strict=True):
        assert result.returncode != 0, f"{case.id} was accepted:\n{result.stdout}"
        assert_mentions(result, case.expect)

    created = apply(control_plane, gpupod("imm", namespace, IMMUTABLE_BASE))
    assert created.returncode == 0, created.stderr
    pod_id = wait_for(
        lambda: sv.phase(o := cluster.get("imm")) == "Running" and o["status"]["podId"],
        60,
        "imm Running",
    )

    def change(c: Change) -> Any:
        return apply(control_plane, gpupod("imm", namespace, merged(IMMUTABLE_BASE, c.after)))

    for c, result in zip(IMMUTABLE, run_parallel(change, IMMUTABLE), strict=True):
        assert result.returncode != 0, f"{c.id}: change accepted under Reject"
        assert_mentions(result, (f"spec.{c.field}: Forbidden", RECREATE_HINT))
    assert sorted(cluster.all()) == ["imm"], "a refused object was stored"
    assert sv.results_of(simulator, "create") == {"ok": 1}
    assert str((cluster.get("imm") or {})["status"]["podId"]) == pod_id

    # ---- refused by the provider
    for name, (spec, _) in UNCATCHABLE.items():
        result = apply(control_plane, gpupod(name, namespace, {**BASE, **spec}))
        assert result.returncode == 0, f"{name}: {result.stderr}"

    def rejected() -> dict[str, dict[str, Any]] | None:
        objs = cluster.all()
        synced = {n: sv.condition(objs.get(n), "Synced") for n in UNCATCHABLE}
        done = all(c.get("reason") == "CreateRejected" for c in synced.values())
        return synced if done else None

    synced = wait_for(rejected, 60, "every provider-refused GpuPod CreateRejected", 0.5)
    objs = cluster.all()
    for name, (_, field) in UNCATCHABLE.items():
        assert synced[name]["status"] == "False"
        assert field in synced[name]["message"], f"{name}: {synced[name]['message']}"
        assert "the Yotta API rejected the pod" in synced[name]["message"]
        assert sv.phase(objs[name]) == "Failed" and not objs[name]["status"].get("podId")
        assert cluster.event_count(name, "CreateRejected", "Warning") == 1

    # No retry storm: the operator stays busy (poll rounds, a new GpuPod created and Running)
    # and the refused creates are not repeated meanwhile.
    lists = sv.requests_by_op(simulator).get("list", 0)
    cluster.create("witness")
    wait_for(lambda: sv.phase(cluster.get("witness")) == "Running", 60, "witness Running")
    wait_for(lambda: sv.requests_by_op(simulator).get("list", 0) >= lists + 5, 60, "5 polls")
    creates = sv.results_of(simulator, "create")
    assert creates == {"ok": 2, "10001": len(UNCATCHABLE)}, creates
    by_op = sv.requests_by_op(simulator)
    assert set(by_op) <= {"create", "list", "get"}, by_op  # never a pause/resume/delete

    sv.audit_running(cluster, simulator, ["imm", "witness"], absent=tuple(UNCATCHABLE))
    for name in cluster.all():
        cluster.delete(name)
    wait_for(lambda: not cluster.all(), 60, "every GpuPod gone", 0.5)
    gone = sv.audit_gone(cluster, simulator)
    sv.report(
        request,
        "bad-input",
        {
            "refused_by_api_server_on_create": len(REJECTED),
            "refused_immutable_changes": len(IMMUTABLE),
            "refused_by_provider": len(UNCATCHABLE),
            "bad_inputs_tried": len(REJECTED) + len(IMMUTABLE) + len(UNCATCHABLE),
            "remote_create_requests": creates,
            "polls_while_checking_for_retries": sv.requests_by_op(simulator)["list"] - lists,
            "leaks": len(gone.leaks),
        },
    )
