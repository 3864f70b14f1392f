"""Simulator request validation and auth, table-driven, over raw HTTP."""

from __future__ import annotations

import ast
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gpupod_operator.simulator import SimulatorConfig, SimulatorServer
from gpupod_operator.simulator.errors import SimError
from gpupod_operator.simulator.validation import validate_create

KEY = {"X-Api-Key": "any-key"}
VALID: dict[str, Any] = {
    "name": "ns-pod-abc123",
    "image": "vllm/vllm-openai:latest",
    "gpuType": "NVIDIA_RTX_4090_24G",
    "gpuCount": 2,
}


class Sim:
    def __init__(self, server: SimulatorServer, http: httpx.AsyncClient) -> None:
        self.server = server
        self.http = http
        store = server.simulator.store
        self.cred_id = store.create_credential(
            {"name": "hub", "type": "DOCKER_HUB", "username": "u", "password": "p"}
        ).id
        self.volume_id = store.create_volume(
            {"name": "v", "storageType": "CEPH", "region": "us-east-1", "sizeInGb": 10}
        ).id


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    config = SimulatorConfig(port=0, provision_seconds=0, seed=1)
    async with (
        SimulatorServer(config) as server,
        httpx.AsyncClient(base_url=server.url, headers=KEY) as http,
    ):
        yield Sim(server, http)


def body(**changes: Any) -> dict[str, Any]:
    result = dict(VALID)
    for key, value in changes.items():
        if value is _DROP:
            result.pop(key, None)
        else:
            result[key] = value
    return result


_DROP = object()
LONG = "x" * 256

