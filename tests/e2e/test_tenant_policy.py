"""GpuTenantPolicy on the real API server: the chart's ValidatingAdmissionPolicy, and the
operator's own check before a create.

- The admission policy and its binding are rendered from the chart (``helm template``, as
  test_helm.py does) and applied after the CRDs, so the params kind resolves; the API server
  type-checks every expression (no warnings allowed).
- Denied inputs: each one is refused on the real API server with the message that
  domain/policy.py gives for the same spec (the operator's check says the same words), and the
  message names the field, the namespace's limit and what to do. Allowed inputs pass,
  decimals compare as numbers (2.5 == 2.50, 10 > 2.50) and durations as durations.
- Updates: one that does not change the spec (a label, the finalizer) is never checked; a
  spec update is checked only for the limits whose fields it changes (a pause of a GpuPod that
  predates the policy passes; extending its lifetime past the cap does not).
- The namespace selector in CEL (matchLabels, In, NotIn, Exists, DoesNotExist) selects
  exactly the namespaces domain.policy.LabelSelector selects.
- The operator: a GpuPod applied before its policy existed gets Synced=False,
  PolicyViolation, phase Pending, an Event, and no create reaches the simulator.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpupod_operator.devenv.controlplane import ApiError, ControlPlane
from gpupod_operator.devenv.simulator_process import SimulatorProcess
from gpupod_operator.domain.policy import LabelSelector, Policy, check
from gpupod_operator.domain.spec import GpuPodSpec

from .conftest import StartOperator
from .gpupods import GpuPods, manifest, wait_for
from .test_helm import helm, kubectl_apply, template

pytestmark = pytest.mark.e2e
__all__ = ["helm"]  # the fixture, imported for this module's tests

API = "/apis/gpupod.dev/v1alpha1"
POLICIES = f"{API}/gputenantpolicies"
VAP_KINDS = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
ADMISSION = "/apis/admissionregistration.k8s.io/v1"
VAP_PLURALS = {
    "ValidatingAdmissionPolicy": "validatingadmissionpolicies",
    "ValidatingAdmissionPolicyBinding": "validatingadmissionpolicybindings",
}

Doc = dict[str, Any]

LIMITS: Doc = {
    "allowedGpuTypes": ["NVIDIA_RTX_4090_24G", "NVIDIA_RTX_5090_32G"],
    "allowedRegions": ["us-east-1", "us-east-2"],
    "maxGpuCountPerPod": 2,
    "maxPricePerHour": "2.50",
    "maxRunDuration": "8h",
    "requireLifetime": True,
}
# A spec inside every limit above; each case changes one thing.
GOOD: Doc = {
    "gpuType": "NVIDIA_RTX_4090_24G",
    "gpuCount": 1,
    "regions": ["us-east-1"],
    "maxPricePerHour": "2.5",
    "lifetime": {"maxRunDuration": "8h"},
}
DROP = object()


def spec_with(**changes: Any) -> Doc:
    spec = copy.deepcopy(GOOD)
    for key, value in changes.items():
        if value is DROP:
            spec.pop(key, None)
        else:
            spec[key] = value
    return spec


DENIED: list[tuple[str, Doc, str]] = [
    ("gpu-type", spec_with(gpuType="NVIDIA_H100_80G"), "spec.gpuType NVIDIA_H100_80G"),
    ("no-regions", spec_with(regions=DROP), "spec.regions is required"),
    ("other-region", spec_with(regions=["us-east-1", "ap-southeast-1"]), "ap-southeast-1"),
    ("gpu-count", spec_with(gpuCount=4), "spec.gpuCount 4 exceeds"),
    ("no-price", spec_with(maxPricePerHour=DROP), "spec.maxPricePerHour is required"),
    ("price-2.51", spec_with(maxPricePerHour="2.51"), "spec.maxPricePerHour 2.51 exceeds"),
    ("price-10", spec_with(maxPricePerHour="10"), "spec.maxPricePerHour 10 exceeds"),
    ("price-2.500001", spec_with(maxPricePerHour="2.500001"), "2.500001 exceeds"),
    ("no-lifetime", spec_with(lifetime=DROP), "spec.lifetime is required"),
    ("lifetime-9h", spec_with(lifetime={"maxRunDuration": "9h"}), "9h exceeds"),
    ("lifetime-8h1s", spec_with(lifetime={"maxRunDuration": "8h1s"}), "8h1s exceeds"),
    ("lifetime-481m", spec_with(lifetime={"maxRunDuration": "481m"}), "481m exceeds"),
]
ALLOWED: list[tuple[str, Doc]] = [
    ("good", GOOD),
    ("price-2.50", spec_with(maxPricePerHour="2.50")),
    ("price-2.500000", spec_with(maxPricePerHour="2.500000")),
    ("price-0.99", spec_with(maxPricePerHour="0.99")),
    ("two-gpus-two-regions", spec_with(gpuCount=2, regions=["us-east-2", "us-east-1"])),
    ("lifetime-480m", spec_with(lifetime={"maxRunDuration": "480m", "action": "Delete"})),
    ("lifetime-7h59m59s", spec_with(lifetime={"maxRunDuration": "7h59m59s"})),
    ("rtx-5090", spec_with(gpuType="NVIDIA_RTX_5090_32G")),
]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def policy_doc(name: str, selector: Doc, **limits: Any) -> Doc:
    return {
        "apiVersion": "gpupod.dev/v1alpha1",
        "kind": "GpuTenantPolicy",
        "metadata": {"name": name},
        "spec": {"namespaceSelector": selector, **limits},
    }


def only(namespace: str) -> Doc:
    return {"matchLabels": {"kubernetes.io/metadata.name": namespace}}


class Policies:
    """GpuTenantPolicies this test creates; all deleted at teardown (they are cluster-wide)."""

    def __init__(self, cp: ControlPlane) -> None:
        self.cp, self.names = cp, []

    def create(self, name: str, selector: Doc, **limits: Any) -> Doc:
        body = self.cp.request("POST", POLICIES, policy_doc(name, selector, **limits))
        self.names.append(name)
        return body

    def delete_all(self) -> None:
        for name in self.names:
            try:
                self.cp.request("DELETE", f"{POLICIES}/{name}")
            except ApiError as e:
                if e.status != 404:
                    raise


@pytest.fixture
def policies(control_plane: ControlPlane, crds: list[str]) -> Iterator[Policies]:
    made = Policies(control_plane)
    try:
        yield made
    finally:
        made.delete_all()


def denial(cp: ControlPlane, namespace: str, name: str, spec: Doc) -> str | None:
    """The API server's refusal of this GpuPod (None: created)."""
    try:
        cp.request("POST", f"{API}/namespaces/{namespace}/gpupods", manifest(name, **spec))
    except ApiError as e:
        assert e.status in (403, 422), e
        return e.message
    return None


