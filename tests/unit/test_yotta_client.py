"""YottaClient against the real simulator served in-process on a loopback port.

Sleeps (backoff, rate limit) go through an injected fake that records and returns at once,
so retries and Retry-After are measured without waiting. A few shapes the simulator never
emits (a proxy's HTML page, an HTTP-date Retry-After) use httpx.MockTransport.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest

from gpupod_operator.simulator import FaultRule, SimulatorConfig, SimulatorServer
from gpupod_operator.yotta import (
    ApiError,
    CreatePodRequest,
    EnvVar,
    ExposePortRequest,
    InvalidRequest,
    InvalidState,
    NotFound,
    OutcomeUnknown,
    PersistentVolumeRef,
    PodStatus,
    Transient,
    Unauthorized,
    YottaClient,
)

KEY = "test-api-key-0123456789"


def sim_config(**overrides: Any) -> SimulatorConfig:
    base: dict[str, Any] = dict(
        port=0, provision_seconds=0, pause_seconds=0, terminate_seconds=0, seed=7
    )
    return SimulatorConfig(**(base | overrides))


class Recorder:
    """Fake sleep + observer; `on_sleep` lets a test change the world between attempts."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []
        self.observed: list[tuple[str, str]] = []
        self.on_sleep: Callable[[], None] | None = None
        self.now = 1000.0

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.on_sleep is not None:
            self.on_sleep()
        await asyncio.sleep(0)

    def observe(self, operation: str, result: str) -> None:
        self.observed.append((operation, result))

    def clock(self) -> float:
        return self.now

    def client(self, url: str, **overrides: Any) -> YottaClient:
        kwargs: dict[str, Any] = dict(
            qps=0, max_retries=2, backoff_base=0.1, backoff_max=5.0, timeout=5.0
        )
        return YottaClient(
            url,
            overrides.pop("api_key", KEY),
            sleep=self.sleep,
            clock=self.clock,
            observer=self.observe,
            rng=random.Random(1),
            **(kwargs | overrides),
        )


@pytest.fixture
async def server() -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(sim_config()) as srv:
        yield srv


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


def req(name: str = "ns-demo-1a2b3c", **fields: Any) -> CreatePodRequest:
    base: dict[str, Any] = dict(image="nginx:1.27", gpuType="NVIDIA_RTX_4090_24G", gpuCount=1)
    return CreatePodRequest(name=name, **(base | fields))


def set_faults(server: SimulatorServer, *rules: str) -> None:
    server.simulator.faults.replace([FaultRule.parse(r) for r in rules])


def sim_pods(server: SimulatorServer) -> dict[int, Any]:
    return server.simulator.store.pods


# --- every endpoint ----------------------------------------------------------------------


async def test_full_lifecycle_through_every_pod_endpoint(
    server: SimulatorServer, rec: Recorder
) -> None:
    async with rec.client(server.url) as client:
        types = await client.list_gpu_types()
        assert len(types) == 16
        h100 = next(t for t in types if t.gpuType == "NVIDIA_H100_80G")
        assert h100.regions and all(r.region and r.regionName for r in h100.regions)

        pod = await client.create_pod(
            req(
                regions=["us-west-1", "us-east-1"],
                gpuCount=2,
                expose=[ExposePortRequest(port=8888, protocol="HTTP"), ExposePortRequest(port=22)],
                environmentVars=[EnvVar(key="JUPYTER_PASSWORD", value="pw")],
            )
        )
        assert pod.status is PodStatus.RUNNING  # provision_seconds=0: instant
        assert pod.region == "us-west-1"  # first requested region that offers the type
        assert pod.singleCardPrice == Decimal("0.45") and pod.price_per_hour == Decimal("0.90")
        assert pod.sshCmd and pod.createdAt and pod.gpuDisplayName == "RTX 4090"
        http_port = next(e for e in pod.expose if e.port == 8888)
        assert http_port.host and http_port.proxyPort and http_port.healthy
        assert http_port.ingressUrl and http_port.ingressUrl.startswith("https://")
        assert pod.environmentVars[0].value.get_secret_value() == "pw"

        assert (await client.get_pod(pod.id)).name == "ns-demo-1a2b3c"
        assert [p.id for p in await client.list_pods()] == [pod.id]
        await client.pause_pod(pod.id)
        assert (await client.get_pod(pod.id)).status is PodStatus.PAUSED
        await client.resume_pod(pod.id)
        assert (await client.get_pod(pod.id)).status is PodStatus.RUNNING
        await client.delete_pod(pod.id)
        assert (await client.get_pod(pod.id)).status is PodStatus.TERMINATED
        await client.delete_pod(pod.id)  # already terminated: success, by the sim's choice
    ops = [op for op, result in rec.observed if result == "ok"]
    assert set(ops) == {"types", "create", "get", "list", "pause", "resume", "delete"}
    assert all(result == "ok" for _, result in rec.observed)


