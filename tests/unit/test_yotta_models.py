"""Yotta wire models: tolerant parsing of every variant the sources show, strict requests."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from gpupod_operator.yotta import (
    CreatePodRequest,
    Envelope,
    EnvVar,
    ExposePortRequest,
    GpuType,
    PersistentVolumeRef,
    Pod,
    PodStatus,
)

BIG_ID = 420522713875330018  # from the captured create response; > 2**53


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (0, PodStatus.INITIALIZE),
        (1, PodStatus.RUNNING),
        (2, PodStatus.PAUSING),
        (3, PodStatus.PAUSED),
        (4, PodStatus.TERMINATING),
        (5, PodStatus.TERMINATED),
        (6, PodStatus.FAILED),
        (7, PodStatus.UNKNOWN),
        ("3", PodStatus.PAUSED),
        ("INITIALIZE", PodStatus.INITIALIZE),
        ("INITIALIZING", PodStatus.INITIALIZE),
        ("Initializing", PodStatus.INITIALIZE),
        ("initialize", PodStatus.INITIALIZE),
        ("running", PodStatus.RUNNING),
        ("Stopping", PodStatus.PAUSING),
        ("STOPPED", PodStatus.PAUSED),
        ("Stopped", PodStatus.PAUSED),
        ("paused", PodStatus.PAUSED),
        ("Terminating", PodStatus.TERMINATING),
        ("terminated", PodStatus.TERMINATED),
        ("Failed", PodStatus.FAILED),
        (" RUNNING ", PodStatus.RUNNING),
        ("something-new", PodStatus.UNKNOWN),
        ("", PodStatus.UNKNOWN),
        (None, PodStatus.UNKNOWN),
    ],
)
def test_status_parse_accepts_every_vocabulary(raw: str | int | None, expected: PodStatus) -> None:
    assert PodStatus.parse(raw) is expected


def test_status_codes_round_trip() -> None:
    for status in PodStatus:
        if status is PodStatus.UNKNOWN:
            assert status.code is None
        else:
            assert status.code is not None
            assert PodStatus.parse(status.code) is status
    assert PodStatus.TERMINATED.is_terminal and PodStatus.FAILED.is_terminal
    assert not PodStatus.PAUSED.is_terminal


def _request(**extra: Any) -> CreatePodRequest:
    return CreatePodRequest(
        name="ns-pod-1234",
        image="vllm/vllm-openai:latest",
        gpuType="NVIDIA_RTX_4090_24G",
        gpuCount=2,
        environmentVars=[EnvVar(key="HF_TOKEN", value="hf_topsecret")],
        **extra,
    )


def test_request_body_drops_none_and_reveals_env_values_only_there() -> None:
    req = _request(
        regions=["us-east-1"],
        expose=[ExposePortRequest(port=8000, protocol="HTTP")],
        persistentVolumes=[PersistentVolumeRef(volumeId=7, mountPath="/data")],
    )
    body = req.to_body()
    assert body == {
        "name": "ns-pod-1234",
        "image": "vllm/vllm-openai:latest",
        "regions": ["us-east-1"],
        "gpuType": "NVIDIA_RTX_4090_24G",
        "gpuCount": 2,
        "environmentVars": [{"key": "HF_TOKEN", "value": "hf_topsecret"}],
        "expose": [{"port": 8000, "protocol": "HTTP"}],
        "persistentVolumes": [{"volumeId": 7, "mountPath": "/data"}],
    }
    assert req.model_dump()["environmentVars"][0]["value"] == "hf_topsecret"
    assert req.secret_values() == ["hf_topsecret"]
    assert "hf_topsecret" not in repr(req) and "hf_topsecret" not in str(req)
    # Everything except the request body keeps the value masked.
    env = req.environmentVars[0] if req.environmentVars else None
    assert env is not None
    assert "hf_topsecret" not in env.model_dump_json()
    assert "hf_topsecret" not in repr(env.model_dump())


def test_expose_protocol_case_is_kept_both_ways() -> None:
    """The docs write `http`, captured responses `HTTP`: the client never rewrites either."""
    req = _request(expose=[ExposePortRequest(port=80, protocol="http")])
    assert req.to_body()["expose"] == [{"port": 80, "protocol": "http"}]
    pod = Pod.model_validate({"id": 1, "expose": [{"port": 80, "protocol": "http"}]})
    assert pod.expose[0].protocol == "http"


def test_request_rejects_unknown_fields() -> None:
    with pytest.raises(ValidationError):
        CreatePodRequest(name="a", image="b", gpuTyp="typo")  # type: ignore[call-arg]


def _pod(**fields: Any) -> dict[str, Any]:
    return {"id": BIG_ID, "name": "p", "status": "RUNNING", **fields}


def test_pod_id_stays_exact_from_number_or_string() -> None:
    raw = json.loads(json.dumps(_pod()))
    assert Pod.model_validate(raw).id == str(BIG_ID)
    assert Pod.model_validate(_pod(id=str(BIG_ID))).id == str(BIG_ID)
    assert float(BIG_ID) != BIG_ID  # the reason ids are strings
    for bad in (None, True, ""):
        with pytest.raises(ValidationError):
            Pod.model_validate(_pod(id=bad))


@pytest.mark.parametrize(
    ("price", "expected"),
    [
        ("0.65", Decimal("0.65")),
        (0.65, Decimal("0.65")),
        (2, Decimal(2)),
        ("n/a", None),
        (None, None),
    ],
)
def test_pod_price_number_or_string(price: Any, expected: Decimal | None) -> None:
    pod = Pod.model_validate(_pod(singleCardPrice=price, gpuCount=4))
    assert pod.singleCardPrice == expected
    assert pod.price_per_hour == (expected * 4 if expected is not None else None)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (1767225600000, 1767225600000),
        ("1767225600000", 1767225600000),
        ("2026-01-01T00:00:00Z", 1767225600000),
        ("not a date", None),
        (None, None),
    ],
)
def test_pod_created_at_epoch_ms_or_iso(raw: Any, expected: int | None) -> None:
    assert Pod.model_validate(_pod(createdAt=raw)).createdAt == expected


def test_pod_is_lenient_about_odd_and_missing_fields() -> None:
    pod = Pod.model_validate(
        {
            "id": "42",
            "podName": "v1-name",
            "status": 3,
            "gpuCount": "2",
            "somethingNew": {"x": 1},
            "expose": [{"port": 22, "proxyPort": "30003", "healthy": "true"}, {"host": "no-port"}],
            "environmentVars": [{"key": "A", "value": 5}, {"value": "orphan"}],
            "persistentVolumes": None,
        }
    )
    assert pod.name == "v1-name"
    assert pod.status is PodStatus.PAUSED
    assert pod.gpuCount == 2
    assert [(e.port, e.proxyPort, e.healthy) for e in pod.expose] == [(22, 30003, True)]
    assert [e.key for e in pod.environmentVars] == ["A"]
    assert pod.environmentVars[0].value.get_secret_value() == "5"
    assert pod.persistentVolumes == []
    minimal = Pod.model_validate({"id": 1})
    assert minimal.status is PodStatus.UNKNOWN and minimal.expose == [] and minimal.region is None


def test_pod_unknown_status_word_is_unknown() -> None:
    assert Pod.model_validate(_pod(status="HIBERNATING")).status is PodStatus.UNKNOWN
    assert Pod.model_validate(_pod(status={"weird": 1})).status is PodStatus.UNKNOWN


def test_pod_env_values_are_secret_everywhere() -> None:
    pod = Pod.model_validate(_pod(environmentVars=[{"key": "PASSWORD", "value": "pw-echoed"}]))
    for text in (repr(pod), str(pod), pod.model_dump_json(), repr(pod.model_dump())):
        assert "pw-echoed" not in text
    assert pod.environmentVars[0].value.get_secret_value() == "pw-echoed"


def test_a_kept_pod_is_the_pod_without_its_env_values() -> None:
    pod = Pod.model_validate(
        _pod(
            environmentVars=[{"key": "PASSWORD", "value": "pw-echoed"}],
            expose=[{"port": 8888, "protocol": "http", "host": "h", "proxyPort": 30001}],
            singleCardPrice="0.69",
            gpuCount=2,
            createdAt=1796276869000,
            region="us-east-1",
            sshCmd="ssh root@h -p 22",
        )
    )
    kept = pod.kept()
    assert kept.environmentVars == []
    assert kept.model_dump(exclude={"environmentVars"}) == pod.model_dump(
        exclude={"environmentVars"}
    )
    assert kept.price_per_hour == Decimal("1.38")
    # One shared (empty) fields-set, not one per pod.
    assert kept.model_fields_set is Pod.model_validate(_pod()).kept().model_fields_set


def test_gpu_type_and_envelope() -> None:
    gpu = GpuType.model_validate(
        {
            "gpuType": "NVIDIA_H100_80G",
            "regions": [
                {"region": "us-east-1", "regionName": "US East", "available": True, "vmTypeId": 12}
            ],
            "singleCardPrice": "2.40",
        }
    )
    assert gpu.regions[0].vmTypeId == "12" and gpu.regions[0].available
    assert gpu.singleCardPrice == Decimal("2.40")
    env = Envelope.model_validate({"code": "10000", "message": None, "data": {"secret": "x"}})
    assert env.ok and env.message == "" and "secret" not in repr(env)
    assert not Envelope.model_validate({"code": 13000}).ok