def expected(spec: Doc, namespace: str, policy: Doc) -> str:
    (violation,) = check(
        GpuPodSpec.parse(manifest("x", **spec)["spec"]), namespace, Policy.parse(policy)
    )
    return violation.message


@pytest.fixture(scope="module")
def admission_policy(
    helm: Path,
    tmp_path_factory: pytest.TempPathFactory,
    control_plane: ControlPlane,
    crds: list[str],
) -> Iterator[str]:
    """The chart's ValidatingAdmissionPolicy + binding, applied once the CRDs exist; its name.
    Removed at the end (other test modules share the control plane)."""
    docs = [
        d
        for d in template(helm, tmp_path_factory.mktemp("vap"), release="tenancy")
        if d["kind"] in VAP_KINDS
    ]
    assert sorted(d["kind"] for d in docs) == sorted(VAP_KINDS), "ONE policy and ONE binding"
    kubectl_apply(control_plane, docs, dry_run=False)
    (vap,) = [d for d in docs if d["kind"] == VAP_KINDS[0]]
    name = vap["metadata"]["name"]

    def type_checked() -> Doc | None:
        got = control_plane.request("GET", f"{ADMISSION}/validatingadmissionpolicies/{name}")
        status = got.get("status") or {}
        return status if status.get("observedGeneration") == got["metadata"]["generation"] else None

    status = wait_for(type_checked, 30, "the admission policy to be type-checked")
    assert not (status.get("typeChecking") or {}).get("expressionWarnings"), status
    # The binding is effective once the API server's informers have it: probe until a
    # GpuPod outside a policy is refused.
    probe_ns = control_plane.create_namespace(unique("vap-probe"))
    probe = unique("probe-policy")
    control_plane.request("POST", POLICIES, policy_doc(probe, only(probe_ns), maxGpuCountPerPod=1))
    try:
        wait_for(
            lambda: denial(control_plane, probe_ns, unique("p"), {"gpuCount": 2}),
            60,
            "the admission policy to deny",
            interval=0.5,
        )
    finally:
        control_plane.request("DELETE", f"{POLICIES}/{probe}")
    try:
        yield name
    finally:
        for doc in docs:
            plural = VAP_PLURALS[doc["kind"]]
            control_plane.request("DELETE", f"{ADMISSION}/{plural}/{doc['metadata']['name']}")


