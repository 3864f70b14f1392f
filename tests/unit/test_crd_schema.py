"""Offline checks of crds/gpupods.gpupod.dev.yaml against the contract (DESIGN.md section 2.3).

No cluster needed. What only a real API server can prove (CEL compiles, cost budget, the error
messages users see) is in tests/e2e/test_crd_validation.py.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from gpupod_operator.domain.spec import GpuPodSpec

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "crds" / "gpupods.gpupod.dev.yaml"
GENERATOR_PATH = ROOT / "hack" / "gen_crd.py"

MUTABLE_SPEC_FIELDS = {"paused", "deletionPolicy", "updatePolicy", "lifetime", "maxPricePerHour"}
CREATE_TIME_SPEC_FIELDS = {
    "image",
    "imageRegistry",
    "imagePublicType",
    "containerRegistryAuthId",
    "resourceType",
    "gpuType",
    "gpuCount",
    "regions",
    "minSingleCardVramInGb",
    "minSingleCardRamInGb",
    "minSingleCardVcpu",
    "shmInGb",
    "containerVolumeInGb",
    "persistentVolumeInGb",
    "persistentMountPath",
    "initializationCommand",
    "expose",
    "persistentVolumes",
    "env",
    "accountRef",
    "adopt",
}

# status field -> (type, format or None)
STATUS_FIELDS: dict[str, tuple[str, str | None]] = {
    "podId": ("string", None),
    "remoteName": ("string", None),
    "phase": ("string", None),
    "remoteStatus": ("string", None),
    "region": ("string", None),
    "sshCommand": ("string", None),
    "endpoints": ("array", None),
    "pricePerHour": ("string", None),
    "createdAt": ("string", "date-time"),
    "lastSyncTime": ("string", "date-time"),
    "message": ("string", None),
    "observedGeneration": ("integer", "int64"),
    "conditions": ("array", None),
    "createPending": ("object", None),
    "specHash": ("string", None),
    "pausedApplied": ("boolean", None),
    "replacing": ("boolean", None),
    "account": ("object", None),
    "cost": ("object", None),
    "expiresAt": ("string", "date-time"),
    "lastHandled": ("string", None),
}
PHASES = [
    "Pending",
    "Creating",
    "Initializing",
    "Running",
    "Pausing",
    "Paused",
    "Terminating",
    "Terminated",
    "Failed",
    "Lost",
]


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    docs = list(yaml.safe_load_all(CRD_PATH.read_text()))
    assert len(docs) == 1, "the CRD file must hold exactly one document"
    doc = docs[0]
    assert isinstance(doc, dict)
    return doc


@pytest.fixture(scope="module")
def version(crd: dict[str, Any]) -> dict[str, Any]:
    versions = crd["spec"]["versions"]
    assert len(versions) == 1
    v: dict[str, Any] = versions[0]
    return v


@pytest.fixture(scope="module")
def root(version: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


@pytest.fixture(scope="module")
def spec(root: dict[str, Any]) -> dict[str, Any]:
    s: dict[str, Any] = root["properties"]["spec"]
    return s


@pytest.fixture(scope="module")
def status(root: dict[str, Any]) -> dict[str, Any]:
    s: dict[str, Any] = root["properties"]["status"]
    return s


def walk(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node below `node` (properties and list items), with a readable path."""
    for name, child in node.get("properties", {}).items():
        yield f"{path}.{name}", child
        yield from walk(child, f"{path}.{name}")
    if "items" in node:
        yield f"{path}[]", node["items"]
        yield from walk(node["items"], f"{path}[]")


def load_generator() -> ModuleType:
    module_spec = importlib.util.spec_from_file_location("gen_crd", GENERATOR_PATH)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    sys.modules["gen_crd"] = module  # as the hack/crd_*.py modules import it
    module_spec.loader.exec_module(module)
    return module


def test_every_committed_crd_is_the_generator_output() -> None:
    generator = load_generator()
    assert generator.main(["--check"]) == 0, "a CRD under crds/ is stale: run hack/gen_crd.py"
    generated = {path.name for path in generator.documents()}
    assert generated == {path.name for path in (ROOT / "crds").glob("*.yaml")}