# (case id, body changes, text the message must contain)
INVALID_CREATES: list[tuple[str, dict[str, Any], str]] = [
    ("name missing", {"name": _DROP}, "name is required"),
    ("name blank", {"name": "   "}, "name must not be blank"),
    ("name too long", {"name": LONG}, "name length must be between 1 and 255"),
    ("name not a string", {"name": 42}, "name must be a string"),
    ("image missing", {"image": _DROP}, "image is required"),
    ("image too long", {"image": LONG}, "image length"),
    ("gpuType missing", {"gpuType": _DROP}, "gpuType is required"),
    ("gpuType unknown", {"gpuType": "NVIDIA_GTX_1080"}, "gpuType 'NVIDIA_GTX_1080' is not"),
    ("gpuType MCP spelling", {"gpuType": "RTX_4090_24G"}, "gpuType 'RTX_4090_24G'"),
    ("gpuCount missing", {"gpuCount": _DROP}, "gpuCount is required"),
    ("gpuCount not power of 2", {"gpuCount": 3}, "gpuCount must be a power of 2"),
    ("gpuCount zero", {"gpuCount": 0}, "gpuCount must be a power of 2"),
    ("gpuCount negative", {"gpuCount": -2}, "gpuCount must be a power of 2"),
    ("gpuCount too big", {"gpuCount": 128}, "gpuCount must be at most 64"),
    ("gpuCount string", {"gpuCount": "2"}, "gpuCount must be an integer"),
    ("gpuCount bool", {"gpuCount": True}, "gpuCount must be an integer"),
    ("resourceType", {"resourceType": "TPU"}, "resourceType must be GPU or CPU"),
    ("imagePublicType", {"imagePublicType": "public"}, "imagePublicType must be PUBLIC or"),
    ("regions not array", {"regions": "us-east-1"}, "regions must be an array"),
    ("regions not strings", {"regions": [1]}, "regions must be an array of strings"),
    ("region unknown", {"regions": ["mars-1"]}, "regions: unknown region 'mars-1'"),
    (
        "gpuType not offered in region",
        {"gpuType": "AWS_Trainium_32G", "regions": ["us-west-1"]},
        "gpuType 'AWS_Trainium_32G' is not offered in regions",
    ),
    ("expose port 0", {"expose": [{"port": 0}]}, "expose[0].port must be an integer between"),
    ("expose port 70000", {"expose": [{"port": 70000}]}, "expose[0].port"),
    ("expose port string", {"expose": [{"port": "80"}]}, "expose[0].port"),
    ("expose protocol", {"expose": [{"port": 80, "protocol": "QUIC"}]}, "expose[0].protocol"),
    (
        "expose protocol UDP",  # no source shows UDP
        {"expose": [{"port": 53, "protocol": "udp"}]},
        "expose[0].protocol must be one of HTTP, HTTPS, TCP, SSH (any case)",
    ),
    ("expose too many", {"expose": [{"port": p} for p in range(1, 34)]}, "at most 32 items"),
    ("regions too many", {"regions": ["us-east-1"] * 17}, "regions must have at most 16"),
    (
        "env too many",
        {"environmentVars": [{"key": f"K{i}", "value": ""} for i in range(129)]},
        "environmentVars must have at most 128 items",
    ),
    (
        "env value too long",
        {"environmentVars": [{"key": "K", "value": "v" * 32769}]},
        "environmentVars[0].value length must be between 0 and 32768",
    ),
    ("gpuType too long", {"gpuType": "G" * 129}, "gpuType length must be between 1 and 128"),
    (
        "volumes too many",
        {"persistentVolumes": [{"volumeId": "VOLUME", "mountPath": f"/d{i}"} for i in range(17)]},
        "persistentVolumes must have at most 16 items",
    ),
    ("expose duplicate", {"expose": [{"port": 80}, {"port": 80}]}, "port 80 is listed twice"),
    ("expose not object", {"expose": [80]}, "expose[0] must be an object"),
    (
        "persistent volume without mount path",
        {"persistentVolumeInGb": 20},
        "persistentMountPath is required when persistentVolumeInGb > 0",
    ),
    (
        "relative mount path",
        {"persistentVolumeInGb": 20, "persistentMountPath": "data"},
        "persistentMountPath must be an absolute path",
    ),
    ("negative volume", {"containerVolumeInGb": -1}, "containerVolumeInGb must be an integer"),
    (
        "empty container volume",
        {"containerVolumeInGb": 0},
        "containerVolumeInGb must be an integer between 1 and 10240",
    ),
    ("vram too big", {"minSingleCardVramInGb": 4096}, "minSingleCardVramInGb must be"),
    ("shm too big", {"shmInGb": 1537}, "shmInGb must be an integer between 0 and 1536"),
    ("shm float", {"shmInGb": 1.5}, "shmInGb must be an integer"),
    ("auth id unknown", {"containerRegistryAuthId": 999}, "containerRegistryAuthId 999 does not"),
    ("auth id string", {"containerRegistryAuthId": "1"}, "containerRegistryAuthId must be an int"),
    (
        "volume id unknown",
        {"persistentVolumes": [{"volumeId": 999, "mountPath": "/data"}]},
        "persistentVolumes[0].volumeId 999 does not exist",
    ),
    (
        "volume mount path missing",
        {"persistentVolumes": [{"volumeId": "VOLUME", "mountPath": None}]},
        "persistentVolumes[0].mountPath must be an absolute path",
    ),
    ("env key missing", {"environmentVars": [{"value": "v"}]}, "environmentVars[0].key is req"),
    (
        "env value not string",
        {"environmentVars": [{"key": "A", "value": 1}]},
        "environmentVars[0].value must be a string",
    ),
    ("env not array", {"environmentVars": {"A": "b"}}, "environmentVars must be an array"),
    ("initializationCommand", {"initializationCommand": ["sh"]}, "initializationCommand must be"),
]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [pytest.param(c, e, id=i) for i, c, e in INVALID_CREATES],
)
async def test_invalid_create_answers_10001_naming_the_field(
    sim: Sim, changes: dict[str, Any], expected: str
) -> None:
    for item in changes.get("persistentVolumes") or []:
        if item.get("volumeId") == "VOLUME":
            item["volumeId"] = sim.volume_id
    response = await sim.http.post("/v2/pods", json=body(**changes))
    assert response.status_code == 200
    payload = response.json()
    assert payload["code"] == 10001 and payload["data"] is None
    assert expected in payload["message"]
    assert sim.server.simulator.store.pods == {}


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"regions": ["us-east-1", "us-east-1", "us-west-1"]},  # a set: duplicates are fine
        {"resourceType": "CPU", "gpuType": _DROP, "gpuCount": _DROP},
        {"expose": [{"port": 22, "protocol": "ssh"}, {"port": 8888, "protocol": "http"}]},
        {"gpuCount": 16},  # no maximum is documented: the CRD's 64 is the limit
        {"gpuCount": 64, "shmInGb": 1536, "containerVolumeInGb": 10240},
        {"persistentVolumeInGb": 20, "persistentMountPath": "/workspace"},
        {"imagePublicType": "PRIVATE", "containerRegistryAuthId": "CRED"},
        {"persistentVolumes": [{"volumeId": "VOLUME", "mountPath": "/data", "needBackup": True}]},
        {"unknownField": "ignored, as Spring does"},
    ],
)
async def test_valid_creates(sim: Sim, changes: dict[str, Any]) -> None:
    if changes.get("containerRegistryAuthId") == "CRED":
        changes["containerRegistryAuthId"] = sim.cred_id
    for item in changes.get("persistentVolumes") or []:
        item["volumeId"] = sim.volume_id
    payload = (await sim.http.post("/v2/pods", json=body(**changes))).json()
    assert payload["code"] == 10000, payload["message"]
    assert isinstance(payload["data"]["id"], int) and payload["data"]["id"] > 2**53


