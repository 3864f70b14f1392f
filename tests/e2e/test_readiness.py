"""/readyz on the liveness port, against a real apiserver: ready once logged in and watching
GpuPods, never tied to the Yotta API; a standby is ready once it takes part in the election."""

from __future__ import annotations

import time

import httpx
import pytest

from gpupod_operator.controller.handlers import STARTUP_POLL_SECONDS
from gpupod_operator.devenv.process import free_port
from gpupod_operator.devenv.simulator_process import SimulatorProcess

from .conftest import StartOperator
from .gpupods import wait_for

pytestmark = pytest.mark.e2e


def test_ready_and_live_with_the_yotta_api_unreachable(start_operator: StartOperator) -> None:
    # Nothing listens there: every Yotta call fails, readiness must not care.
    operator = start_operator(env={"YOTTA_API_URL": f"http://127.0.0.1:{free_port()}"})
    ready = httpx.get(operator.readiness_url, timeout=5)
    assert ready.status_code == 200, ready.text
    assert ready.json()["reason"] == "logged in and watching gpupods"

    def failed_polls() -> int | None:
        count = httpx.get(operator.liveness_url, timeout=5).json()["remote"]["failedPolls"]
        return int(count) if count else None

    wait_for(failed_polls, 30, "a failed poll shown by liveness")
    assert httpx.get(operator.readiness_url, timeout=5).status_code == 200


def test_ready_soon_while_the_yotta_api_hangs(
    start_operator: StartOperator, simulator: SimulatorProcess
) -> None:
    """Connections that hang (the first poll would take its retries x 15 s timeouts): the
    startup waits for it only briefly, so readiness comes within seconds."""
    simulator.suspend()
    try:
        started = time.monotonic()
        operator = start_operator()  # returns once /readyz is 200
        took = time.monotonic() - started
        assert took < STARTUP_POLL_SECONDS + 15, f"ready after {took:.1f}s"
        assert httpx.get(operator.liveness_url, timeout=5).status_code == 200
    finally:
        simulator.resume()


def test_a_standby_is_ready_and_says_so(start_operator: StartOperator) -> None:
    lease = ["--leader-election", "--leader-election-namespace=default"]
    leader = start_operator(args=[*lease, "--leader-election-id=readyz-test"])
    standby = start_operator(args=[*lease, "--leader-election-id=readyz-test"])
    answers = [httpx.get(o.readiness_url, timeout=5) for o in (leader, standby)]
    assert [a.status_code for a in answers] == [200, 200]
    reasons = sorted(a.json()["reason"] for a in answers)
    assert reasons == ["logged in and watching gpupods", "standby: taking part in the election"]