def test_committed_file_is_the_generator_output() -> None:
    generator = load_generator()
    assert CRD_PATH.read_text() == generator.render(), (
        "crds/gpupods.gpupod.dev.yaml is stale: run .venv/bin/python hack/gen_crd.py"
    )


def test_names_match_the_contract(crd: dict[str, Any], version: dict[str, Any]) -> None:
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == "gpupods.gpupod.dev"
    assert crd["spec"]["group"] == "gpupod.dev"
    assert crd["spec"]["scope"] == "Namespaced"
    names = crd["spec"]["names"]
    assert names["kind"] == "GpuPod"
    assert names["listKind"] == "GpuPodList"
    assert names["plural"] == "gpupods"
    assert names["singular"] == "gpupod"
    assert names["shortNames"] == ["gpod"]
    assert names["categories"] == ["gpu"]
    assert version["name"] == "v1alpha1"
    assert version["served"] is True
    assert version["storage"] is True
    assert version["subresources"] == {"status": {}}


def test_every_field_has_a_description(root: dict[str, Any]) -> None:
    assert root.get("description", "").strip()
    missing = [
        path
        for path, node in walk(root, "")
        # The API server forbids anything but `type` on the root metadata.
        if path != ".metadata" and not str(node.get("description", "")).strip()
    ]
    assert not missing, f"schema nodes without a description: {missing}"


def test_schema_is_structural_and_closed(root: dict[str, Any]) -> None:
    nodes = [("", root), *walk(root, "")]
    untyped = [path for path, node in nodes if "type" not in node]
    assert not untyped, f"structural schemas need a type on every node: {untyped}"
    open_nodes = [
        path
        for path, node in nodes
        if node.get("x-kubernetes-preserve-unknown-fields") or "additionalProperties" in node
    ]
    assert not open_nodes, f"unknown fields must be rejected, but these keep them: {open_nodes}"
    for path, node in nodes:
        if node["type"] == "object" and path != ".metadata":
            assert node.get("properties"), f"{path}: object without properties"


def test_spec_strings_and_lists_are_bounded(spec: dict[str, Any]) -> None:
    """maxLength/maxItems on every spec string and list keep CEL cost estimates small."""
    unbounded = [
        path
        for path, node in walk(spec, "spec")
        if (node["type"] == "string" and "maxLength" not in node and "enum" not in node)
        or (node["type"] == "array" and "maxItems" not in node)
    ]
    assert not unbounded, f"spec nodes without maxLength/maxItems: {unbounded}"