@pytest.mark.parametrize(
    ("request_args", "status", "code"),
    [
        (("POST", "/v2/pods", {"content": b"{not json"}), 400, 10001),
        (("POST", "/v2/pods", {"json": [1, 2]}), 200, 10001),
        (("GET", "/v2/pods/abc", {}), 400, 10001),
        (("GET", "/v2/pods/123", {}), 200, 13000),
        (("DELETE", "/v2/pods/123", {}), 200, 13000),
        (("POST", "/v2/pods/123/pause", {}), 200, 13000),
        (("POST", "/v2/pods/123/resume", {}), 200, 13000),
        (("GET", "/v2/pods", {"params": {"statusList": "RUNNING,NAPPING"}}), 200, 10001),
        (("GET", "/v2/volumes", {}), 200, 10001),  # storageType is required
        (("GET", "/v2/volumes/5", {}), 200, 10007),
        (("GET", "/v2/container-registry-auths/5", {}), 200, 10007),
        (("POST", "/v2/volumes", {"json": {"name": "v", "storageType": "CEPH"}}), 200, 10001),
        (("POST", "/v2/volumes", {"json": {"name": "v", "storageType": "NFS"}}), 200, 10001),
        (
            (
                "POST",
                "/v2/volumes",
                {
                    "json": {
                        "name": "v",
                        "storageType": "VENDOR",
                        "region": "us-east-1",
                        "sizeInGb": 5,
                    }
                },
            ),
            200,
            10001,
        ),
        (("POST", "/v2/container-registry-auths", {"json": {"name": "x"}}), 200, 10001),
        (
            (
                "POST",
                "/v2/container-registry-auths",
                {"json": {"name": "x", "type": "QUAY", "username": "u", "password": "p"}},
            ),
            200,
            10001,
        ),
    ],
)
async def test_other_errors(
    sim: Sim, request_args: tuple[str, str, dict[str, Any]], status: int, code: int
) -> None:
    method, path, kwargs = request_args
    response = await sim.http.request(method, path, **kwargs)
    assert (response.status_code, response.json()["code"]) == (status, code)