async def test_create_with_registry_auth_and_volume_references(
    server: SimulatorServer, rec: Recorder
) -> None:
    headers = {"X-Api-Key": KEY}
    async with httpx.AsyncClient(base_url=server.url, headers=headers) as raw:
        cred = (
            await raw.post(
                "/v2/container-registry-auths",
                json={"name": "hub", "type": "DOCKER_HUB", "username": "u", "password": "p"},
            )
        ).json()["data"]
        vol = (
            await raw.post(
                "/v2/volumes",
                json={"name": "data", "storageType": "CEPH", "region": "us-east-1", "sizeInGb": 50},
            )
        ).json()["data"]
    async with rec.client(server.url) as client:
        pod = await client.create_pod(
            req(
                imagePublicType="PRIVATE",
                containerRegistryAuthId=cred["id"],
                persistentVolumes=[PersistentVolumeRef(volumeId=vol["id"], mountPath="/data")],
            )
        )
        assert pod.containerRegistryAuthId == cred["id"]
        assert pod.persistentVolumes[0].volumeId == vol["id"]
        with pytest.raises(InvalidRequest, match="containerRegistryAuthId 999 does not exist"):
            await client.create_pod(req(containerRegistryAuthId=999))


async def test_list_filters_by_region_and_status(server: SimulatorServer, rec: Recorder) -> None:
    async with rec.client(server.url) as client:
        east = await client.create_pod(req("east", regions=["us-east-1"]))
        west = await client.create_pod(req("west", regions=["us-west-1"]))
        await client.pause_pod(west.id)
        assert [p.name for p in await client.list_pods(regions=["us-west-1"])] == ["west"]
        paused = await client.list_pods(statuses=[PodStatus.PAUSED])
        assert [p.id for p in paused] == [west.id]
        both = await client.list_pods(statuses=[PodStatus.RUNNING, PodStatus.PAUSED])
        assert {p.id for p in both} == {east.id, west.id}
        assert await client.list_pods(regions=["ap-southeast-1"]) == []
        with pytest.raises(ValueError):
            await client.list_pods(statuses=[PodStatus.UNKNOWN])


async def test_list_sends_comma_separated_integer_filters() -> None:
    seen: list[httpx.URL] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        return httpx.Response(200, json={"code": 10000, "message": "success", "data": []})

    async with YottaClient("http://yotta.test", KEY, transport=httpx.MockTransport(handler)) as c:
        await c.list_pods(
            regions=["us-east-1", "us-west-1"], statuses=[PodStatus.RUNNING, PodStatus.PAUSED]
        )
        await c.list_pods()
    assert seen[0].params["regionList"] == "us-east-1,us-west-1"
    assert seen[0].params["statusList"] == "1,3"
    assert "statusList" not in seen[1].params and "regionList" not in seen[1].params


async def test_big_ids_are_exact(server: SimulatorServer, rec: Recorder) -> None:
    async with rec.client(server.url) as client:
        pods = [await client.create_pod(req(f"p{i}")) for i in range(5)]
        listed = await client.list_pods()
    server_ids = set(sim_pods(server))
    assert {int(p.id) for p in pods} == server_ids == {int(p.id) for p in listed}
    assert all(i > 2**53 and float(i) != i for i in server_ids)