def test_spec_fields(spec: dict[str, Any]) -> None:
    props = spec["properties"]
    assert set(props) == CREATE_TIME_SPEC_FIELDS | MUTABLE_SPEC_FIELDS
    assert "required" not in spec  # image is required unless adopt is set: a CEL rule

    assert props["image"]["minLength"] == 1 and props["image"]["maxLength"] == 255
    assert props["imageRegistry"]["maxLength"] == 255
    assert props["imagePublicType"]["enum"] == ["PUBLIC", "PRIVATE"]
    assert props["containerRegistryAuthId"]["format"] == "int64"
    assert props["containerRegistryAuthId"]["minimum"] == 1
    assert props["resourceType"]["enum"] == ["GPU", "CPU"]
    assert (props["gpuType"]["minLength"], props["gpuType"]["maxLength"]) == (1, 128)

    regions = props["regions"]
    assert regions["x-kubernetes-list-type"] == "set"
    assert regions["maxItems"] == 16
    assert regions["items"]["pattern"] == r"^[a-z0-9-]{1,64}$"

    bounds = {
        "minSingleCardVramInGb": (0, 1536),
        "minSingleCardRamInGb": (0, 1536),
        "minSingleCardVcpu": (0, 1024),
        "shmInGb": (0, 1536),
        "containerVolumeInGb": (1, 10240),
        "persistentVolumeInGb": (0, 10240),
    }
    for name, (lo, hi) in bounds.items():
        assert (props[name]["type"], props[name]["minimum"], props[name]["maximum"]) == (
            "integer",
            lo,
            hi,
        ), name
    assert props["persistentMountPath"]["maxLength"] == 255
    assert props["persistentMountPath"]["pattern"].startswith("^/")
    assert props["initializationCommand"]["maxLength"] == 4096

    expose = props["expose"]
    assert expose["maxItems"] == 32
    assert expose["x-kubernetes-list-type"] == "map"
    assert expose["x-kubernetes-list-map-keys"] == ["port"]
    port = expose["items"]["properties"]["port"]
    assert (port["minimum"], port["maximum"]) == (1, 65535)
    protocol = expose["items"]["properties"]["protocol"]
    # Any case (the API's own examples write `http`): a rule, not a case-sensitive enum.
    assert "enum" not in protocol and protocol["default"] == "HTTP"
    assert [r["rule"] for r in protocol["x-kubernetes-validations"]] == [
        "self.upperAscii() in ['HTTP', 'HTTPS', 'TCP', 'SSH']"
    ]
    assert expose["items"]["required"] == ["port"]

    volumes = props["persistentVolumes"]
    assert volumes["maxItems"] == 16
    volume = volumes["items"]["properties"]
    assert volume["volumeId"]["format"] == "int64" and volume["volumeId"]["minimum"] == 1
    assert volume["mountPath"]["pattern"].startswith("^/")
    assert volume["needBackup"]["type"] == "boolean"
    assert set(volumes["items"]["required"]) == {"volumeId", "mountPath"}

    env = props["env"]
    assert env["maxItems"] == 128
    assert env["x-kubernetes-list-type"] == "map"
    assert env["x-kubernetes-list-map-keys"] == ["name"]
    item = env["items"]
    assert item["properties"]["name"]["pattern"] == r"^[A-Za-z_][A-Za-z0-9_]*$"
    assert item["properties"]["name"]["maxLength"] == 128
    assert item["properties"]["value"]["maxLength"] == 32768
    ref = item["properties"]["valueFrom"]["properties"]["secretKeyRef"]
    assert set(ref["required"]) == {"name", "key"}
    assert ref["properties"]["optional"]["default"] is False
    assert [r["rule"] for r in item["x-kubernetes-validations"]] == [
        "has(self.value) != has(self.valueFrom)"
    ]

    assert props["deletionPolicy"]["enum"] == ["Delete", "Orphan"]
    assert props["updatePolicy"]["enum"] == ["Reject", "Recreate"]


def test_spec_defaults(spec: dict[str, Any]) -> None:
    defaults = {
        name: node["default"] for name, node in spec["properties"].items() if "default" in node
    }
    assert defaults == {
        "imagePublicType": "PUBLIC",
        "resourceType": "GPU",
        "gpuCount": 1,
        "paused": False,
        "deletionPolicy": "Delete",
        "updatePolicy": "Reject",
    }


def test_list_map_keys_are_required(root: dict[str, Any]) -> None:
    """The API server refuses a list-type map whose keys are neither required nor defaulted."""
    for path, node in walk(root, ""):
        for key in node.get("x-kubernetes-list-map-keys", []):
            item = node["items"]
            assert key in item.get("required", []) or "default" in item["properties"][key], path


def test_gpu_count_rule(spec: dict[str, Any]) -> None:
    rules = spec["properties"]["gpuCount"]["x-kubernetes-validations"]
    assert [r["rule"] for r in rules] == ["self in [1, 2, 4, 8, 16, 32, 64]"]
    assert rules[0]["message"].startswith("gpuCount must be a power of two: 1, 2, 4, 8")


def test_cross_field_rules(spec: dict[str, Any]) -> None:
    by_path = {
        r["fieldPath"]: r for r in spec["x-kubernetes-validations"] if "oldSelf" not in r["rule"]
    }
    assert set(by_path) == {".image", ".gpuType", ".persistentMountPath"}
    assert by_path[".image"]["rule"] == "has(self.image) || has(self.adopt)"
    assert "has(self.gpuType)" in by_path[".gpuType"]["rule"]
    assert "has(self.persistentMountPath)" in by_path[".persistentMountPath"]["rule"]
    for r in by_path.values():
        assert r["reason"] == "FieldValueRequired"


