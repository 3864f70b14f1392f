"""/readyz on the liveness port, against a real apiserver: ready once logged in and watching
GpuPods, never tied to the Yotta API; a standby is ready once it takes part in the election."""

from __future__ import annotations

import httpx
import pytest

from gpupod_operator.devenv.process import free_port

from .conftest import StartOperator
from .gpupods import wait_for

pytestmark = pytest.mark.e2e


def test_ready_and_live_with_the_yotta_api_unreachable(start_operator: StartOperator) -> None:
    # Nothing listens there: every Yotta call fails, readiness must not care.
    operator = start_operator(env={"YOTTA_API_URL": f"http://127.0.0.1:{free_port()}"})
    ready = httpx.get(operator.readiness_url, timeout=5)
    assert ready.status_code == 200, ready.text
    assert ready.json()["reason"] == "logged in and watching gpupods"
    live = httpx.get(operator.liveness_url, timeout=5)
    assert live.status_code == 200

    def failed_polls() -> int | None:
        count = httpx.get(operator.liveness_url, timeout=5).json()["remote"]["failedPolls"]
        return int(count) if count else None

    wait_for(failed_polls, 30, "a failed poll shown by liveness")
    assert httpx.get(operator.readiness_url, timeout=5).status_code == 200


def test_a_standby_is_ready_and_says_so(start_operator: StartOperator) -> None:
    lease = ["--leader-election", "--leader-election-namespace=default"]
    leader = start_operator(args=[*lease, "--leader-election-id=readyz-test"])
    standby = start_operator(args=[*lease, "--leader-election-id=readyz-test"])
    answers = [httpx.get(o.readiness_url, timeout=5) for o in (leader, standby)]
    assert [a.status_code for a in answers] == [200, 200]
    reasons = sorted(a.json()["reason"] for a in answers)
    assert reasons == ["logged in and watching gpupods", "standby: taking part in the election"]