def test_denied_inputs_name_the_field_the_limit_and_what_to_do_and_allowed_ones_pass(
    control_plane: ControlPlane, admission_policy: str, policies: Policies, namespace: str
) -> None:
    policy = policies.create(unique("limits"), only(namespace), **LIMITS)
    name = policy["metadata"]["name"]
    messages: dict[str, str] = {}
    for case, spec, fragment in DENIED:
        message = denial(control_plane, namespace, case, spec)
        assert message is not None, f"{case}: created, but GpuTenantPolicy {name} forbids it"
        want = expected(spec, namespace, policy)
        assert message.endswith(want), f"{case}: {message!r} != {want!r}"
        assert fragment in want and f"namespace {namespace}" in want and name in want
        assert "; " in want, "says what to do"
        messages[case] = want
    assert len(messages) >= 10
    # Literal wording, so that both sides cannot drift together into nonsense.
    assert messages["price-10"] == (
        f"spec.maxPricePerHour 10 exceeds the limit in namespace {namespace}: GpuTenantPolicy "
        f"{name} caps it at 2.50 USD/h; set spec.maxPricePerHour to at most 2.50"
    )
    assert messages["gpu-count"] == (
        f"spec.gpuCount 4 exceeds the limit in namespace {namespace}: GpuTenantPolicy {name} "
        "allows at most 2 GPUs per pod; lower spec.gpuCount"
    )
    assert messages["no-lifetime"] == (
        f"spec.lifetime is required in namespace {namespace}: GpuTenantPolicy {name} requires "
        "every GpuPod to have an end; set spec.lifetime.maxRunDuration (at most 8h)"
    )
    for case, spec in ALLOWED:
        assert denial(control_plane, namespace, case, spec) is None, case
        assert not check(
            GpuPodSpec.parse(manifest(case, **spec)["spec"]), namespace, Policy.parse(policy)
        )
    print(f"POLICY denied={len(messages)} allowed={len(ALLOWED)}")


def test_updates_are_checked_only_where_the_spec_changes_what_a_limit_limits(
    control_plane: ControlPlane, admission_policy: str, policies: Policies, namespace: str
) -> None:
    pods = GpuPods(control_plane, namespace)
    # Admitted before the policy: H100, no lifetime, no price cap, no regions.
    pods.create("before", gpuType="NVIDIA_H100_80G")
    pods.create("good", **GOOD)
    policies.create(unique("limits"), only(namespace), **LIMITS)
    path = f"{pods.path}/before"

    def patch(name: str, body: Doc) -> str | None:
        try:
            control_plane.request("PATCH", f"{pods.path}/{name}", body)
        except ApiError as e:
            assert e.status in (403, 422), e
            return e.message
        return None

    def denied_soon(name: str, body: Doc) -> str:
        # The new policy reaches the admission plugin's informer within moments.
        return wait_for(lambda: patch(name, body), 30, "the new policy to apply", interval=0.5)

    # The spec untouched: labels, finalizers (a controller removing its finalizer) pass.
    assert patch("before", {"metadata": {"labels": {"team": "a"}}}) is None
    assert patch("before", {"metadata": {"finalizers": ["example.com/hold"]}}) is None
    assert patch("before", {"metadata": {"finalizers": None}}) is None
    # A spec change that touches no limited field passes on a GpuPod that predates the policy.
    assert patch("before", {"spec": {"paused": True}}) is None
    assert patch("before", {"spec": {"deletionPolicy": "Orphan"}}) is None
    # Giving it a lifetime past the cap is refused; within the cap is fine.
    message = denied_soon("before", {"spec": {"lifetime": {"maxRunDuration": "100h"}}})
    assert "spec.lifetime.maxRunDuration 100h exceeds the limit" in message
    assert patch("before", {"spec": {"lifetime": {"maxRunDuration": "2h"}}}) is None
    # Extending a compliant GpuPod past the cap, or raising its price cap: refused.
    message = patch("good", {"spec": {"lifetime": {"maxRunDuration": "8h30m"}}})
    assert message is not None and "8h30m exceeds the limit" in message
    message = patch("good", {"spec": {"maxPricePerHour": "3"}})
    assert message is not None and "spec.maxPricePerHour 3 exceeds the limit" in message
    # Removing the lifetime when the policy requires one: refused.
    message = patch("good", {"spec": {"lifetime": None}})
    assert message is not None and "spec.lifetime is required" in message
    assert control_plane.request("GET", path)["spec"]["lifetime"] == {
        "maxRunDuration": "2h",
        "action": "Pause",
    }