async def test_auth_any_non_empty_key_without_configured_key(sim: Sim) -> None:
    async with httpx.AsyncClient(base_url=sim.server.url) as http:
        for headers in ({}, {"X-Api-Key": ""}):
            response = await http.get("/v2/pods", headers=headers)
            assert response.status_code == 401
            assert response.json() == {
                "message": "Unauthorized: missing or invalid X-Api-Key",
                "code": 40101,
                "data": None,
            }
        assert (await http.get("/v2/pods", headers={"x-api-key": "anything"})).status_code == 200
    assert sim.server.simulator.stats.requests["list"] == {"401": 2, "ok": 1}


async def test_auth_with_configured_key() -> None:
    async with (
        SimulatorServer(SimulatorConfig(port=0, api_key="right")) as server,
        httpx.AsyncClient(base_url=server.url) as http,
    ):
        assert (await http.get("/v2/vms/types", headers={"X-API-KEY": "wrong"})).status_code == 401
        assert (await http.get("/v2/vms/types", headers={"X-API-KEY": "right"})).status_code == 200
        # Bearer (an old MCP client's scheme) is not accepted.
        bearer = {"Authorization": "Bearer right"}
        assert (await http.get("/v2/vms/types", headers=bearer)).status_code == 401
        # Admin endpoints need no key.
        assert (await http.get("/_sim/stats")).status_code == 200


async def test_volume_and_credential_crud(sim: Sim) -> None:
    http = sim.http
    vol = (await http.post("/v2/volumes", json={"name": "s3", "storageType": "S3"})).json()["data"]
    assert vol["status"] == "active" and vol["mountCount"] == 0
    listed = (await http.get("/v2/volumes", params={"storageType": "CEPH"})).json()["data"]
    assert listed["total"] == 1 and listed["items"][0]["id"] == sim.volume_id
    pod = (
        await http.post(
            "/v2/pods",
            json=body(
                containerRegistryAuthId=sim.cred_id,
                persistentVolumes=[{"volumeId": sim.volume_id, "mountPath": "/d"}],
            ),
        )
    ).json()["data"]
    # In use: neither can be deleted while the pod lives.
    assert (await http.get(f"/v2/volumes/{sim.volume_id}")).json()["data"]["mountCount"] == 1
    assert (await http.delete(f"/v2/volumes/{sim.volume_id}")).json()["code"] == 12001
    assert (await http.delete(f"/v2/container-registry-auths/{sim.cred_id}")).json()[
        "code"
    ] == 12001
    creds = (await http.get("/v2/container-registry-auths")).json()["data"]
    assert [c["id"] for c in creds] == [sim.cred_id] and "password" not in creds[0]
    sim.server.simulator.config.terminate_seconds = 0
    await http.delete(f"/v2/pods/{pod['id']}")
    assert (await http.delete(f"/v2/volumes/{sim.volume_id}")).json() == {
        "message": "success",
        "code": 10000,
        "data": True,
    }
    assert (await http.delete(f"/v2/container-registry-auths/{sim.cred_id}")).json()["data"]
    assert (await http.get(f"/v2/volumes/{sim.volume_id}")).json()["code"] == 10007


async def test_expose_protocols_in_any_case_are_echoed_as_written(sim: Sim) -> None:
    """The guides write `http`, captured responses `HTTP`: both are the API's, kept as sent."""
    expose = [
        {"port": 22, "protocol": "ssh"},
        {"port": 80, "protocol": "Http"},
        {"port": 443, "protocol": "HTTPS"},
        {"port": 9000, "protocol": "tCp"},
    ]
    payload = (await sim.http.post("/v2/pods", json=body(expose=expose))).json()
    assert payload["code"] == 10000, payload["message"]
    assert [(e["port"], e["protocol"]) for e in payload["data"]["expose"]] == [
        (e["port"], e["protocol"]) for e in expose
    ]


