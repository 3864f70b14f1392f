"""Thousands of pods in the simulator: correctness under load, not timing.

The bulk traffic goes through a raw aiohttp session (the simulator is what is under load
here; httpx's per-request overhead would dominate otherwise); listing and parsing the
result goes through YottaClient, and a smaller burst checks the client's shared pool.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from gpupod_operator.simulator import SimulatorConfig, SimulatorServer
from gpupod_operator.yotta import CreatePodRequest, PodStatus, YottaClient

N = 2000
KEY = {"X-Api-Key": "k"}


def config() -> SimulatorConfig:
    return SimulatorConfig(
        port=0, provision_seconds=0, pause_seconds=0, terminate_seconds=0, seed=9
    )


async def test_two_thousand_pods_created_listed_paused_and_deleted() -> None:
    async with (
        SimulatorServer(config()) as server,
        aiohttp.ClientSession(server.url, headers=KEY) as http,
        YottaClient(server.url, "k", qps=0) as client,
    ):

        async def call(method: str, path: str, **kw: Any) -> Any:
            async with http.request(method, path, **kw) as response:
                payload = await response.json()
            assert payload["code"] == 10000, payload
            return payload["data"]

        bodies = [
            {
                "name": f"load-{i}",
                "image": "i",
                "gpuType": "NVIDIA_H100_80G",
                "gpuCount": 1,
                "regions": [("us-east-1", "us-west-1")[i % 2]],
            }
            for i in range(N)
        ]
        created = await asyncio.gather(*(call("POST", "/v2/pods", json=b) for b in bodies))
        ids = [str(p["id"]) for p in created]
        assert len(set(ids)) == N

        listed = await client.list_pods()
        assert len(listed) == N and {p.id for p in listed} == set(ids)
        assert {p.name for p in listed} == {f"load-{i}" for i in range(N)}
        assert all(p.status is PodStatus.RUNNING for p in listed)
        west = await client.list_pods(regions=["us-west-1"])
        assert len(west) == N // 2 and all(p.region == "us-west-1" for p in west)

        await asyncio.gather(*(call("POST", f"/v2/pods/{i}/pause") for i in ids[:500]))
        paused = await client.list_pods(statuses=[PodStatus.PAUSED])
        assert {p.id for p in paused} == set(ids[:500])

        await asyncio.gather(*(call("DELETE", f"/v2/pods/{i}") for i in ids))
        alive = [s for s in PodStatus if s not in (PodStatus.TERMINATED, PodStatus.UNKNOWN)]
        assert await client.list_pods(statuses=alive) == []
        assert len(await client.list_pods(statuses=[PodStatus.TERMINATED])) == N

        stats = server.simulator.stats.snapshot()["requests"]
        assert stats["create"] == {"ok": N} and stats["delete"] == {"ok": N}
        assert stats["pause"] == {"ok": 500} and stats["list"] == {"ok": 5}
        assert server.simulator.store.pod_counts()["live"] == 0


async def test_client_burst_through_one_pool() -> None:
    async with SimulatorServer(config()) as server:
        async with YottaClient(server.url, "k", qps=0, max_connections=8) as client:
            requests = [
                CreatePodRequest(
                    name=f"burst-{i}", image="i", gpuType="NVIDIA_RTX_4090_24G", gpuCount=1
                )
                for i in range(200)
            ]
            pods = await asyncio.gather(*(client.create_pod(r) for r in requests))
            await asyncio.gather(*(client.delete_pod(p.id) for p in pods))
        assert len({p.id for p in pods}) == 200
        assert server.simulator.store.pod_counts()["byStatus"] == {"TERMINATED": 200}
