"""Read-only calls against the real Yotta API; skipped unless YOTTA_API_KEY is set.

Only list calls are made: nothing here can create, change or bill anything.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from gpupod_operator.yotta import PodStatus, YottaClient

pytestmark = pytest.mark.contract


@pytest.fixture
async def client() -> AsyncIterator[YottaClient]:
    key = os.environ.get("YOTTA_API_KEY")
    if not key:
        pytest.skip("YOTTA_API_KEY is not set: the contract suite needs the real API")
    url = os.environ.get("YOTTA_API_URL", "https://api.yottalabs.ai")
    async with YottaClient(url, key, qps=2, burst=2, max_retries=2) as yotta:
        yield yotta


async def test_list_gpu_types(client: YottaClient) -> None:
    types = await client.list_gpu_types()
    assert types, "the catalog should not be empty"
    for gpu in types:
        assert gpu.gpuType
        assert all(region.region for region in gpu.regions)


async def test_list_pods(client: YottaClient) -> None:
    pods = await client.list_pods()
    for pod in pods:
        assert pod.id.isdigit()
        # Anything the parser does not recognise is a finding for the reference doc.
        assert pod.status is not PodStatus.UNKNOWN, f"unrecognised status for pod {pod.id}"


async def test_list_pods_with_filters(client: YottaClient) -> None:
    running = await client.list_pods(statuses=[PodStatus.RUNNING, PodStatus.PAUSED])
    assert all(p.status in (PodStatus.RUNNING, PodStatus.PAUSED) for p in running)
