"""Survival 5: a Secret's value (sent to the provider as an env var) and the Yotta API key appear
nowhere a tenant or an operator admin can look: the operator's raw log file at DEBUG level (all
of its runs, not the redacted tail), every Event in the cluster, the GpuPod objects (status and
kopf's annotations included), /metrics and the liveness endpoint. Error paths are exercised on
purpose: lost and failed creates, a create the provider refuses, pause/resume, an operator
crash and restart, deletion."""

from __future__ import annotations

import base64
import json
import secrets

import httpx
import pytest

from gpupod_operator.devenv.controlplane import ControlPlane
from gpupod_operator.devenv.process import free_port
from gpupod_operator.devenv.simulator_process import SimulatorProcess

from . import survival as sv
from .conftest import StartOperator
from .gpupods import wait_for

pytestmark = pytest.mark.e2e

API_KEY = f"yotta-known-key-{secrets.token_hex(12)}"
simulator = sv.simulator_fixture(api_key=API_KEY)
# Every create is lost at first (the pods are created, the answers are not: they are found by
# name). A refused create that is lost leaves no pod, so it is only refused once creates get
# through: after the restart; every other operation keeps failing now and then throughout.
FAULTS = ["create:lost:1", "*:500:0.1"]
LATER_FAULTS = [f"{op}:500:0.1" for op in ("list", "get", "pause", "resume", "delete")]


def _needles(value: str) -> list[str]:
    """The value as written and as it would look base64-encoded (a Secret's data, a header)."""
    return [value, base64.b64encode(value.encode()).decode()]


def test_secret_values_and_the_api_key_are_nowhere_to_be_seen(
    control_plane: ControlPlane,
    namespace: str,
    simulator: SimulatorProcess,
    start_operator: StartOperator,
    request: pytest.FixtureRequest,
) -> None:
    assert simulator.api_key == API_KEY
    value = f"hf_{secrets.token_hex(20)}"
    cluster = sv.Cluster(control_plane, namespace)
    cluster.create_secret("hf", {"token": value})
    port = free_port()
    operator = start_operator(args=sv.metrics_args(port), log_level="DEBUG")
    simulator.set_faults(FAULTS)
    env = [
        {"name": "PLAIN", "value": "visible"},
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}},
    ]
    cluster.create("sec-run", env=env)
    cluster.create("sec-paused", env=env, paused=True)
    cluster.create("sec-refused", env=env, gpuType="NVIDIA_RTX_9999_1G")

    wait_for(lambda: sv.phase(cluster.get("sec-run")) == "Running", 90, "sec-run Running")
    operator.kill()  # a crash mid-life: the restart resumes every GpuPod (and logs their bodies)
    operator.start()
    wait_for(lambda: sv.phase(cluster.get("sec-paused")) == "Paused", 90, "sec-paused Paused")
    assert simulator.stats()["faults"]["create"]["lost"] >= 3  # one per GpuPod at least
    refused = sv.condition(cluster.get("sec-refused"), "Synced").get("reason")
    assert refused != "CreateRejected", "no create got through yet"
    simulator.set_faults(LATER_FAULTS)
    wait_for(
        lambda: (
            sv.condition(cluster.get("sec-refused"), "Synced").get("reason") == "CreateRejected"
        ),
        90,
        "sec-refused CreateRejected",
    )
    cluster.patch_spec("sec-run", paused=True)
    wait_for(lambda: sv.phase(cluster.get("sec-run")) == "Paused", 90, "sec-run Paused")
    cluster.patch_spec("sec-run", paused=False)
    wait_for(lambda: sv.phase(cluster.get("sec-run")) == "Running", 90, "sec-run Running")

    # The value did reach the provider: it is the pod's env there, and nowhere else.
    objs = cluster.all()
    for name in ("sec-run", "sec-paused"):
        pod = next(p for p in simulator.pods() if str(p["id"]) == objs[name]["status"]["podId"])
        got = {e["key"]: e["value"] for e in pod["environmentVars"]}
        assert got == {"PLAIN": "visible", "HF_TOKEN": value}, name

    metrics_url = f"http://127.0.0.1:{port}/metrics"
    sources: dict[str, str] = {
        "gpupods": json.dumps(objs),
        "annotations": json.dumps({n: o["metadata"].get("annotations") for n, o in objs.items()}),
        "metrics": sv.scrape(metrics_url),
        "liveness": httpx.get(operator.liveness_url, timeout=5).text,
    }
    for name, obj in objs.items():  # kopf's own state (its diff base) is part of what we scan
        assert obj["status"].get("lastHandled"), name
    for name in list(objs):
        cluster.delete(name)
    wait_for(lambda: not cluster.all(), 90, "every GpuPod gone", 0.5)
    gone = sv.audit_gone(cluster, simulator)

    raw_log = operator.log_path.read_bytes().decode("utf-8", errors="replace")
    sources["operator log (raw file, every run)"] = raw_log
    sources["events (all namespaces)"] = json.dumps(
        control_plane.request("GET", "/api/v1/events")["items"]
    )
    sources["metrics after deletion"] = sv.scrape(metrics_url)
    needles = [("secret", n) for n in _needles(value)] + [("api key", n) for n in _needles(API_KEY)]
    leaks = {
        where: found
        for where, text in sources.items()
        if (found := [what for what, needle in needles if needle in text])
    }
    assert "DEBUG" in raw_log and "HF_TOKEN" in sources["gpupods"]  # we looked at the real thing
    sv.report(
        request,
        "secrets",
        {
            "sources_scanned": {k: len(v) for k, v in sources.items()},
            "faults_injected": sv.faults_injected(simulator),
            "operator_runs": raw_log.count("starting operator"),
            "hits": sum(len(v) for v in leaks.values()),
            "leaks": len(gone.leaks),
        },
    )
    assert not leaks, f"secret material found in: {leaks}"