def test_one_immutability_rule_per_create_time_field(spec: dict[str, Any]) -> None:
    transition = [r for r in spec["x-kubernetes-validations"] if "oldSelf" in r["rule"]]
    fields = [r["fieldPath"].removeprefix(".") for r in transition]
    assert sorted(fields) == sorted(CREATE_TIME_SPEC_FIELDS), "exactly one rule per field"
    for r, field in zip(transition, fields, strict=True):
        assert "self.updatePolicy == 'Recreate'" in r["rule"], field
        assert f"oldSelf.{field}" in r["rule"], field
        # every field is optional (image only by CEL): adding or removing one is a change too
        assert f"has(self.{field}) == has(oldSelf.{field})" in r["rule"], field
        assert r["reason"] == "FieldValueForbidden"
        assert r["message"].startswith(f"spec.{field} cannot change while spec.updatePolicy is")
        assert "set spec.updatePolicy: Recreate" in r["message"]
    assert not MUTABLE_SPEC_FIELDS & set(fields)


def test_no_cel_on_status(status: dict[str, Any]) -> None:
    nodes = [("status", status), *walk(status, "status")]
    assert not [path for path, node in nodes if "x-kubernetes-validations" in node]


def test_status_fields(status: dict[str, Any]) -> None:
    props = status["properties"]
    assert set(props) == set(STATUS_FIELDS)
    for name, (type_, fmt) in STATUS_FIELDS.items():
        assert props[name]["type"] == type_, name
        assert props[name].get("format") == fmt, name
    assert props["phase"]["enum"] == PHASES

    endpoint = props["endpoints"]["items"]["properties"]
    assert {k: v["type"] for k, v in endpoint.items()} == {
        "port": "integer",
        "protocol": "string",
        "host": "string",
        "proxyPort": "integer",
        "url": "string",
        "healthy": "boolean",
    }

    conditions = props["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    condition = conditions["items"]["properties"]
    assert set(condition) == {
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
        "observedGeneration",
    }
    assert condition["status"]["enum"] == ["True", "False", "Unknown"]
    assert condition["lastTransitionTime"]["format"] == "date-time"
    assert condition["observedGeneration"]["format"] == "int64"

    pending = props["createPending"]["properties"]
    assert pending["remoteName"]["type"] == "string"
    assert pending["since"]["format"] == "date-time"


def test_printer_columns(version: dict[str, Any]) -> None:
    columns = [
        (c["name"], c["type"], c["jsonPath"], c.get("priority", 0))
        for c in version["additionalPrinterColumns"]
    ]
    assert columns == [
        ("Phase", "string", ".status.phase", 0),
        ("GPU", "string", ".spec.gpuType", 0),
        ("Count", "integer", ".spec.gpuCount", 0),
        ("Region", "string", ".status.region", 0),
        ("Pod ID", "string", ".status.podId", 0),
        ("Price/h", "string", ".status.pricePerHour", 0),
        ("Age", "date", ".metadata.creationTimestamp", 0),
        ("Expires", "string", ".status.expiresAt", 1),  # -o wide
        ("Cost", "string", ".status.cost.accrued", 1),
    ]


def test_generator_check_mode() -> None:
    generator = load_generator()
    assert generator.main(["--check"]) == 0


# ---------------------------------------------------------------------------------------------
# The CRD's spec and GpuPodSpec (domain/spec.py) are one schema: both read api_limits and the
# GpuPod's own bounds, and these tests fail on any difference in names, types and bounds.
# ---------------------------------------------------------------------------------------------

# What a value may be. Descriptions, formats, list types and CEL rules are the CRD's alone; the
# CEL rules on single fields are compared by behaviour below.
COMPARED = (
    "type",
    "enum",
    "default",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "maxItems",
    "pattern",
)


def _crd_shape(node: dict[str, Any]) -> dict[str, Any]:
    shape: dict[str, Any] = {k: node[k] for k in COMPARED if k in node}
    if "properties" in node:
        shape["properties"] = {k: _crd_shape(v) for k, v in node["properties"].items()}
        shape["required"] = sorted(node.get("required", []))
    if "items" in node:
        shape["items"] = _crd_shape(node["items"])
    return shape


def _pydantic_shape(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node or "anyOf" in node:
        if "$ref" in node:  # a nested model or enum: its definition, plus the field's default
            target = defs[node["$ref"].rsplit("/", 1)[-1]]
            node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        else:  # `X | None` means optional, which the CRD says by leaving X out of required
            branches = [b for b in node["anyOf"] if b.get("type") != "null"]
            assert len(branches) == 1, f"not a plain optional: {node}"
            node = {**branches[0], **{k: v for k, v in node.items() if k != "anyOf"}}
    shape: dict[str, Any] = {k: node[k] for k in COMPARED if k in node}
    if shape.get("default", 0) is None:  # None: "omitted", as in the CRD
        del shape["default"]
    if "properties" in node:
        shape["properties"] = {k: _pydantic_shape(v, defs) for k, v in node["properties"].items()}
        shape["required"] = sorted(node.get("required", []))
    if "items" in node:
        shape["items"] = _pydantic_shape(node["items"], defs)
    return shape


def _diff(a: Any, b: Any, path: str = "spec") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [
            d for k in sorted(set(a) | set(b)) for d in _diff(a.get(k), b.get(k), f"{path}.{k}")
        ]
    return [] if a == b else [f"{path}: CRD {a!r} != GpuPodSpec {b!r}"]


def test_gpupodspec_has_the_crd_names_types_and_bounds(spec: dict[str, Any]) -> None:
    schema = GpuPodSpec.model_json_schema()
    crd_shape = _crd_shape(spec)
    model_shape = _pydantic_shape(schema, schema.get("$defs", {}))
    assert crd_shape["properties"], "nothing compared"
    assert not _diff(crd_shape, model_shape), "\n".join(_diff(crd_shape, model_shape))


def _rule_list(node: dict[str, Any]) -> list[Any]:
    """The literal list of a field's one `... in [..]` CEL rule."""
    [r] = node["x-kubernetes-validations"]
    values = ast.literal_eval(r["rule"].split(" in ", 1)[1])
    assert isinstance(values, list)
    return values


def _parses(**fields: Any) -> bool:
    try:
        GpuPodSpec.parse({"image": "x", **fields})
    except ValidationError:
        return False
    return True


def test_gpupodspec_takes_the_gpu_counts_the_crd_takes(spec: dict[str, Any]) -> None:
    allowed = _rule_list(spec["properties"]["gpuCount"])
    assert allowed == [1, 2, 4, 8, 16, 32, 64]
    assert [n for n in range(-1, 2 * allowed[-1] + 2) if _parses(gpuCount=n)] == allowed


def test_gpupodspec_takes_the_protocols_the_crd_takes(spec: dict[str, Any]) -> None:
    node = spec["properties"]["expose"]["items"]["properties"]["protocol"]
    assert node["x-kubernetes-validations"][0]["rule"].startswith("self.upperAscii() in ")
    for protocol in _rule_list(node):
        for written in (protocol, protocol.lower(), protocol.title(), protocol.swapcase()):
            assert _parses(expose=[{"port": 1, "protocol": written}]), written
    for wrong in ("UDP", "udp", "", "HTTP2"):
        assert not _parses(expose=[{"port": 1, "protocol": wrong}]), wrong


def test_status_cost_holds_the_running_time_checkpoint(root: dict[str, Any]) -> None:
    """The accounting checkpoint of domain.cost: seconds so far, up to when, running then."""
    cost = root["properties"]["status"]["properties"]["cost"]["properties"]
    assert {k: (v["type"], v.get("format")) for k, v in cost.items()} == {
        "runningSeconds": ("integer", "int64"),
        "accrued": ("string", None),
        "countedUntil": ("string", "date-time"),
        "running": ("boolean", None),
        "guard": ("string", None),
    }
    assert cost["guard"]["enum"] == ["MaxRunDurationReached", "PriceExceeded"]
