"""Simulator accounts (DESIGN §2.7): each `--api-key` is its own account with its own pods."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gpupod_operator.cli import build_parser
from gpupod_operator.simulator import SimulatorConfig, SimulatorServer
from gpupod_operator.simulator.cli import config_from_args

POD = {"name": "p", "image": "i", "gpuType": "NVIDIA_RTX_5090_32G", "gpuCount": 1}
KEYS = ("key-zero", "key-one")


def _config(api_key: str | tuple[str, ...] | None) -> SimulatorConfig:
    return SimulatorConfig(
        port=0, api_key=api_key, provision_seconds=0, pause_seconds=0, terminate_seconds=0
    )


@pytest.fixture
async def url() -> AsyncIterator[str]:
    async with SimulatorServer(_config(KEYS)) as server:
        yield server.url


def _as(url: str, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, headers={"X-Api-Key": key})


async def _create(client: httpx.AsyncClient, name: str) -> dict[str, Any]:
    payload = (await client.post("/v2/pods", json=POD | {"name": name})).json()
    assert payload["code"] == 10000, payload
    data: dict[str, Any] = payload["data"]
    return data


async def test_each_key_sees_only_its_own_pods(url: str) -> None:
    async with _as(url, KEYS[0]) as zero, _as(url, KEYS[1]) as one, httpx.AsyncClient() as admin:
        mine = await _create(zero, "of-zero")
        theirs = await _create(one, "of-one")
        assert [p["name"] for p in (await zero.get("/v2/pods")).json()["data"]] == ["of-zero"]
        assert [p["name"] for p in (await one.get("/v2/pods")).json()["data"]] == ["of-one"]
        # Another account's pod is "not found" for every operation, and stays untouched.
        for call in (
            one.get(f"/v2/pods/{mine['id']}"),
            one.delete(f"/v2/pods/{mine['id']}"),
            one.post(f"/v2/pods/{mine['id']}/pause"),
            one.post(f"/v2/pods/{mine['id']}/resume"),
        ):
            assert (await call).json()["code"] == 13000
        assert (await zero.get(f"/v2/pods/{mine['id']}")).json()["data"]["status"] == "RUNNING"
        # The admin view shows every pod with the index of the key that owns it.
        pods = {p["name"]: p["account"] for p in (await admin.get(f"{url}/_sim/pods")).json()}
        assert pods == {"of-zero": 0, "of-one": 1}
        by_account = (await admin.get(f"{url}/_sim/stats")).json()["byAccount"]
        assert by_account["0"] == {"create": 1, "list": 1, "get": 1}
        assert by_account["1"]["create"] == 1 and by_account["1"]["get"] == 1
        assert theirs["id"] != mine["id"]


async def test_an_unknown_key_is_refused_with_401(url: str) -> None:
    async with _as(url, "key-two") as other:
        response = await other.get("/v2/pods")
    assert response.status_code == 401
    assert response.json()["code"] == 40101


@pytest.mark.parametrize("api_key", [None, "only-key"])
async def test_no_key_and_single_key_keep_one_account(api_key: str | None) -> None:
    async with SimulatorServer(_config(api_key)) as server, _as(server.url, "only-key") as c:
        await _create(c, "a")
        pods = (await httpx.AsyncClient().get(f"{server.url}/_sim/pods")).json()
    assert [p["account"] for p in pods] == [0]


def test_api_key_repeats_on_the_command_line() -> None:
    args = build_parser().parse_args(["simulator", "--api-key", "a", "--api-key", "b"])
    assert config_from_args(args).api_keys == ("a", "b")
    assert config_from_args(build_parser().parse_args(["simulator"])).api_keys == ()
