"""Cost guardrails end to end: the lifetime (pause or delete after maxRunDuration of RUNNING
time, counted across restarts and pauses), the price cap (deleted before it runs) and the
spend metrics, on the real operator process against the simulator over HTTP.

The examples `examples/gpupod-lifetime.yaml` and `examples/gpupod-price-cap.yaml` are applied
as the README shows them."""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpupod_operator.devenv.controlplane import ControlPlane
from gpupod_operator.devenv.process import free_port
from gpupod_operator.devenv.simulator_process import SimulatorProcess

from . import survival as sv
from .conftest import StartOperator
from .gpupods import GpuPods, condition, wait_for

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
INTERVAL = 3.0  # --sync-interval: the poller's slow pace, and the warning's lead time
PAUSE_SECONDS = 0.5  # the simulator's pause time (conftest FAST_SIMULATOR_ARGS)
PROVISION_SECONDS = 3.0  # long enough to tell "deleted before RUNNING" apart
OPERATOR_ARGS = ["--sync-interval", str(INTERVAL), "--fast-sync-interval", "1"]
PRICE_4090 = Decimal("0.45")  # simulator/catalog.py

simulator = sv.simulator_fixture("--provision-seconds", str(PROVISION_SECONDS))


def _example(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    return doc


def _time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _remote(sim: SimulatorProcess, pod_id: str) -> dict[str, Any]:
    return next(p for p in sim.pods() if str(p["id"]) == pod_id)


def _events(pods: GpuPods, name: str) -> dict[str, dict[str, Any]]:
    """The first Event of each reason for `name`."""
    out: dict[str, dict[str, Any]] = {}
    for e in sorted(pods.events(name), key=lambda e: e["firstTimestamp"]):
        out.setdefault(e["reason"], e)
    return out


def _synced(pods: GpuPods, name: str, reason: str) -> dict[str, Any]:
    """The Synced condition once it is False with `reason`."""
    return wait_for(
        lambda: (c := pods.condition(name, "Synced")).get("reason") == reason and c,
        30,
        f"Synced=False {reason}",
    )


def _stays(pods: GpuPods, name: str, phase: str, remote: Any = None) -> None:
    """`name` keeps `phase` (and `remote()` stays true) over three slow poll intervals."""
    deadline = time.monotonic() + 3 * INTERVAL
    while time.monotonic() < deadline:
        assert pods.status(name)["phase"] == phase
        assert remote is None or remote()
        time.sleep(0.5)


def _requests(sim: SimulatorProcess, op: str) -> int:
    return sum(sim.stats()["requests"].get(op, {}).values())


def test_lifetime_pause_pauses_at_expiry_warns_before_and_stays_paused(
    control_plane: ControlPlane,
    namespace: str,
    simulator: SimulatorProcess,
    start_operator: StartOperator,
) -> None:
    port = free_port()
    start_operator(args=[*OPERATOR_ARGS, *sv.metrics_args(port)])
    pods = GpuPods(control_plane, namespace)
    obj = _example("gpupod-lifetime.yaml")
    assert obj["spec"]["lifetime"] == {"maxRunDuration": "8h", "action": "Pause"}
    pods.apply(obj)
    status = wait_for(
        lambda: (s := pods.status("train")).get("expiresAt") and s, 30, "expiresAt while running"
    )
    left = _time(status["expiresAt"]) - dt.datetime.now(dt.UTC)
    assert dt.timedelta(hours=7, minutes=59) < left <= dt.timedelta(hours=8)
    pod_id = status["podId"]

    # Shorten it to 20 s of RUNNING time: the same poller enforces it.
    pods.patch_spec("train", lifetime={"maxRunDuration": "20s", "action": "Pause"})
    expires = wait_for(
        lambda: (
            (e := pods.status("train").get("expiresAt"))
            and _time(e) - dt.datetime.now(dt.UTC) < dt.timedelta(minutes=1)
            and _time(e)
        ),
        10,
        "expiresAt 20s after the pod started running",
    )
    paused_at = wait_for(
        lambda: _remote(simulator, pod_id)["status"] == "PAUSED" and dt.datetime.now(dt.UTC),
        60,
        "the remote pod PAUSED by its lifetime",
        interval=0.1,
    )
    late = (paused_at - expires).total_seconds()
    print(f"\nlifetime: PAUSED at the provider {late:.2f}s after expiresAt")
    assert late <= INTERVAL + PAUSE_SECONDS + 1.0

    status = pods.wait_phase("train", "Paused", timeout=30)
    synced = _synced(pods, "train", "MaxRunDurationReached")
    assert synced["status"] == "False" and "raise spec.lifetime.maxRunDuration" in synced["message"]
    cost = status["cost"]
    assert cost["guard"] == "MaxRunDurationReached"
    assert 20 <= cost["runningSeconds"] <= 20 + INTERVAL + 2
    # price x running time; each write rounds to a millionth of a dollar (one write a second).
    exact = PRICE_4090 * cost["runningSeconds"] / 3600
    assert abs(Decimal(cost["accrued"]) - exact) <= Decimal("0.000001") * cost["runningSeconds"]

    events = wait_for(
        lambda: "MaxRunDurationReached" in (ev := _events(pods, "train")) and ev,
        15,
        "the MaxRunDurationReached Event",
    )
    before, after = events["MaxRunDurationExpiring"], events["MaxRunDurationReached"]
    assert before["type"] == after["type"] == "Warning"
    lead = (expires - _time(before["firstTimestamp"])).total_seconds()
    print(f"lifetime: warned {lead:.2f}s before expiresAt")
    assert 0 < lead <= INTERVAL + 1
    assert _time(after["firstTimestamp"]) >= expires
    assert "runs out in" in before["message"] and "paused" in after["message"]

    # Not resumed by itself: over several poll intervals, no resume call and still PAUSED.
    resumes = _requests(simulator, "resume")
    _stays(pods, "train", "Paused", lambda: _remote(simulator, pod_id)["status"] == "PAUSED")
    assert _requests(simulator, "resume") == resumes == 0

    # The metrics: spend in the namespace, the pod's price (0 while paused).
    text = sv.scrape(f"http://127.0.0.1:{port}/metrics")
    spent = sv.metric(text, "gpupod_cost_dollars_total", f'namespace="{namespace}"')
    assert spent is not None and spent == pytest.approx(float(cost["accrued"]), abs=1e-6)
    labels = f'name="train",namespace="{namespace}"'
    assert sv.metric(text, "gpupod_price_per_hour", labels) == 0.0

    # Raising maxRunDuration above the running time resumes it (the README's command).
    pods.patch_spec("train", lifetime={"maxRunDuration": "12h"})
    pods.wait_phase("train", "Running", timeout=30)
    assert _requests(simulator, "resume") == 1
    wait_for(
        lambda: (
            sv.metric(
                sv.scrape(f"http://127.0.0.1:{port}/metrics"), "gpupod_price_per_hour", labels
            )
            == float(PRICE_4090)
        ),
        15,
        "gpupod_price_per_hour of the running pod",
    )
    pods.delete("train")
    pods.wait_gone("train")
    wait_for(
        lambda: (
            sv.metric(
                sv.scrape(f"http://127.0.0.1:{port}/metrics"), "gpupod_price_per_hour", labels
            )
            is None
        ),
        3 * INTERVAL,
        "the price series of a deleted GpuPod to go",
    )


def test_running_seconds_survive_a_crash_and_a_pause(
    control_plane: ControlPlane,
    namespace: str,
    simulator: SimulatorProcess,
    start_operator: StartOperator,
) -> None:
    operator = start_operator(args=OPERATOR_ARGS)
    pods = GpuPods(control_plane, namespace)
    pods.create("long", lifetime={"maxRunDuration": "1h"})
    pods.wait_phase("long", "Running", timeout=30)
    before = wait_for(
        lambda: (c := pods.status("long").get("cost", {})).get("runningSeconds", 0) >= 4 and c,
        20,
        "4 s of running time",
    )

    # SIGKILL: the checkpoint is in the status; the time the operator is down still counts.
    operator.kill()
    down = pods.status("long")["cost"]
    operator.start()
    after = wait_for(
        lambda: (c := pods.status("long")["cost"])["countedUntil"] > down["countedUntil"] and c,
        20,
        "a checkpoint after the restart",
    )
    gap = (_time(after["countedUntil"]) - _time(down["countedUntil"])).total_seconds()
    # RUNNING throughout: every second since the last checkpoint counts, exactly.
    assert after["runningSeconds"] == down["runningSeconds"] + gap
    assert after["runningSeconds"] >= before["runningSeconds"]

    # Paused time does not count; resuming continues from there, never from 0.
    pods.patch_spec("long", paused=True)
    pods.wait_phase("long", "Paused", timeout=30)
    paused = pods.status("long")["cost"]
    later = wait_for(
        lambda: (
            (c := pods.status("long")["cost"])["countedUntil"]
            >= st_after(paused["countedUntil"], 2 * INTERVAL)
            and c
        ),
        20,
        "checkpoints while paused",
    )
    assert later["runningSeconds"] == paused["runningSeconds"] and later["running"] is False
    assert later["accrued"] == paused["accrued"]
    pods.patch_spec("long", paused=False)
    pods.wait_phase("long", "Running", timeout=30)
    resumed = wait_for(
        lambda: (
            (c := pods.status("long")["cost"])["runningSeconds"] > paused["runningSeconds"] and c
        ),
        20,
        "running time counting again after the resume",
    )
    print(
        f"\nrunningSeconds: {down['runningSeconds']} at the kill, {after['runningSeconds']} after "
        f"restart (+{gap:.0f}s down), {paused['runningSeconds']} paused, "
        f"{resumed['runningSeconds']} resumed"
    )
    assert condition(pods.get("long"), "Ready")["status"] == "True"


def st_after(stamp: str, seconds: float) -> str:
    """The RFC 3339 instant `seconds` after `stamp` (comparable as a string)."""
    moved = _time(stamp) + dt.timedelta(seconds=seconds)
    return moved.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_lifetime_delete_terminates_the_pod_and_keeps_the_gpupod(
    control_plane: ControlPlane,
    namespace: str,
    simulator: SimulatorProcess,
    start_operator: StartOperator,
) -> None:
    start_operator(args=OPERATOR_ARGS)
    pods = GpuPods(control_plane, namespace)
    pods.create("short", lifetime={"maxRunDuration": "5s", "action": "Delete"})
    pod_id = pods.wait_phase("short", "Running", timeout=30)["podId"]
    wait_for(
        lambda: _remote(simulator, pod_id)["status"] == "TERMINATED",
        30,
        "the remote pod TERMINATED by its lifetime",
    )
    status = pods.wait_phase("short", "Terminated", timeout=30)
    synced = _synced(pods, "short", "MaxRunDurationReached")
    assert "deleted" in synced["message"] and status["cost"]["runningSeconds"] >= 5
    # Kept as Terminated over several polls, and nothing created again.
    _stays(pods, "short", "Terminated")
    assert _requests(simulator, "create") == 1
    assert "MaxRunDurationReached" in pods.event_reasons("short")
    assert "RemotePodTerminated" not in pods.event_reasons("short")
    pods.delete("short")
    pods.wait_gone("short")


def test_price_cap_deletes_before_running_and_never_recreates(
    control_plane: ControlPlane,
    namespace: str,
    simulator: SimulatorProcess,
    start_operator: StartOperator,
) -> None:
    start_operator(args=OPERATOR_ARGS)
    pods = GpuPods(control_plane, namespace)
    obj = _example("gpupod-price-cap.yaml")
    assert obj["spec"]["maxPricePerHour"] == "0.50"
    pods.apply(obj)  # an RTX 4090 at $0.45/h: under the cap, it runs
    assert pods.wait_phase("capped", "Running", timeout=30)["pricePerHour"] == "0.45"

    # The same cap on an RTX 5090 ($0.65/h): deleted as soon as the create answers.
    obj["metadata"]["name"] = "too-dear"
    obj["spec"]["gpuType"] = "NVIDIA_RTX_5090_32G"
    pods.apply(obj)
    status = pods.wait_phase("too-dear", "Failed", timeout=30)
    synced = _synced(pods, "too-dear", "PriceExceeded")
    assert synced["status"] == "False"
    assert "$0.65/h" in synced["message"] and "$0.50/h" in synced["message"]
    assert status["cost"]["guard"] == "PriceExceeded" and status["cost"]["runningSeconds"] == 0
    remote = wait_for(
        lambda: (p := _remote(simulator, status["podId"]))["status"] == "TERMINATED" and p,
        10,
        "the remote pod TERMINATED",
    )
    deleted_ms = remote["updatedAt"] - 500  # TERMINATED 0.5 s after the delete
    ran_after_ms = PROVISION_SECONDS * 1000
    print(f"\nprice cap: deleted {(deleted_ms - remote['createdAt']) / 1000:.2f}s after create")
    assert deleted_ms - remote["createdAt"] < ran_after_ms  # it never reached RUNNING

    creates = _requests(simulator, "create")
    _stays(pods, "too-dear", "Failed")
    assert _requests(simulator, "create") == creates == 2  # one per GpuPod, no re-create
    reasons = pods.event_reasons("too-dear")
    assert "PriceExceeded" in reasons and "Running" not in reasons
    events = [e for e in pods.events("too-dear") if e["reason"] == "PriceExceeded"]
    assert events[0]["type"] == "Warning" and "$0.65/h" in events[0]["message"]
    assert condition(pods.get("too-dear"), "Ready")["status"] == "False"
    for name in ("capped", "too-dear"):
        pods.delete(name)
        pods.wait_gone(name)