# --- error classes -----------------------------------------------------------------------


async def test_error_classes_from_business_codes(server: SimulatorServer, rec: Recorder) -> None:
    async with rec.client(server.url) as client:
        with pytest.raises(NotFound) as not_found:
            await client.get_pod("362740422811062273")
        assert not_found.value.code == 13000 and not_found.value.http_status == 200
        with pytest.raises(InvalidRequest, match="gpuCount must be a power of 2") as invalid:
            await client.create_pod(req(gpuCount=3))
        assert invalid.value.code == 10001 and invalid.value.operation == "create"
        pod = await client.create_pod(req())
        await client.pause_pod(pod.id)
        with pytest.raises(InvalidState) as state:
            await client.pause_pod(pod.id)
        assert state.value.code == 12001
        with pytest.raises(InvalidRequest, match="invalid pod id"):
            await client.get_pod("../v2/pods")
    assert [r for _, r in rec.observed if r != "ok"] == [
        "not_found",
        "invalid_request",
        "invalid_state",
    ]


async def test_error_classes_from_http_statuses(rec: Recorder) -> None:
    async with (
        SimulatorServer(sim_config(dialect=_dialect("error_style=http"))) as server,
        rec.client(server.url) as client,
    ):
        with pytest.raises(NotFound) as not_found:
            await client.delete_pod("362740422811062273")
        assert not_found.value.http_status == 404
        with pytest.raises(InvalidRequest) as invalid:
            await client.create_pod(req(gpuType="NVIDIA_GTX_1080"))
        assert invalid.value.http_status == 400
        pod = await client.create_pod(req())
        with pytest.raises(InvalidState) as state:
            await client.resume_pod(pod.id)
        assert state.value.http_status == 409


async def test_unauthorized(rec: Recorder) -> None:
    async with (
        SimulatorServer(sim_config(api_key="the-right-key")) as server,
        rec.client(server.url, api_key="a-wrong-key") as client,
    ):
        with pytest.raises(Unauthorized) as err:
            await client.list_pods()
        assert err.value.http_status == 401
        async with rec.client(server.url, api_key="the-right-key") as client:
            assert await client.list_pods() == []
    assert rec.observed == [("list", "unauthorized"), ("list", "ok")]


async def test_unknown_code_is_api_error_and_not_retried() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(200, json={"code": 24000, "message": "Serverless unavailable"})

    async with YottaClient("http://yotta.test", KEY, transport=httpx.MockTransport(handler)) as c:
        with pytest.raises(ApiError, match="Serverless unavailable"):
            await c.get_pod("1")
    assert calls == 1


# --- faults on idempotent calls: retried, then Transient -----------------------------------


@pytest.mark.parametrize(
    ("kind", "result"),
    [
        ("500", "transient"),
        ("429", "transient"),
        ("10002", "transient"),
        ("lost", "transient"),
        ("timeout", "timeout"),
    ],
)
async def test_idempotent_faults_are_retried_then_transient(
    kind: str, result: str, rec: Recorder
) -> None:
    config = sim_config(timeout_fault_seconds=5.0)
    # Only the timeout fault needs a short client timeout; for the others a short one made a
    # slow answer on a busy machine a timeout, not the fault under test.
    timeout = 0.2 if kind == "timeout" else 3.0
    async with (
        SimulatorServer(config) as server,
        rec.client(server.url, timeout=timeout, max_retries=2) as client,
    ):
        pod = await client.create_pod(req())
        set_faults(server, f"get:{kind}:1")
        with pytest.raises(Transient) as err:
            await client.get_pod(pod.id)
    assert not isinstance(err.value, OutcomeUnknown)
    assert err.value.attempts == 3 and len(rec.sleeps) == 2
    assert rec.observed[1:] == [("get", result)] * 3
    assert server.simulator.stats.faults["get"][kind] == 3