# ---------------------------------------------------------------------------------------------
# The simulator's limits are the CRD's: what a GpuPod may say, the simulated API takes, and
# one past a CRD bound it refuses. Read from the generated CRD, not from api_limits, so a
# simulator that stopped using the table would fail here.
# ---------------------------------------------------------------------------------------------

CRD_SPEC: dict[str, Any] = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "crds" / "gpupods.gpupod.dev.yaml").read_text()
)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
# A body that makes each field's value meaningful on its own (a volume needs a mount path).
CONTEXT = {"persistentVolumeInGb": {"persistentMountPath": "/w"}}


def _accepts(**changes: Any) -> bool:
    try:
        validate_create(body(**changes), credentials=(), volumes=())
    except SimError as err:
        assert err.code == 10001
        return False
    return True


def _crd_integer_bounds() -> list[tuple[str, int, int]]:
    return [
        (name, node["minimum"], node["maximum"])
        for name, node in CRD_SPEC.items()
        if node["type"] == "integer" and "maximum" in node and name != "gpuCount"
    ]


@pytest.mark.parametrize(("name", "lo", "hi"), _crd_integer_bounds())
def test_integer_bounds_are_the_crds(name: str, lo: int, hi: int) -> None:
    extra = CONTEXT.get(name, {})
    assert _accepts(**{name: lo}, **extra) and _accepts(**{name: hi}, **extra)
    assert not _accepts(**{name: lo - 1}, **extra)
    assert not _accepts(**{name: hi + 1}, **extra)


def test_gpu_counts_are_the_crds() -> None:
    [rule] = CRD_SPEC["gpuCount"]["x-kubernetes-validations"]
    allowed = json.loads(rule["rule"].removeprefix("self in "))
    assert [n for n in range(-1, 2 * allowed[-1] + 2) if _accepts(gpuCount=n)] == allowed


@pytest.mark.parametrize(
    ("name", "fill"),
    [
        ("image", "i"),
        ("imageRegistry", "r"),
        ("initializationCommand", "c"),
        ("persistentMountPath", "/"),
    ],
)
def test_string_lengths_are_the_crds(name: str, fill: str) -> None:
    longest = CRD_SPEC[name]["maxLength"]
    assert _accepts(**{name: fill * longest})
    assert not _accepts(**{name: fill * (longest + 1)})


@pytest.mark.parametrize(
    ("name", "api_name", "item"),
    [
        pytest.param("expose", "expose", lambda i: {"port": i + 1}, id="expose"),
        pytest.param("env", "environmentVars", lambda i: {"key": f"K{i}", "value": ""}, id="env"),
        pytest.param("regions", "regions", lambda i: "us-east-1", id="regions"),
    ],
)
def test_list_sizes_are_the_crds(name: str, api_name: str, item: Callable[[int], Any]) -> None:
    most = CRD_SPEC[name]["maxItems"]
    assert _accepts(**{api_name: [item(i) for i in range(most)]})
    assert not _accepts(**{api_name: [item(i) for i in range(most + 1)]})


def test_protocols_are_the_crds() -> None:
    node = CRD_SPEC["expose"]["items"]["properties"]["protocol"]
    [rule] = node["x-kubernetes-validations"]
    protocols = ast.literal_eval(rule["rule"].removeprefix("self.upperAscii() in "))
    for protocol in protocols:
        for written in (protocol, protocol.lower(), protocol.title()):
            assert _accepts(expose=[{"port": 1, "protocol": written}]), written
    assert not _accepts(expose=[{"port": 1, "protocol": "UDP"}])


def test_enums_are_the_crds() -> None:
    for name in ("imagePublicType", "resourceType"):
        for value in CRD_SPEC[name]["enum"]:
            assert _accepts(**{name: value}), (name, value)
        assert not _accepts(**{name: CRD_SPEC[name]["enum"][0].lower()}), name
