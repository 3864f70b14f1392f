"""Simulator admin endpoints (/_sim/*), stats, and what each fault kind looks like on the wire."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gpupod_operator.simulator import FaultRule, SimulatorConfig, SimulatorServer
from gpupod_operator.simulator.faults import FaultInjector

POD = {"name": "p", "image": "i", "gpuType": "NVIDIA_RTX_5090_32G", "gpuCount": 1}


class Env:
    def __init__(self, server: SimulatorServer, api: httpx.AsyncClient, admin: httpx.AsyncClient):
        self.server, self.api, self.admin = server, api, admin

    async def create(self, **fields: Any) -> dict[str, Any]:
        payload = (await self.api.post("/v2/pods", json=POD | fields)).json()
        assert payload["code"] == 10000
        data: dict[str, Any] = payload["data"]
        return data

    async def faults(self, *rules: str) -> httpx.Response:
        return await self.admin.put("/_sim/faults", json={"faults": list(rules)})


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    config = SimulatorConfig(
        port=0,
        provision_seconds=0,
        pause_seconds=0,
        terminate_seconds=0,
        seed=11,
        timeout_fault_seconds=0.3,
    )
    async with (
        SimulatorServer(config) as server,
        httpx.AsyncClient(base_url=server.url, headers={"X-Api-Key": "k"}) as api,
        httpx.AsyncClient(base_url=server.url) as admin,
    ):
        yield Env(server, api, admin)


async def test_stats_counts_requests_by_op_and_result(env: Env) -> None:
    pod = await env.create()
    await env.api.get(f"/v2/pods/{pod['id']}")
    await env.api.get("/v2/pods/1")  # 13000
    await env.api.post("/v2/pods", json=POD | {"gpuCount": 3})  # 10001
    await env.api.post(f"/v2/pods/{pod['id']}/resume")  # 12001
    await env.api.post(f"/v2/pods/{pod['id']}/pause")
    await env.api.get("/v2/vms/types")
    await env.admin.get("/v2/pods")  # 401
    await env.faults("delete:500:1")
    await env.api.delete(f"/v2/pods/{pod['id']}")
    stats = (await env.admin.get("/_sim/stats")).json()
    assert stats["requests"] == {
        "create": {"ok": 1, "10001": 1},
        "get": {"ok": 1, "13000": 1},
        "resume": {"12001": 1},
        "pause": {"ok": 1},
        "types": {"ok": 1},
        "list": {"401": 1},
        "delete": {"500": 1},
    }
    assert stats["faults"] == {"delete": {"500": 1}}
    assert stats["pods"] == {"live": 1, "total": 1, "byStatus": {"PAUSED": 1}, "heldGpus": 0}


async def test_sim_pods_lists_every_pod_in_the_api_shape(env: Env) -> None:
    kept = await env.create(name="kept")
    gone = await env.create(name="gone")
    await env.api.delete(f"/v2/pods/{gone['id']}")
    pods = (await env.admin.get("/_sim/pods")).json()
    assert [(p["name"], p["status"]) for p in pods] == [("gone", "TERMINATED"), ("kept", "RUNNING")]
    assert pods[1]["id"] == kept["id"] and isinstance(pods[1]["id"], int)
    assert pods[1]["singleCardPrice"] == "0.65"
    stats = (await env.admin.get("/_sim/stats")).json()["pods"]
    assert (stats["live"], stats["total"]) == (1, 2)


async def test_force_status_vanish_reset_and_health(env: Env) -> None:
    pod = await env.create()
    forced = await env.admin.put(f"/_sim/pods/{pod['id']}/status", json={"status": "FAILED"})
    assert forced.status_code == 200 and forced.json()["status"] == "FAILED"
    got = (await env.api.get(f"/v2/pods/{pod['id']}")).json()["data"]
    assert got["status"] == "FAILED" and got["failureReason"] == "forced by /_sim"
    assert (
        await env.admin.put(f"/_sim/pods/{pod['id']}/status", json={"status": "ZZZ"})
    ).status_code == 400
    assert (
        await env.admin.put("/_sim/pods/1/status", json={"status": "RUNNING"})
    ).status_code == 404
    assert (await env.admin.delete(f"/_sim/pods/{pod['id']}")).status_code == 200
    assert (await env.api.get(f"/v2/pods/{pod['id']}")).json()["code"] == 13000
    assert (await env.admin.delete(f"/_sim/pods/{pod['id']}")).status_code == 404

    await env.create()
    assert (await env.admin.post("/_sim/reset")).json() == {"reset": True}
    stats = (await env.admin.get("/_sim/stats")).json()
    assert stats["requests"] == {} and stats["pods"]["total"] == 0
    assert (await env.admin.get("/_sim/health")).json() == {"ok": True}


async def test_fault_set_replaced_at_runtime(env: Env) -> None:
    assert (await env.faults("delete:500:1.0", "*:lost:0.25")).json() == {
        "faults": ["delete:500:1", "*:lost:0.25"]
    }
    assert (await env.admin.get("/_sim/faults")).json()["faults"] == ["delete:500:1", "*:lost:0.25"]
    for bad in (["delete:501:1"], ["nope:500:1"], ["get:500:2"], ["get:500"], "x"):
        assert (await env.admin.put("/_sim/faults", json={"faults": bad})).status_code == 400
    assert (await env.faults()).json() == {"faults": []}
    assert env.server.simulator.faults.rules == []


async def test_faults_never_apply_to_admin_endpoints(env: Env) -> None:
    await env.faults("*:500:1")
    for path in ("/_sim/stats", "/_sim/pods", "/_sim/faults", "/_sim/health"):
        assert (await env.admin.get(path)).status_code == 200
    assert (await env.api.get("/v2/vms/types")).status_code == 500  # `*` covers types


@pytest.mark.parametrize(
    ("kind", "status", "code", "retry_after"),
    [("500", 500, 10002, None), ("429", 429, 429, "1"), ("10002", 200, 10002, None)],
)
async def test_rejecting_faults_do_not_perform_the_operation(
    env: Env, kind: str, status: int, code: int, retry_after: str | None
) -> None:
    await env.faults(f"create:{kind}:1")
    response = await env.api.post("/v2/pods", json=POD)
    assert response.status_code == status and response.json()["code"] == code
    assert response.headers.get("Retry-After") == retry_after
    assert env.server.simulator.store.pods == {}


async def test_timeout_fault_performs_then_answers_late(env: Env) -> None:
    await env.faults("create:timeout:1")
    started = time.monotonic()
    response = await env.api.post("/v2/pods", json=POD)
    assert time.monotonic() - started >= 0.3
    assert response.json()["code"] == 10000  # the answer does come, just too late
    with pytest.raises(httpx.ReadTimeout):
        await env.api.post("/v2/pods", json=POD, timeout=0.05)
    assert len(env.server.simulator.store.pods) == 2  # performed both times


async def test_lost_fault_performs_then_alternates_500_and_dropped_connection(env: Env) -> None:
    await env.faults("create:lost:1")
    outcomes = []
    for _ in range(4):
        try:
            outcomes.append(str((await env.api.post("/v2/pods", json=POD)).status_code))
        except httpx.RemoteProtocolError:
            outcomes.append("dropped")
    assert sorted(outcomes[:2]) == ["500", "dropped"] and outcomes[2:] == outcomes[:2]
    assert len(env.server.simulator.store.pods) == 4
    stats = (await env.admin.get("/_sim/stats")).json()
    assert stats["requests"]["create"] == {"500": 2, "dropped": 2}
    assert stats["faults"]["create"] == {"lost": 4}


def test_fault_draws_are_seeded_and_match_the_rate() -> None:
    rules = [FaultRule.parse("get:500:0.2"), FaultRule.parse("*:lost:0.1")]

    def draws(seed: int) -> list[str | None]:
        injector = FaultInjector(rules, seed)
        return [injector.draw(op) for op in ["get", "list"] * 500]

    first = draws(1)
    assert first == draws(1) and first != draws(2)
    gets, lists = first[0::2], first[1::2]
    assert 60 <= gets.count("500") <= 140
    assert lists.count("500") == 0 and 20 <= lists.count("lost") <= 80


@pytest.mark.parametrize(
    "text", ["get", "get:500", "get:500:x", "get:500:1.5", "reboot:500:1", "get:503:1"]
)
def test_fault_rule_parse_errors(text: str) -> None:
    with pytest.raises(ValueError):
        FaultRule.parse(text)