@pytest.mark.parametrize("kind", ["500", "429", "10002", "lost", "timeout"])
async def test_idempotent_fault_recovers_on_retry(kind: str, rec: Recorder) -> None:
    async with (
        SimulatorServer(sim_config(timeout_fault_seconds=5.0)) as server,
        rec.client(server.url, timeout=0.2) as client,
    ):
        pod = await client.create_pod(req())
        set_faults(server, f"*:{kind}:1")
        rec.on_sleep = lambda: set_faults(server)
        assert [p.id for p in await client.list_pods()] == [pod.id]
    assert len(rec.sleeps) == 1


async def test_delete_retry_after_lost_answer_succeeds(rec: Recorder) -> None:
    async with (
        SimulatorServer(sim_config(terminate_seconds=60)) as server,
        rec.client(server.url) as client,
    ):
        pod = await client.create_pod(req())
        set_faults(server, "delete:lost:1")
        rec.on_sleep = lambda: set_faults(server)
        await client.delete_pod(pod.id)  # 2nd attempt finds it TERMINATING: still success
        assert (await client.get_pod(pod.id)).status is PodStatus.TERMINATING


async def test_pause_retry_after_lost_answer_surfaces_invalid_state(rec: Recorder) -> None:
    async with (
        SimulatorServer(sim_config(pause_seconds=60)) as server,
        rec.client(server.url) as client,
    ):
        pod = await client.create_pod(req())
        set_faults(server, "pause:lost:1")
        rec.on_sleep = lambda: set_faults(server)
        with pytest.raises(InvalidState) as err:
            await client.pause_pod(pod.id)
        # The first attempt took effect; the caller sees that from `attempts`.
        assert err.value.attempts == 2
        assert (await client.get_pod(pod.id)).status is PodStatus.PAUSING


# --- faults on create: never blindly retried ---------------------------------------------


@pytest.mark.parametrize(
    ("kind", "performed"),
    [("500", False), ("10002", False), ("timeout", True), ("lost", True)],
)
async def test_create_faults_raise_outcome_unknown_at_once(
    kind: str, performed: bool, rec: Recorder
) -> None:
    async with SimulatorServer(sim_config(timeout_fault_seconds=5.0)) as server:
        set_faults(server, f"create:{kind}:1")
        async with rec.client(server.url, timeout=0.3) as client:
            with pytest.raises(OutcomeUnknown) as err:
                await client.create_pod(req("maybe-created"))
            assert err.value.attempts == 1 and rec.sleeps == []
            # What the caller must do next: look the pod up by name.
            set_faults(server)
            found = [p for p in await client.list_pods() if p.name == "maybe-created"]
    assert len(found) == (1 if performed else 0)
    assert len(sim_pods(server)) == (1 if performed else 0)


async def test_lost_create_both_modes_report_outcome_unknown_and_pod_exists(
    rec: Recorder,
) -> None:
    async with SimulatorServer(sim_config()) as server:
        set_faults(server, "create:lost:1")
        async with rec.client(server.url) as client:
            for i in range(2):
                with pytest.raises(OutcomeUnknown):
                    await client.create_pod(req(f"lost-{i}"))
        names = sorted(p.spec.name for p in sim_pods(server).values())
        requests = server.simulator.stats.requests["create"]
    assert names == ["lost-0", "lost-1"]
    # One answer replaced by a 500, the other a dropped connection.
    assert requests == {"500": 1, "dropped": 1}


async def test_create_429_is_retried_once_and_creates_exactly_one_pod(rec: Recorder) -> None:
    async with SimulatorServer(sim_config()) as server:
        set_faults(server, "create:429:1")
        rec.on_sleep = lambda: set_faults(server)
        async with rec.client(server.url, backoff_base=0.01) as client:
            pod = await client.create_pod(req("once"))
        assert list(sim_pods(server)) == [int(pod.id)]
        assert server.simulator.stats.requests["create"] == {"429": 1, "ok": 1}
    assert rec.observed == [("create", "transient"), ("create", "ok")]
    # Retry-After: 1 honoured even though the backoff alone would be ~0.01 s.
    assert rec.sleeps == [1.0]


