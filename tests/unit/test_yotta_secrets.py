"""The API key and env values never appear in reprs, strs, errors, tracebacks or logs."""

from __future__ import annotations

import logging
import random
import traceback
from typing import Any

import httpx
import pytest

from gpupod_operator.simulator import FaultRule, SimulatorConfig, SimulatorServer
from gpupod_operator.yotta import (
    CreatePodRequest,
    EnvVar,
    InvalidRequest,
    OutcomeUnknown,
    Transient,
    YottaClient,
    YottaError,
)

API_KEY = "yk-SUPERSECRET-KEY-4f1e"
ENV_SECRET = "hf_ENV-SECRET-VALUE-9a8b"
SECRETS = (API_KEY, ENV_SECRET)


def assert_clean(*texts: Any) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in str(text), f"secret leaked into: {str(text)[:200]}"


def request(name: str = "ns-secret-pod") -> CreatePodRequest:
    return CreatePodRequest(
        name=name,
        image="nginx",
        gpuType="NVIDIA_RTX_4090_24G",
        gpuCount=1,
        environmentVars=[EnvVar(key="HF_TOKEN", value=ENV_SECRET)],
    )


async def _no_sleep(seconds: float) -> None:
    return None


def _formatted(err: BaseException) -> str:
    return "".join(traceback.format_exception(err))


async def test_client_and_request_reprs_are_clean() -> None:
    client = YottaClient("http://127.0.0.1:1", API_KEY)
    req = request()
    assert_clean(
        repr(client),
        str(client),
        repr(req),
        str(req),
        req.model_dump_json(exclude={"environmentVars"}),
        repr(req.environmentVars),
    )
    assert ENV_SECRET in str(req.to_body())  # the one place it must be
    await client.aclose()


async def test_nothing_leaks_through_a_whole_session_with_faults(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    config = SimulatorConfig(
        port=0, api_key=API_KEY, provision_seconds=0, pause_seconds=0, terminate_seconds=0, seed=3
    )
    seen: list[str] = []
    async with SimulatorServer(config) as server:
        client = YottaClient(
            server.url, API_KEY, sleep=_no_sleep, rng=random.Random(0), max_retries=1
        )
        async with client:
            pod = await client.create_pod(request())
            seen += [repr(pod), str(pod), pod.model_dump_json(), repr(pod.model_dump())]
            listed = await client.list_pods()
            seen += [repr(listed)]
            server.simulator.faults.replace(
                [FaultRule.parse("create:lost:1"), FaultRule.parse("get:500:1")]
            )
            for i in range(2):  # both lost modes: a 500 and a dropped connection
                with pytest.raises(OutcomeUnknown) as lost:
                    await client.create_pod(request(f"lost-{i}"))
                seen += [str(lost.value), repr(lost.value), _formatted(lost.value)]
            with pytest.raises(Transient) as transient:
                await client.get_pod(pod.id)
            seen += [str(transient.value), _formatted(transient.value)]
            server.simulator.faults.replace([])
            with pytest.raises(InvalidRequest) as invalid:
                await client.create_pod(request().model_copy(update={"gpuCount": 3}))
            seen += [str(invalid.value), _formatted(invalid.value)]
    # The sim echoes env values in clear (like the real API) but they stay SecretStr here.
    assert pod.environmentVars[0].value.get_secret_value() == ENV_SECRET
    assert_clean(*seen, caplog.text)
    assert any("sim POST /v2/pods" in r.getMessage() for r in caplog.records)


def _echoing_transport(status: int, code: int) -> httpx.MockTransport:
    """An API that echoes the request (key and body) back in its error message."""

    def handler(req: httpx.Request) -> httpx.Response:
        message = f"bad request from {req.headers.get('x-api-key')}: {req.content.decode()}"
        return httpx.Response(status, json={"code": code, "message": message, "data": None})

    return httpx.MockTransport(handler)


@pytest.mark.parametrize(("status", "code"), [(200, 10001), (500, 10002), (401, 40101)])
async def test_secrets_echoed_in_api_messages_are_redacted(
    status: int, code: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    transport = _echoing_transport(status, code)
    async with YottaClient("http://yotta.test", API_KEY, transport=transport) as client:
        with pytest.raises(YottaError) as err:
            await client.create_pod(request())
    assert "***" in err.value.api_message and "HF_TOKEN" in err.value.api_message
    assert_clean(str(err.value), repr(err.value), err.value.api_message, _formatted(err.value))
    assert_clean(caplog.text)


async def test_validation_errors_never_include_the_input() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        pod = {"status": "RUNNING", "environmentVars": [{"key": "K", "value": ENV_SECRET}]}
        return httpx.Response(200, json={"code": 10000, "message": "success", "data": pod})

    async with YottaClient(
        "http://yotta.test", API_KEY, transport=httpx.MockTransport(handler)
    ) as client:
        with pytest.raises(YottaError) as err:
            await client.get_pod("1")
    assert "id" in str(err.value)
    assert err.value.__cause__ is None and err.value.__context__ is None
    assert_clean(str(err.value), _formatted(err.value))