SELECTORS: dict[str, Doc] = {
    "labels": {"matchLabels": {"tier": "gold"}},
    "in": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["gold", "silver"]}]},
    "notin": {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["gold"]}]},
    "exists": {"matchExpressions": [{"key": "tier", "operator": "Exists"}]},
    "absent": {"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]},
    "all": {},
}
NAMESPACE_LABELS: list[dict[str, str]] = [
    {"tier": "gold"},
    {"tier": "silver"},
    {"tier": "bronze"},
    {},
]


def test_namespace_selectors_select_exactly_what_label_selectors_select(
    control_plane: ControlPlane, admission_policy: str, policies: Policies
) -> None:
    run = uuid.uuid4().hex[:8]
    mark = {"policy-test.gpupod.dev/run": run}  # only this test's namespaces can match
    namespaces = [
        control_plane.create_namespace(unique("sel"), {**mark, **labels})
        for labels in NAMESPACE_LABELS
    ]
    outcomes = []
    for key, selector in SELECTORS.items():
        scoped = {
            "matchLabels": {**mark, **selector.get("matchLabels", {})},
            "matchExpressions": selector.get("matchExpressions", []),
        }
        name = f"sel-{key}-{run}"
        policies.create(name, scoped, maxGpuCountPerPod=1)
        pairs = list(zip(namespaces, NAMESPACE_LABELS, strict=True))
        chosen = [LabelSelector.model_validate(scoped).matches({**mark, **lb}) for _, lb in pairs]
        # The selected ones first: once they are refused, the policy is in force, and the
        # others must pass.
        for (ns, labels), selected in sorted(
            zip(pairs, chosen, strict=True), key=lambda p: not p[1]
        ):
            if selected:
                message = wait_for(
                    lambda ns=ns: denial(control_plane, ns, unique("p"), {"gpuCount": 2}),
                    30,
                    f"policy {name} to refuse in a namespace labelled {labels}",
                    interval=0.5,
                )
                assert name in message, message
            else:
                assert denial(control_plane, ns, unique("p"), {"gpuCount": 2}) is None, (
                    f"policy {name} applied in a namespace labelled {labels}"
                )
            outcomes.append((key, labels.get("tier"), selected))
        policies.delete_all()
        policies.names.clear()
        # Deleted: the namespaces it selected accept 2-GPU pods again.
        for ns in namespaces:
            wait_for(
                lambda ns=ns: denial(control_plane, ns, unique("p"), {"gpuCount": 2}) is None,
                30,
                f"policy {name} to be gone",
                interval=0.5,
            )
    assert sum(selected for *_, selected in outcomes) == 1 + 2 + 3 + 3 + 1 + 4


def test_the_operator_refuses_a_create_the_policy_forbids_even_without_admission(
    control_plane: ControlPlane,
    policies: Policies,
    namespace: str,
    simulator: SimulatorProcess,
    start_operator: StartOperator,
) -> None:
    """No admission policy in this test (the fixture is not used), and the GpuPod exists
    before the policy: only the operator's own check stands between it and the API."""
    pods = GpuPods(control_plane, namespace)
    pods.create("big", gpuType="NVIDIA_RTX_4090_24G", gpuCount=4)
    pods.create("small", gpuType="NVIDIA_RTX_4090_24G", gpuCount=1)
    policy = policies.create(unique("cap"), only(namespace), maxGpuCountPerPod=2)
    start_operator()
    pods.wait_phase("small", "Running")
    synced = wait_for(
        lambda: (c := pods.condition("big", "Synced")).get("reason") == "PolicyViolation" and c,
        30,
        "Synced=False PolicyViolation",
    )
    assert synced["status"] == "False"
    assert synced["message"] == (
        f"spec.gpuCount 4 exceeds the limit in namespace {namespace}: GpuTenantPolicy "
        f"{policy['metadata']['name']} allows at most 2 GPUs per pod; lower spec.gpuCount"
    )
    assert pods.status("big")["phase"] == "Pending"
    assert "PolicyViolation" in wait_for(lambda: pods.event_reasons("big"), 10, "an Event")
    creates = simulator.stats()["requests"].get("create", {})
    assert sum(creates.values()) == 1, creates  # "small" only
    assert [p["name"] for p in simulator.pods() if "big" in p["name"]] == []
    # Lifting the cap lets it through: the next attempt creates it.
    control_plane.request(
        "PATCH", f"{POLICIES}/{policy['metadata']['name']}", {"spec": {"maxGpuCountPerPod": 8}}
    )
    pods.wait_phase("big", "Running", timeout=90)