async def test_retry_after_is_capped_by_backoff_max(rec: Recorder) -> None:
    async with SimulatorServer(sim_config()) as server:
        set_faults(server, "list:429:1")
        async with rec.client(server.url, backoff_max=0.25, max_retries=3) as client:
            with pytest.raises(Transient) as err:
                await client.list_pods()
    assert rec.sleeps == [0.25, 0.25, 0.25]
    assert err.value.retry_after == 1.0 and err.value.http_status == 429


async def test_backoff_is_exponential_and_jittered(rec: Recorder) -> None:
    async with SimulatorServer(sim_config()) as server:
        set_faults(server, "get:500:1")
        async with rec.client(server.url, backoff_base=0.1, backoff_max=0.5, max_retries=4) as c:
            with pytest.raises(Transient):
                await c.get_pod("1")
    ceilings = [0.1, 0.2, 0.4, 0.5]
    assert len(rec.sleeps) == 4
    for slept, ceiling in zip(rec.sleeps, ceilings, strict=True):
        assert ceiling / 2 <= slept <= ceiling
    assert len(set(rec.sleeps)) == 4  # jitter


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_connection_refused_is_retried_even_for_create(rec: Recorder) -> None:
    # Nothing listens: the request never left, so a create may be retried safely.
    url = f"http://127.0.0.1:{_free_port()}"
    async with rec.client(url, max_retries=2) as client:
        with pytest.raises(Transient) as err:
            await client.create_pod(req())
    assert not isinstance(err.value, OutcomeUnknown)
    assert err.value.attempts == 3
    assert rec.observed == [("create", "transient")] * 3


# --- response variants the sources disagree on -----------------------------------------


def _dialect(*items: str) -> Any:
    from gpupod_operator.simulator import Dialect

    return Dialect.parse(list(items))


@pytest.mark.parametrize(
    "variant",
    [
        "id_type=string",
        "price_type=number",
        "status_names=guide",
        "status_names=console",
        "status_names=int",
        "list_shape=items",
        "create_data=id",
        "action_data=null",
        "action_data=pod",
    ],
)
async def test_client_tolerates_every_response_variant(variant: str, rec: Recorder) -> None:
    config = sim_config(dialect=_dialect(variant), pause_seconds=60)
    async with SimulatorServer(config) as server, rec.client(server.url) as client:
        created = await client.create_pod(req("variant", gpuCount=2))
        assert created.name == "variant" and int(created.id) in sim_pods(server)
        pod = await client.get_pod(created.id)
        assert pod.id == created.id and pod.status is PodStatus.RUNNING
        assert pod.singleCardPrice == Decimal("0.45")
        await client.pause_pod(pod.id)
        listed = await client.list_pods(statuses=[PodStatus.PAUSING])
        assert [p.id for p in listed] == [pod.id]
        assert listed[0].status is PodStatus.PAUSING
        types = await client.list_gpu_types()
        assert len(types) == 16
        await client.delete_pod(pod.id)


async def test_paused_status_in_guide_and_console_words(rec: Recorder) -> None:
    for words in ("guide", "console", "int"):
        async with (
            SimulatorServer(sim_config(dialect=_dialect(f"status_names={words}"))) as srv,
            rec.client(srv.url) as client,
        ):
            pod = await client.create_pod(req())
            await client.pause_pod(pod.id)
            assert (await client.get_pod(pod.id)).status is PodStatus.PAUSED


