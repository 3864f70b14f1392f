"""GpuPod spec -> create request, remote pod -> status, and their helpers."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from gpupod_operator.domain import status as st
from gpupod_operator.domain.spec import (
    GpuPodSpec,
    RemoteIdentity,
    build_create_request,
    cluster_tag,
    parse_duration,
    parse_remote_name,
    remote_name,
    spec_hash,
)
from gpupod_operator.yotta import Pod

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)

FULL_SPEC: dict[str, Any] = {
    "image": "vllm/vllm-openai:latest",
    "imageRegistry": "https://index.docker.io/v1/",
    "imagePublicType": "PUBLIC",
    "resourceType": "GPU",
    "gpuType": "NVIDIA_RTX_4090_24G",
    "gpuCount": 2,
    "regions": ["us-west-1", "us-east-1"],
    "containerVolumeInGb": 100,
    "persistentVolumeInGb": 50,
    "persistentMountPath": "/data",
    "shmInGb": 8,
    "initializationCommand": "echo hi",
    "expose": [{"port": 8000, "protocol": "HTTP"}, {"port": 22, "protocol": "SSH"}],
    "persistentVolumes": [{"volumeId": 12, "mountPath": "/models", "needBackup": True}],
    "env": [
        {"name": "PLAIN", "value": "v"},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "token"}}},
        {
            "name": "MAYBE",
            "valueFrom": {"secretKeyRef": {"name": "s", "key": "nope", "optional": True}},
        },
    ],
    "paused": False,
    "deletionPolicy": "Delete",
    "updatePolicy": "Reject",
}


@pytest.mark.parametrize("protocol", ["http", "HTTP", "Http", "https", "tcp", "Ssh"])
def test_expose_protocol_in_any_case_is_sent_as_written(protocol: str) -> None:
    spec = GpuPodSpec.parse({"image": "x", "expose": [{"port": 80, "protocol": protocol}]})
    body = build_create_request(spec, "n", {}).to_body()
    assert body["expose"] == [{"port": 80, "protocol": protocol}]


@pytest.mark.parametrize("protocol", ["udp", "QUIC", "", "HTTP "])
def test_expose_protocol_unknown_to_the_api_is_refused(protocol: str) -> None:
    with pytest.raises(ValueError, match="protocol must be one of HTTP, HTTPS, TCP, SSH"):
        GpuPodSpec.parse({"image": "x", "expose": [{"port": 80, "protocol": protocol}]})


def test_create_request_carries_every_field_and_secret_values() -> None:
    spec = GpuPodSpec.parse(FULL_SPEC)
    req = build_create_request(spec, "ns-gp-abc", {("s", "token"): "s3cr3t"})
    body = req.to_body()
    assert body["name"] == "ns-gp-abc"
    assert body["gpuType"] == "NVIDIA_RTX_4090_24G" and body["gpuCount"] == 2
    assert body["regions"] == ["us-east-1", "us-west-1"]
    assert body["expose"] == [{"port": 8000, "protocol": "HTTP"}, {"port": 22, "protocol": "SSH"}]
    assert body["persistentVolumes"] == [
        {"volumeId": 12, "mountPath": "/models", "needBackup": True}
    ]
    assert body["environmentVars"] == [
        {"key": "PLAIN", "value": "v"},
        {"key": "TOKEN", "value": "s3cr3t"},
    ]
    for key in ("paused", "deletionPolicy", "updatePolicy", "env"):
        assert key not in body
    assert "s3cr3t" not in repr(req)


def test_spec_hash_ignores_operator_fields_and_order_but_not_create_fields() -> None:
    base = GpuPodSpec.parse(FULL_SPEC)
    flipped = GpuPodSpec.parse(
        {
            **FULL_SPEC,
            "paused": True,
            "deletionPolicy": "Orphan",
            "updatePolicy": "Recreate",
            "regions": ["us-east-1", "us-west-1"],
        }
    )
    assert spec_hash(base) == spec_hash(flipped)
    assert spec_hash(base) != spec_hash(GpuPodSpec.parse({**FULL_SPEC, "gpuCount": 4}))
    assert spec_hash(base) != spec_hash(GpuPodSpec.parse({**FULL_SPEC, "image": "other"}))


def test_remote_name_is_deterministic_unique_per_uid_and_cluster_and_fits_255() -> None:
    uid, cluster = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "c0ffee00-1111-2222-3333-444455556666"
    tag = cluster_tag(cluster)
    assert len(tag) == 10 and tag == cluster_tag(cluster)
    name = remote_name("team-a", "train", uid, cluster)
    # readable in the console first, identity at the end
    assert name == f"team-a-train-{tag}-0f1e2d3c4b5a69788796a5b4c3d2e1f0"
    long = remote_name("n" * 63, "x" * 253, uid, cluster)
    assert len(long) == 255 and long.endswith(f"-{tag}-0f1e2d3c4b5a69788796a5b4c3d2e1f0")
    assert long.startswith("n" * 63 + "-x")
    assert remote_name("a", "b", uid, cluster) != remote_name("a", "b", "ffffffff-0000", cluster)
    assert remote_name("a", "b", uid, cluster) != remote_name("a", "b", uid, "other-cluster")


def test_parse_remote_name_gives_back_cluster_tag_and_uid_even_when_cut() -> None:
    uid, cluster = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "prod-eu"
    for ns, name in (("team-a", "train"), ("n" * 63, "x" * 253), ("a-1", "b-2-3")):
        assert parse_remote_name(remote_name(ns, name, uid, cluster)) == RemoteIdentity(
            cluster_tag(cluster), uid
        )


@pytest.mark.parametrize(
    "name",
    [
        None,
        "",
        "team-a-train-0f1e2d3c",  # the older <namespace>-<name>-<uid8> format
        "my-console-pod",
        "x-0123456789-0f1e2d3c4b5a69788796a5b4c3d2e1f",  # uid one hex short
        "x-012345678Z-0f1e2d3c4b5a69788796a5b4c3d2e1f0",  # not hex
        "-0123456789-0f1e2d3c4b5a69788796a5b4c3d2e1f0",  # no readable part
    ],
)
def test_parse_remote_name_rejects_names_it_did_not_make(name: str | None) -> None:
    assert parse_remote_name(name) is None


def running_pod(**extra: Any) -> Pod:
    return Pod.model_validate(
        {
            "id": 420522713875330018,
            "name": "n",
            "status": "RUNNING",
            "region": "us-east-1",
            "sshCmd": "ssh root@1.2.3.4 -p 10022",
            "singleCardPrice": "0.65",
            "gpuCount": 2,
            "createdAt": 1764244800000,
            "expose": [
                {
                    "port": 8000,
                    "protocol": "HTTP",
                    "host": "1.2.3.4",
                    "proxyPort": 30001,
                    "healthy": True,
                    "ingressUrl": "https://p-8000.example",
                },
                {
                    "port": 22,
                    "protocol": "SSH",
                    "host": "1.2.3.4",
                    "proxyPort": 30002,
                    "healthy": False,
                },
            ],
            "environmentVars": [{"key": "TOKEN", "value": "s3cr3t"}],
            **extra,
        }
    )


def project(pod: Any, current: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    patch = st.project(current or {}, now=NOW, gpu_count=2, seen=st.Observed(pod), **kw)
    assert patch is not None
    return patch


def ready(patch: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in patch["conditions"] if c["type"] == "Ready")


def test_running_pod_maps_to_status() -> None:
    out = project(running_pod())
    assert out["phase"] == "Running" and out["remoteStatus"] == "RUNNING"
    assert out["pricePerHour"] == "1.30"
    assert out["region"] == "us-east-1"
    assert out["sshCommand"] == "ssh root@1.2.3.4 -p 10022"
    assert out["createdAt"] == "2025-11-27T12:00:00Z"
    assert out["endpoints"] == [
        {
            "port": 8000,
            "protocol": "HTTP",
            "host": "1.2.3.4",
            "proxyPort": 30001,
            "url": "https://p-8000.example",
            "healthy": True,
        },
        {
            "port": 22,
            "protocol": "SSH",
            "host": "1.2.3.4",
            "proxyPort": 30002,
            "url": "1.2.3.4:30002",
            "healthy": False,
        },
    ]
    assert ready(out)["status"] == "True"
    assert "s3cr3t" not in repr(out)


@pytest.mark.parametrize(
    ("remote", "phase"),
    [
        ("INITIALIZE", "Initializing"),
        ("PAUSING", "Pausing"),
        ("PAUSED", "Paused"),
        ("TERMINATING", "Terminating"),
        ("TERMINATED", "Terminated"),
        ("FAILED", "Failed"),
        ("STOPPED", "Paused"),
        ("INITIALIZING", "Initializing"),
        (3, "Paused"),
    ],
)
def test_every_remote_status_has_a_phase(remote: Any, phase: str) -> None:
    out = project(running_pod(status=remote))
    assert out["phase"] == phase and ready(out)["status"] == "False"


def test_unknown_remote_status_is_unknown_with_the_providers_word() -> None:
    """Regression (issue 10 #5): a word we cannot parse was shown as in sync."""
    out = project(running_pod(status="HIBERNATING"), {"phase": "Running"})
    assert "phase" not in out  # left as it was
    assert out["remoteStatus"] == "HIBERNATING"
    assert ready(out)["status"] == "Unknown" and "HIBERNATING" in ready(out)["message"]


def test_failed_pod_shows_the_providers_reason() -> None:
    """Regression (issue 10 #6): the parsed failure reason was thrown away."""
    out = project(running_pod(status="FAILED", failureReason="image pull failed: 404"))
    assert "image pull failed: 404" in out["message"]
    assert "no reason" in project(running_pod(status="FAILED"))["message"]


def test_missing_pod_is_lost_and_clears_endpoints() -> None:
    out = project(None)
    assert out["phase"] == "Lost" and out["endpoints"] is None and out["sshCommand"] is None


def test_replacement_of_a_pod_is_not_an_outside_termination() -> None:
    for pod in (running_pod(status="TERMINATED"), None):
        out = project(pod, {"replacing": True, "phase": "Terminating"})
        assert out.get("phase", "Terminating") == "Terminating"
        assert "outside" not in str(out.get("message"))


def test_price_as_number_and_absent() -> None:
    assert st.price_per_hour(running_pod(singleCardPrice=2.5, gpuCount=None), 4) == "10.00"
    assert st.price_per_hour(running_pod(singleCardPrice=None), 4) is None


def test_condition_keeps_transition_time_until_status_flips() -> None:
    first = project(running_pod())
    later = NOW + dt.timedelta(hours=1)
    again = st.project(
        {**first, "phase": "Initializing"}, now=later, gpu_count=2, seen=st.Observed(running_pod())
    )
    assert again is not None
    assert ready(again)["lastTransitionTime"] == ready(first)["lastTransitionTime"]
    flipped = st.project(
        first, now=later, gpu_count=2, seen=st.Observed(running_pod(status="PAUSED"))
    )
    assert flipped is not None
    assert ready(flipped)["status"] == "False"
    assert ready(flipped)["lastTransitionTime"] == st.now_iso(later)


def test_conditions_are_kept_by_type_in_stable_order() -> None:
    synced = st.project({}, now=NOW, gpu_count=1, generation=3, sync=st.Sync.ok())
    assert synced is not None and synced["observedGeneration"] == 3
    both = project(running_pod(), synced)
    assert [c["type"] for c in both["conditions"]] == ["Ready", "Synced"]
    unknown = st.project(both, now=NOW, gpu_count=1, sync=st.Sync.unknown("R", "m"))
    assert unknown is not None and "observedGeneration" not in unknown
    assert [c["status"] for c in unknown["conditions"]] == ["True", "Unknown"]


def test_nothing_to_write_when_only_times_would_move() -> None:
    first = project(running_pod())
    current = {k: v for k, v in first.items() if k != "lastSyncTime"}
    later = NOW + dt.timedelta(days=1)
    assert st.project(current, now=later, gpu_count=2, seen=st.Observed(running_pod())) is None
    assert st.project(current, now=later, gpu_count=2, facts={"endpoints": None}) is not None


def test_spec_hash_ignores_reordering_of_set_and_map_lists() -> None:
    spec = GpuPodSpec.parse(FULL_SPEC)
    reordered = GpuPodSpec.parse(
        {
            **FULL_SPEC,
            "env": list(reversed(FULL_SPEC["env"])),
            "expose": list(reversed(FULL_SPEC["expose"])),
        }
    )
    assert spec_hash(spec) == spec_hash(reordered)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("8h", 28800), ("90m", 5400), ("1h30m", 5400), ("45s", 45), ("1.5h", 5400), ("2h0m30s", 7230)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "8", "2d", "1 h", "h", "-1h"])
def test_parse_duration_refuses_what_the_crd_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


def test_operator_only_fields_are_never_sent_and_lifetime_does_not_change_the_hash() -> None:
    base = GpuPodSpec.parse({"image": "x", "gpuType": "G"})
    full = GpuPodSpec.parse(
        {
            "image": "x",
            "gpuType": "G",
            "accountRef": {"kind": "YottaAccount", "name": "team"},
            "lifetime": {"maxRunDuration": "1h"},
            "maxPricePerHour": "2.50",
        }
    )
    body = build_create_request(full, "n", {}).model_dump(exclude_none=True)
    assert not {"accountRef", "lifetime", "maxPricePerHour", "adopt"} & set(body)
    assert body == build_create_request(base, "n", {}).model_dump(exclude_none=True)
    # a different account is a different pod; a lifetime or a price cap is not
    assert spec_hash(full) != spec_hash(base)
    assert spec_hash(full.model_copy(update={"accountRef": None})) == spec_hash(base)
