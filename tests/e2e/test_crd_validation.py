"""The GpuPod CRD on a real kube-apiserver: schema, defaults, CEL rules, immutability.

Every case goes through `kubectl apply -f -`, so what is asserted is exactly what a tenant sees.
kubectl's default field validation is Strict, so unknown fields are errors, not warnings.

The cases are table-driven and run concurrently (one kubectl process each) from module-scoped
fixtures; the parametrized tests then only assert on the collected results, so each case is
reported on its own while the whole file costs a few seconds.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import pytest

pytestmark = pytest.mark.e2e

API_VERSION = "gpupod.dev/v1alpha1"
GPU_TYPE = "NVIDIA_RTX_4090_24G"
BASE: dict[str, Any] = {
    "image": "pytorch/pytorch:2.4.0-cuda12.1-cudnn9-runtime",
    "gpuType": GPU_TYPE,
}
WORKERS = 8

# Common fragments of API server messages.
NOT_CHECKED = "some validation rules were not checked"
RECREATE_HINT = "set spec.updatePolicy: Recreate to replace the remote pod"


class ControlPlane(Protocol):
    def kubectl(
        self,
        *args: str,
        kubeconfig: str | None = None,
        input: str | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]: ...

    def create_namespace(self, name: str) -> str: ...


DROP = object()  # a spec override that removes the key from BASE
T = TypeVar("T")
R = TypeVar("R")


def gpupod(name: str, namespace: str, spec: dict[str, Any] | None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "GpuPod",
        "metadata": {"name": name, "namespace": namespace},
    }
    if spec is not None:
        obj["spec"] = spec
    return obj


def merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        if value is DROP:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def apply(cp: ControlPlane, *objs: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    body: dict[str, Any] = (
        objs[0] if len(objs) == 1 else {"apiVersion": "v1", "kind": "List", "items": list(objs)}
    )
    return cp.kubectl("apply", "-f", "-", input=json.dumps(body), check=False)


def get_all(cp: ControlPlane, namespace: str) -> dict[str, dict[str, Any]]:
    out = cp.kubectl("get", "gpupods", "-n", namespace, "-o", "json").stdout
    return {item["metadata"]["name"]: item for item in json.loads(out)["items"]}


def run_parallel(fn: Callable[[T], R], items: list[T]) -> list[R]:
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        return list(pool.map(fn, items))


def assert_mentions(result: subprocess.CompletedProcess[str], expected: tuple[str, ...]) -> None:
    output = result.stdout + result.stderr
    for text in expected:
        assert text in output, f"expected {text!r} in kubectl output:\n{output}"


@pytest.fixture(scope="module")
def ns(control_plane: ControlPlane, crds: object) -> str:
    """One namespace for the whole module (the `namespace` fixture is per test), left in place
    like `namespace`."""
    return control_plane.create_namespace(f"t-crd-validation-{uuid.uuid4().hex[:6]}")


# ---------------------------------------------------------------------------------------------
# Rejected on create
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rejected:
    id: str
    spec: Any  # dict: overrides of BASE (DROP removes a key); None: no spec; else: spec as is
    expect: tuple[str, ...]  # substrings of the error output: the field path, and the guidance
    name: str | None = None


def _range(field_name: str, value: int, bound: str) -> Rejected:
    return Rejected(
        f"{field_name}-{value}",
        {field_name: value},
        (f"spec.{field_name}: Invalid value: {value}", bound),
    )


GE = "should be greater than or equal to"
LE = "should be less than or equal to"
POWER_OF_TWO = "gpuCount must be a power of two: 1, 2, 4, 8"
PROTOCOLS = "protocol must be HTTP, HTTPS, TCP or SSH, in any case"

REJECTED: list[Rejected] = [
    # image
    Rejected("image-missing", {"image": DROP}, ("spec.image: Required value",)),
    Rejected("image-empty", {"image": ""}, ("spec.image", "should be at least 1 chars long")),
    Rejected("image-too-long", {"image": "x" * 256}, ("spec.image: Too long", "255")),
    Rejected("image-not-string", {"image": 123}, ("spec.image", "must be of type string")),
    # registry
    Rejected("registry-too-long", {"imageRegistry": "r" * 256}, ("spec.imageRegistry: Too long",)),
    Rejected(
        "public-type-enum",
        {"imagePublicType": "public"},
        ("spec.imagePublicType: Unsupported value", '"PUBLIC", "PRIVATE"'),
    ),
    _range("containerRegistryAuthId", 0, GE),
    Rejected(
        "auth-id-not-integer",
        {"containerRegistryAuthId": "12"},
        ("spec.containerRegistryAuthId", "must be of type integer"),
    ),
    # resource type, GPU type and count
    Rejected(
        "resource-type-enum",
        {"resourceType": "TPU"},
        ("spec.resourceType: Unsupported value", '"GPU", "CPU"'),
    ),
    Rejected(
        "gpu-type-missing",
        {"gpuType": DROP},
        ("spec.gpuType: Required value", "required when spec.resourceType is GPU", "CPU"),
    ),
    Rejected(
        "gpu-type-missing-explicit-gpu",
        {"gpuType": DROP, "resourceType": "GPU"},
        ("spec.gpuType: Required value", "set spec.resourceType: CPU"),
    ),
    Rejected("gpu-type-empty", {"gpuType": ""}, ("spec.gpuType", "at least 1 chars long")),
    Rejected("gpu-type-too-long", {"gpuType": "G" * 129}, ("spec.gpuType: Too long",)),
    Rejected("gpu-count-3", {"gpuCount": 3}, ("spec.gpuCount: Invalid value: 3", POWER_OF_TWO)),
    Rejected(
        "gpu-count-0",
        {"gpuCount": 0},
        ("spec.gpuCount: Invalid value: 0", POWER_OF_TWO, GE),
    ),
    Rejected("gpu-count-6", {"gpuCount": 6}, ("spec.gpuCount: Invalid value: 6", POWER_OF_TWO)),
    Rejected(
        "gpu-count-128",
        {"gpuCount": 128},
        ("spec.gpuCount: Invalid value: 128", POWER_OF_TWO, LE),
    ),
    Rejected(
        "gpu-count-not-integer", {"gpuCount": "two"}, ("spec.gpuCount", "must be of type integer")
    ),
    Rejected("gpu-count-float", {"gpuCount": 1.5}, ("spec.gpuCount", "must be of type int")),
    # regions
    Rejected("regions-not-list", {"regions": "us-east-1"}, ("spec.regions", "of type array")),
    Rejected(
        "regions-duplicate",
        {"regions": ["us-east-1", "us-east-1"]},
        ('spec.regions[1]: Duplicate value: "us-east-1"',),
    ),
    Rejected(
        "regions-too-many",
        {"regions": [f"r{i}" for i in range(17)]},
        ("spec.regions: Too many: 17", "at most 16 items"),
    ),
    Rejected(
        "region-bad-code", {"regions": ["US East"]}, ("spec.regions[0]", "should match '^[a-z0-9-]")
    ),
    # sizes
    _range("minSingleCardVramInGb", 1537, LE),
    _range("minSingleCardRamInGb", -1, GE),
    _range("minSingleCardVcpu", 1025, LE),
    _range("shmInGb", 1537, LE),
    _range("containerVolumeInGb", 0, GE),
    _range("containerVolumeInGb", 10241, LE),
    _range("persistentVolumeInGb", 10241, LE),
    Rejected(
        "persistent-volume-without-mount-path",
        {"persistentVolumeInGb": 50},
        (
            "spec.persistentMountPath: Required value",
            "required when spec.persistentVolumeInGb is greater than 0",
        ),
    ),
    Rejected(
        "persistent-mount-path-relative",
        {"persistentVolumeInGb": 50, "persistentMountPath": "workspace"},
        ('spec.persistentMountPath: Invalid value: "workspace"', "should match '^/"),
    ),
    Rejected(
        "init-command-too-long",
        {"initializationCommand": "x" * 4097},
        ("spec.initializationCommand: Too long", "4096"),
    ),
    # expose
    Rejected("port-0", {"expose": [{"port": 0}]}, ("spec.expose[0].port: Invalid value: 0", GE)),
    Rejected(
        "port-70000",
        {"expose": [{"port": 70000}]},
        ("spec.expose[0].port: Invalid value: 70000", LE),
    ),
    Rejected(
        "port-missing", {"expose": [{"protocol": "TCP"}]}, ("spec.expose[0].port: Required value",)
    ),
    Rejected(
        "protocol-unknown",
        {"expose": [{"port": 8080, "protocol": "UDP"}]},
        ("spec.expose[0].protocol: Invalid value", PROTOCOLS),
    ),
    Rejected(
        "protocol-unknown-lowercase",
        {"expose": [{"port": 8080, "protocol": "udp"}]},
        ("spec.expose[0].protocol: Invalid value", PROTOCOLS),
    ),
    Rejected(
        "protocol-empty",
        {"expose": [{"port": 8080, "protocol": ""}]},
        ("spec.expose[0].protocol: Invalid value", PROTOCOLS),
    ),
    Rejected(
        "protocol-too-long",
        {"expose": [{"port": 8080, "protocol": "h" * 17}]},
        ("spec.expose[0].protocol: Too long", "16"),
    ),
    Rejected(
        "port-duplicate",
        {"expose": [{"port": 22, "protocol": "SSH"}, {"port": 22, "protocol": "TCP"}]},
        ("spec.expose[1]: Duplicate value",),
    ),
    Rejected(
        "expose-too-many",
        {"expose": [{"port": 8000 + i} for i in range(33)]},
        ("spec.expose: Too many: 33", "at most 32 items"),
    ),
    # persistent volumes
    Rejected(
        "volume-id-0",
        {"persistentVolumes": [{"volumeId": 0, "mountPath": "/data"}]},
        ("spec.persistentVolumes[0].volumeId: Invalid value: 0", GE),
    ),
    Rejected(
        "volume-id-missing",
        {"persistentVolumes": [{"mountPath": "/data"}]},
        ("spec.persistentVolumes[0].volumeId: Required value",),
    ),
    Rejected(
        "volume-mount-relative",
        {"persistentVolumes": [{"volumeId": 7, "mountPath": "data"}]},
        ("spec.persistentVolumes[0].mountPath", "should match '^/"),
    ),
    Rejected(
        "volume-need-backup-not-bool",
        {"persistentVolumes": [{"volumeId": 7, "mountPath": "/d", "needBackup": "yes"}]},
        ("spec.persistentVolumes[0].needBackup", "must be of type boolean"),
    ),
    # env
    Rejected(
        "env-value-and-value-from",
        {
            "env": [
                {
                    "name": "A",
                    "value": "b",
                    "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}},
                }
            ]
        },
        ("spec.env[0]", "exactly one of value and valueFrom must be set"),
    ),
    Rejected(
        "env-neither",
        {"env": [{"name": "A"}]},
        ("spec.env[0]", "exactly one of value and valueFrom must be set"),
    ),
    Rejected(
        "env-bad-name",
        {"env": [{"name": "1-A", "value": "b"}]},
        ('spec.env[0].name: Invalid value: "1-A"', "should match"),
    ),
    Rejected(
        "env-name-too-long",
        {"env": [{"name": "A" * 129, "value": "b"}]},
        ("spec.env[0].name: Too long",),
    ),
    Rejected(
        "env-value-too-long",
        {"env": [{"name": "A", "value": "v" * 32769}]},
        ("spec.env[0].value: Too long", "32768"),
    ),
    Rejected(
        "env-duplicate-name",
        {"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]},
        ("spec.env[1]: Duplicate value",),
    ),
    Rejected(
        "env-too-many",
        {"env": [{"name": f"V{i}", "value": "x"} for i in range(129)]},
        ("spec.env: Too many: 129", "at most 128 items"),
    ),
    Rejected(
        "env-secret-key-missing",
        {"env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s"}}}]},
        ("spec.env[0].valueFrom.secretKeyRef.key: Required value",),
    ),
    Rejected(
        "env-value-from-not-object",
        {"env": [{"name": "A", "valueFrom": "secret"}]},
        ("spec.env[0].valueFrom", "must be of type object"),
    ),
    Rejected(
        "env-optional-not-bool",
        {
            "env": [
                {
                    "name": "A",
                    "valueFrom": {"secretKeyRef": {"name": "s", "key": "k", "optional": "no"}},
                }
            ]
        },
        ("spec.env[0].valueFrom.secretKeyRef.optional", "must be of type boolean"),
    ),
    # mutable fields' types and enums
    Rejected("paused-not-bool", {"paused": "yes"}, ("spec.paused", "must be of type boolean")),
    Rejected(
        "deletion-policy-enum",
        {"deletionPolicy": "Retain"},
        ("spec.deletionPolicy: Unsupported value", '"Delete", "Orphan"'),
    ),
    Rejected(
        "update-policy-enum",
        {"updatePolicy": "Always"},
        ("spec.updatePolicy: Unsupported value", '"Reject", "Recreate"'),
    ),
    # accounts, guardrails, adoption
    Rejected(
        "account-kind-enum",
        {"accountRef": {"kind": "Secret", "name": "a"}},
        ("spec.accountRef.kind: Unsupported value", '"YottaAccount", "ClusterYottaAccount"'),
    ),
    Rejected("account-name-missing", {"accountRef": {"kind": "YottaAccount"}}, ("name",)),
    Rejected(
        "lifetime-not-a-duration",
        {"lifetime": {"maxRunDuration": "8 hours"}},
        ("spec.lifetime.maxRunDuration", "should match"),
    ),
    Rejected(
        "lifetime-days-unsupported",
        {"lifetime": {"maxRunDuration": "2d"}},
        ("spec.lifetime.maxRunDuration", "should match"),
    ),
    Rejected(
        "lifetime-action-enum",
        {"lifetime": {"maxRunDuration": "1h", "action": "Stop"}},
        ("spec.lifetime.action: Unsupported value", '"Pause", "Delete"'),
    ),
    Rejected("price-cap-float", {"maxPricePerHour": 2.5}, ("spec.maxPricePerHour",)),
    Rejected(
        "price-cap-negative",
        {"maxPricePerHour": "-1"},
        ("spec.maxPricePerHour", "should match"),
    ),
    Rejected(
        "adopt-pod-id-not-decimal",
        {"adopt": {"podId": "abc"}},
        ("spec.adopt.podId", "should match"),
    ),
    Rejected(
        "adopt-mode-enum",
        {"adopt": {"podId": "12", "mode": "Own"}},
        ("spec.adopt.mode: Unsupported value", '"Manage", "Observe"'),
    ),
    # structure
    Rejected("unknown-spec-field", {"gpuModel": "H100"}, ('unknown field "spec.gpuModel"',)),
    Rejected(
        "unknown-nested-field",
        {"env": [{"name": "A", "value": "b", "secret": True}]},
        ('unknown field "spec.env[0].secret"',),
    ),
    Rejected("spec-not-object", "image: x", ("spec", "must be of type object")),
    Rejected("spec-missing", None, ("spec: Required value",)),
    Rejected(
        "name-300-chars",
        {},
        ("metadata.name", "must be no more than 253 characters"),
        name="n" * 300,
    ),
]


def _rejected_manifest(case: Rejected, namespace: str) -> dict[str, Any]:
    name = case.name or f"rej-{case.id.lower()}"
    obj = gpupod(name, namespace, None)
    if isinstance(case.spec, dict):
        obj["spec"] = merged(BASE, case.spec)
    elif case.spec is not None:
        obj["spec"] = case.spec
    return obj


@pytest.fixture(scope="module")
def rejected_results(
    control_plane: ControlPlane, ns: str
) -> dict[str, subprocess.CompletedProcess[str]]:
    results = run_parallel(
        lambda case: apply(control_plane, _rejected_manifest(case, ns)), REJECTED
    )
    return {case.id: result for case, result in zip(REJECTED, results, strict=True)}


@pytest.mark.parametrize("case", REJECTED, ids=[c.id for c in REJECTED])
def test_rejected_on_create(
    case: Rejected, rejected_results: dict[str, subprocess.CompletedProcess[str]]
) -> None:
    result = rejected_results[case.id]
    assert result.returncode != 0, f"{case.id} was accepted:\n{result.stdout}"
    assert_mentions(result, case.expect)


def test_rejected_objects_were_not_stored(
    control_plane: ControlPlane, ns: str, rejected_results: object
) -> None:
    assert not [name for name in get_all(control_plane, ns) if name.startswith("rej-")]


# ---------------------------------------------------------------------------------------------
# Accepted on create, with defaults applied
# ---------------------------------------------------------------------------------------------

FULL_SPEC: dict[str, Any] = {
    "image": "pytorch/pytorch:2.4.0-cuda12.1-cudnn9-runtime",
    "imageRegistry": "https://index.docker.io/v1/",
    "imagePublicType": "PRIVATE",
    "containerRegistryAuthId": 412312312312312312,  # int64 beyond 2^53 stays exact
    "resourceType": "GPU",
    "gpuType": "NVIDIA_H100_80G",
    "gpuCount": 8,
    "regions": ["us-east-1", "us-west-2"],
    "minSingleCardVramInGb": 80,
    "minSingleCardRamInGb": 1536,
    "minSingleCardVcpu": 0,
    "shmInGb": 64,
    "containerVolumeInGb": 10240,
    "persistentVolumeInGb": 100,
    "persistentMountPath": "/workspace",
    "initializationCommand": "pip install -r /workspace/requirements.txt && jupyter lab",
    "expose": [{"port": 8888, "protocol": "HTTP"}, {"port": 22, "protocol": "SSH"}],
    "persistentVolumes": [
        {"volumeId": 362740422811062272, "mountPath": "/data", "needBackup": True}
    ],
    "env": [
        {"name": "HF_HOME", "value": ""},
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf.creds", "key": "token"}}},
    ],
    "paused": True,
    "deletionPolicy": "Orphan",
    "updatePolicy": "Recreate",
}

# The API's own docs write `"protocol": "http"`; captured responses write HTTP.
ANY_CASE_EXPOSE = [
    {"port": 80, "protocol": "http"},
    {"port": 443, "protocol": "Https"},
    {"port": 22, "protocol": "ssh"},
    {"port": 9000, "protocol": "tCp"},
    {"port": 8080, "protocol": "HTTP"},
]

ACCEPTED: dict[str, dict[str, Any]] = {
    "ok-defaults": dict(BASE),
    "ok-cpu-without-gpu-type": {"image": "python:3.12", "resourceType": "CPU"},
    "ok-full": FULL_SPEC,
    "ok-persistent-volume-zero": {**BASE, "persistentVolumeInGb": 0},
    "ok-gpu-count-64": {**BASE, "gpuCount": 64},
    "ok-protocols-any-case": {**BASE, "expose": ANY_CASE_EXPOSE},
    "ok-adopt-without-image-or-gpu-type": {"adopt": {"podId": "388295873923366912"}},
    "ok-guardrails": {
        **BASE,
        "lifetime": {"maxRunDuration": "1h30m", "action": "Delete"},
        "maxPricePerHour": "2.50",
    },
}

DEFAULTS = {
    "imagePublicType": "PUBLIC",
    "resourceType": "GPU",
    "gpuCount": 1,
    "paused": False,
    "deletionPolicy": "Delete",
    "updatePolicy": "Reject",
}


@pytest.fixture(scope="module")
def accepted(control_plane: ControlPlane, ns: str) -> dict[str, dict[str, Any]]:
    result = apply(control_plane, *(gpupod(n, ns, s) for n, s in ACCEPTED.items()))
    assert result.returncode == 0, result.stderr
    return get_all(control_plane, ns)


def test_defaults_applied(accepted: dict[str, dict[str, Any]]) -> None:
    assert accepted["ok-defaults"]["spec"] == {**BASE, **DEFAULTS}


def test_cpu_pod_needs_no_gpu_type(accepted: dict[str, dict[str, Any]]) -> None:
    spec = accepted["ok-cpu-without-gpu-type"]["spec"]
    assert spec["resourceType"] == "CPU" and "gpuType" not in spec


def test_every_field_is_stored_as_written(accepted: dict[str, dict[str, Any]]) -> None:
    """Nothing pruned or rounded; nested defaults (secretKeyRef.optional) applied."""
    spec = accepted["ok-full"]["spec"]
    expected = json.loads(json.dumps(FULL_SPEC))
    expected["env"][1]["valueFrom"]["secretKeyRef"]["optional"] = False
    assert spec == expected


def test_protocols_in_any_case_are_stored_as_written(
    accepted: dict[str, dict[str, Any]],
) -> None:
    assert accepted["ok-protocols-any-case"]["spec"]["expose"] == ANY_CASE_EXPOSE


def test_boundary_values_accepted(accepted: dict[str, dict[str, Any]]) -> None:
    assert accepted["ok-persistent-volume-zero"]["spec"]["persistentVolumeInGb"] == 0
    assert accepted["ok-gpu-count-64"]["spec"]["gpuCount"] == 64


# ---------------------------------------------------------------------------------------------
# Updates: create-time fields are immutable under Reject, replaceable under Recreate
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    id: str
    field: str  # the spec field the error must name
    before: dict[str, Any]  # added to BASE for the original object
    after: dict[str, Any]  # overrides of `before` (DROP removes a key)

    @property
    def name(self) -> str:
        return f"imm-{self.id}"


CHANGES: list[Change] = [
    Change("image", "image", {}, {"image": "pytorch/pytorch:2.5.0-cuda12.4-cudnn9-runtime"}),
    Change("gpu-type", "gpuType", {}, {"gpuType": "NVIDIA_H100_80G"}),
    Change("gpu-count", "gpuCount", {}, {"gpuCount": 2}),
    Change("regions-add", "regions", {"regions": ["us-east-1"]}, {"regions": ["us-east-1", "sg"]}),
    Change("regions-remove", "regions", {"regions": ["us-east-1"]}, {"regions": DROP}),
    Change(
        "env-value",
        "env",
        {"env": [{"name": "MODE", "value": "train"}]},
        {"env": [{"name": "MODE", "value": "serve"}]},
    ),
    Change(
        "expose-add",
        "expose",
        {"expose": [{"port": 8888, "protocol": "HTTP"}]},
        {"expose": [{"port": 8888, "protocol": "HTTP"}, {"port": 22, "protocol": "SSH"}]},
    ),
    Change("registry-added", "imageRegistry", {}, {"imageRegistry": "https://ghcr.io"}),
    Change("resource-type", "resourceType", {}, {"resourceType": "CPU"}),
    Change(
        "volumes",
        "persistentVolumes",
        {"persistentVolumes": [{"volumeId": 7, "mountPath": "/data"}]},
        {"persistentVolumes": [{"volumeId": 8, "mountPath": "/data"}]},
    ),
    Change("init-command", "initializationCommand", {}, {"initializationCommand": "sleep 1"}),
]


@dataclass
class ChangeResult:
    under_reject: subprocess.CompletedProcess[str]
    under_recreate: subprocess.CompletedProcess[str]


def _change_spec(change: Change, **extra: Any) -> dict[str, Any]:
    return merged(merged({**BASE, **change.before}, change.after), extra)


@pytest.fixture(scope="module")
def change_results(control_plane: ControlPlane, ns: str) -> dict[str, ChangeResult]:
    originals = [gpupod(c.name, ns, {**BASE, **c.before}) for c in CHANGES]
    created = apply(control_plane, *originals)
    assert created.returncode == 0, created.stderr

    def attempt(change: Change) -> ChangeResult:
        rejected = apply(control_plane, gpupod(change.name, ns, _change_spec(change)))
        recreate = _change_spec(change, updatePolicy="Recreate")
        accepted = apply(control_plane, gpupod(change.name, ns, recreate))
        return ChangeResult(rejected, accepted)

    return dict(zip([c.id for c in CHANGES], run_parallel(attempt, CHANGES), strict=True))


@pytest.mark.parametrize("change", CHANGES, ids=[c.id for c in CHANGES])
def test_create_time_field_change(
    change: Change,
    change_results: dict[str, ChangeResult],
    control_plane: ControlPlane,
    ns: str,
) -> None:
    result = change_results[change.id]
    assert result.under_reject.returncode != 0, f"{change.id}: change accepted under Reject"
    assert_mentions(
        result.under_reject,
        (
            f"spec.{change.field}: Forbidden: spec.{change.field} cannot change while "
            "spec.updatePolicy is Reject",
            RECREATE_HINT,
            "delete and recreate the GpuPod",
        ),
    )
    assert result.under_recreate.returncode == 0, result.under_recreate.stderr
    stored = json.loads(
        control_plane.kubectl("get", "gpupod", change.name, "-n", ns, "-o", "json").stdout
    )["spec"]
    wanted = _change_spec(change, updatePolicy="Recreate")
    assert {k: stored.get(k) for k in wanted} == wanted
    for key, value in change.after.items():
        if value is DROP:
            assert key not in stored


@dataclass(frozen=True)
class Mutation:
    id: str
    before: dict[str, Any]
    after: dict[str, Any]
    accepted: bool
    expect: tuple[str, ...] = ()


MUTATIONS: list[Mutation] = [
    Mutation("pause", {}, {"paused": True}, True),
    Mutation("resume", {"paused": True}, {"paused": False}, True),
    Mutation("orphan", {}, {"deletionPolicy": "Orphan"}, True),
    Mutation("policy-to-recreate", {}, {"updatePolicy": "Recreate"}, True),
    Mutation(
        "regions-reordered",  # a set: order is not a change
        {"regions": ["us-east-1", "us-west-1"]},
        {"regions": ["us-west-1", "us-east-1"]},
        True,
    ),
    Mutation(
        "back-to-reject-with-change",  # the rule reads the new updatePolicy
        {"updatePolicy": "Recreate"},
        {"updatePolicy": "Reject", "gpuCount": 4},
        False,
        ("spec.gpuCount: Forbidden", RECREATE_HINT),
    ),
    Mutation(
        "recreate-still-validates",  # Recreate allows the change, not an invalid value
        {},
        {"gpuCount": 3, "updatePolicy": "Recreate"},
        False,
        (POWER_OF_TWO,),
    ),
]


@pytest.fixture(scope="module")
def mutation_results(
    control_plane: ControlPlane, ns: str
) -> dict[str, subprocess.CompletedProcess[str]]:
    originals = [gpupod(f"mut-{m.id}", ns, {**BASE, **m.before}) for m in MUTATIONS]
    created = apply(control_plane, *originals)
    assert created.returncode == 0, created.stderr

    def attempt(m: Mutation) -> subprocess.CompletedProcess[str]:
        return apply(control_plane, gpupod(f"mut-{m.id}", ns, {**BASE, **m.before, **m.after}))

    return dict(zip([m.id for m in MUTATIONS], run_parallel(attempt, MUTATIONS), strict=True))


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m.id for m in MUTATIONS])
def test_update(
    mutation: Mutation,
    mutation_results: dict[str, subprocess.CompletedProcess[str]],
    control_plane: ControlPlane,
    ns: str,
) -> None:
    result = mutation_results[mutation.id]
    stored = json.loads(
        control_plane.kubectl("get", "gpupod", f"mut-{mutation.id}", "-n", ns, "-o", "json").stdout
    )["spec"]
    if mutation.accepted:
        assert result.returncode == 0, result.stderr
        for key, value in mutation.after.items():
            assert stored[key] == value, key
    else:
        assert result.returncode != 0, f"{mutation.id} was accepted"
        assert_mentions(result, mutation.expect)
        for key, value in mutation.before.items():
            assert stored[key] == value, key


# ---------------------------------------------------------------------------------------------
# Status subresource, printer columns, kubectl explain
# ---------------------------------------------------------------------------------------------

FULL_STATUS: dict[str, Any] = {
    "podId": "420522713875330018",
    "remoteName": "ns-name-0123abcd",
    "phase": "Running",
    "remoteStatus": "RUNNING",
    "region": "us-east-1",
    "sshCommand": "ssh root@203.0.113.7 -p 10022",
    "endpoints": [
        {
            "port": 8888,
            "protocol": "HTTP",
            "host": "203.0.113.7",
            "proxyPort": 30888,
            "url": "https://p-8888.example.invalid",
            "healthy": True,
        }
    ],
    "pricePerHour": "1.30",
    "createdAt": "2026-11-27T02:00:00Z",
    "lastSyncTime": "2026-11-27T02:01:00Z",
    "message": "remote pod is RUNNING",
    "observedGeneration": 1,
    "conditions": [
        {
            "type": "Ready",
            "status": "True",
            "reason": "Running",
            "message": "remote pod is RUNNING",
            "lastTransitionTime": "2026-11-27T02:00:30Z",
            "observedGeneration": 1,
        },
        {"type": "Synced", "status": "True", "reason": "Reconciled", "observedGeneration": 1},
    ],
    "createPending": {"remoteName": "ns-name-0123abcd", "since": "2026-11-27T01:59:59Z"},
    "specHash": "sha256:0123456789abcdef",
    "pausedApplied": False,
    "replacing": False,
}


def test_status_subresource_round_trip(
    control_plane: ControlPlane, ns: str, accepted: dict[str, dict[str, Any]]
) -> None:
    name = "ok-defaults"
    control_plane.kubectl(
        "patch",
        "gpupod",
        name,
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": FULL_STATUS}),
    )
    stored = json.loads(control_plane.kubectl("get", "gpupod", name, "-n", ns, "-o", "json").stdout)
    assert stored["status"] == FULL_STATUS
    assert stored["metadata"]["generation"] == 1, "a status write must not bump generation"

    table = control_plane.kubectl("get", "gpupod", name, "-n", ns).stdout.splitlines()
    assert table[0].split() == [
        "NAME",
        "PHASE",
        "GPU",
        "COUNT",
        "REGION",
        "POD",
        "ID",
        "PRICE/H",
        "AGE",
    ]
    assert table[1].split()[:7] == [
        name,
        "Running",
        GPU_TYPE,
        "1",
        "us-east-1",
        "420522713875330018",
        "1.30",
    ]


def test_status_phase_is_an_enum(
    control_plane: ControlPlane, ns: str, accepted: dict[str, dict[str, Any]]
) -> None:
    result = control_plane.kubectl(
        "patch",
        "gpupod",
        "ok-gpu-count-64",
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"phase": "Exploded"}}),
        check=False,
    )
    assert result.returncode != 0
    assert_mentions(result, ("status.phase: Unsupported value",))


def test_short_name_and_category(
    control_plane: ControlPlane, ns: str, accepted: dict[str, dict[str, Any]]
) -> None:
    by_short = control_plane.kubectl("get", "gpod", "-n", ns, "-o", "name").stdout.split()
    by_category = control_plane.kubectl("get", "gpu", "-n", ns, "-o", "name").stdout.split()
    assert "gpupod.gpupod.dev/ok-defaults" in by_short
    # The category holds every kind of the project (accounts, quotas too, cluster-scoped ones
    # from other tests included): its GpuPods are the short name's.
    gpupods = [n for n in by_category if n.startswith("gpupod.gpupod.dev/")]
    assert sorted(by_short) == sorted(gpupods)


def test_kubectl_explain_reads_like_documentation(
    control_plane: ControlPlane, crds: object
) -> None:
    out = " ".join(control_plane.kubectl("explain", "gpupod.spec").stdout.split())
    for text in (
        "mirrors the create request",
        "gpuCount",
        "a power of two, 1, 2, 4, 8, 16, 32 or 64",
        "updatePolicy",
        "Recreate: the operator deletes the",
        "in GB",
    ):
        assert text in out, f"{text!r} not in kubectl explain gpupod.spec:\n{out}"
    status = " ".join(control_plane.kubectl("explain", "gpupod.status.podId").stdout.split())
    assert "IDs exceed 2^53" in status