def _mock(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx.Response(status, content=content, headers=headers)

    return httpx.MockTransport(handler)


def _client(transport: Any, rec: Recorder, **kw: Any) -> YottaClient:
    return YottaClient(
        "http://yotta.test",
        KEY,
        transport=transport,
        sleep=rec.sleep,
        max_retries=1,
        observer=rec.observe,
        **kw,
    )


async def test_404_without_envelope_is_not_a_missing_pod(rec: Recorder) -> None:
    spring = {"timestamp": "2026-01-01T00:00:00Z", "status": 404, "error": "Not Found"}
    async with _client(_mock(spring, 404), rec) as client:
        with pytest.raises(ApiError) as err:
            await client.delete_pod("1")
    assert not isinstance(err.value, NotFound) and err.value.http_status == 404


async def test_non_json_2xx_is_transient_and_unknown_for_create(rec: Recorder) -> None:
    async with _client(_mock(b"<html>proxy</html>"), rec) as client:
        with pytest.raises(Transient) as err:
            await client.get_pod("1")
        assert err.value.attempts == 2
        with pytest.raises(OutcomeUnknown):
            await client.create_pod(req())


async def test_http_date_retry_after(rec: Recorder) -> None:
    headers = {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}  # in the past: no extra wait
    async with _client(_mock({"code": 429, "message": "slow"}, 429, headers), rec) as client:
        with pytest.raises(Transient) as err:
            await client.list_pods()
    assert err.value.retry_after == 0.0


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"items": [{"id": 5, "status": "RUNNING"}], "total": 1}, ["5"]),
        ([{"id": "6", "status": 1}], ["6"]),
        (None, []),
    ],
)
async def test_list_shapes(data: Any, expected: list[str], rec: Recorder) -> None:
    async with _client(_mock({"code": 10000, "message": "success", "data": data}), rec) as c:
        assert [p.id for p in await c.list_pods()] == expected


async def test_list_with_unexpected_shape_fails_loudly(rec: Recorder) -> None:
    async with _client(_mock({"code": 10000, "data": {"pods": []}}), rec) as client:
        with pytest.raises(ApiError, match="unexpected shape"):
            await client.list_pods()


async def test_create_variants_without_a_pod_object(rec: Recorder) -> None:
    async with _client(_mock({"code": 10000, "data": 43264375788654}), rec) as client:
        pod = await client.create_pod(req("v1-style"))
    assert (pod.id, pod.name, pod.status) == ("43264375788654", "v1-style", PodStatus.INITIALIZE)
    async with _client(_mock({"code": 10000, "data": None}), rec) as client:
        with pytest.raises(OutcomeUnknown, match="without a pod id"):
            await client.create_pod(req())
    async with _client(_mock({"code": 10000, "data": {"name": "no id"}}), rec) as client:
        with pytest.raises(OutcomeUnknown, match="unreadable"):
            await client.create_pod(req())


async def test_malformed_pod_and_false_action(rec: Recorder) -> None:
    async with _client(_mock({"code": 10000, "data": {"status": "RUNNING"}}), rec) as client:
        with pytest.raises(ApiError, match="unexpected Pod"):
            await client.get_pod("1")
    async with _client(_mock({"code": 10000, "data": False}), rec) as client:
        with pytest.raises(ApiError, match="data=false"):
            await client.pause_pod("1")


# --- rate limit, observer, lifecycle of the client ---------------------------------------


async def test_rate_limit_is_shared_by_all_calls(server: SimulatorServer, rec: Recorder) -> None:
    async with rec.client(server.url, qps=10, burst=2) as client:
        await asyncio.gather(
            client.list_pods(), client.list_gpu_types(), client.list_pods(), client.list_pods()
        )
    # The fake clock stands still: 2 banked tokens, then waits of 0.1 and 0.2 s.
    assert sorted(rec.sleeps) == pytest.approx([0.1, 0.2])


async def test_broken_observer_does_not_break_calls(server: SimulatorServer) -> None:
    def boom(operation: str, result: str) -> None:
        raise RuntimeError("metrics bug")

    async with YottaClient(server.url, KEY, observer=boom) as client:
        assert await client.list_pods() == []


async def test_client_basics() -> None:
    with pytest.raises(ValueError):
        YottaClient("http://x", "")
    client = YottaClient("https://user:pw@api.example.test/", KEY)
    assert client.base_url == "https://api.example.test"
    assert repr(client) == "YottaClient(base_url='https://api.example.test')"
    await client.aclose()
