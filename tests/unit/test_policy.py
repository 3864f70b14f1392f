"""domain/policy.py: label selectors, each limit and its message, and which policies apply.

The same messages are compared with the admission policy's on the real API server in
tests/e2e/test_tenant_policy.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from gpupod_operator.domain.policy import (
    LabelSelector,
    Policy,
    check,
    describe,
    violations,
)
from gpupod_operator.domain.spec import GpuPodSpec

NS = "team-a"
BASE: dict[str, Any] = {"image": "nginx:1.27", "gpuType": "NVIDIA_RTX_4090_24G", "gpuCount": 1}


def spec(**fields: Any) -> GpuPodSpec:
    return GpuPodSpec.parse({**BASE, **fields})


def policy(name: str = "p", selector: dict[str, Any] | None = None, **limits: Any) -> Policy:
    return Policy.parse(
        {"metadata": {"name": name}, "spec": {"namespaceSelector": selector or {}, **limits}}
    )


def messages(s: GpuPodSpec, p: Policy) -> list[str]:
    return [v.message for v in check(s, NS, p)]


@pytest.mark.parametrize(
    ("selector", "labels", "selected"),
    [
        ({}, {}, True),
        ({}, {"any": "thing"}, True),
        ({"matchLabels": {"tier": "gold"}}, {"tier": "gold", "x": "y"}, True),
        ({"matchLabels": {"tier": "gold"}}, {"tier": "silver"}, False),
        ({"matchLabels": {"tier": "gold"}}, {}, False),
        (
            {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]},
            {"tier": "b"},
            True,
        ),
        ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}]}, {}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["a"]}]}, {}, True),
        (
            {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["a"]}]},
            {"tier": "a"},
            False,
        ),
        ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, {"tier": ""}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, {}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, {}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, {"tier": "a"}, False),
        (
            {
                "matchLabels": {"team": "a"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["gold"]}],
            },
            {"team": "a", "tier": "silver"},
            False,
        ),
    ],
)
def test_label_selector_has_kubernetes_semantics(
    selector: dict[str, Any], labels: dict[str, str], selected: bool
) -> None:
    assert LabelSelector.model_validate(selector).matches(labels) is selected


def test_gpu_type_outside_the_list_names_the_field_the_limit_and_what_to_do() -> None:
    p = policy("gpus", allowedGpuTypes=["NVIDIA_RTX_5090_32G", "NVIDIA_H100_80G"])
    assert messages(spec(), p) == [
        "spec.gpuType NVIDIA_RTX_4090_24G is not allowed in namespace team-a: GpuTenantPolicy "
        "gpus allows NVIDIA_RTX_5090_32G, NVIDIA_H100_80G; use one of them"
    ]
    assert messages(spec(gpuType="NVIDIA_H100_80G"), p) == []
    # An adopted pod may leave gpuType out: nothing to compare.
    adopted = GpuPodSpec.parse({"adopt": {"podId": "12"}})
    assert messages(adopted, p) == []


def test_regions_are_required_when_limited_and_must_be_a_subset() -> None:
    p = policy(allowedRegions=["us-east-1", "us-east-2"])
    tail = "GpuTenantPolicy p allows only us-east-1, us-east-2; set spec.regions to some of them"
    assert messages(spec(), p) == [f"spec.regions is required in namespace team-a: {tail}"]
    assert messages(spec(regions=["us-east-1", "ap-southeast-1", "us-west-1"]), p) == [
        f"spec.regions ap-southeast-1, us-west-1 is not allowed in namespace team-a: {tail}"
    ]
    assert messages(spec(regions=["us-east-2", "us-east-1"]), p) == []


def test_gpu_count_over_the_limit() -> None:
    p = policy(maxGpuCountPerPod=2)
    assert messages(spec(gpuCount=4), p) == [
        "spec.gpuCount 4 exceeds the limit in namespace team-a: GpuTenantPolicy p allows at "
        "most 2 GPUs per pod; lower spec.gpuCount"
    ]
    assert messages(spec(gpuCount=2), p) == []


@pytest.mark.parametrize(
    ("price", "allowed"),
    [
        ("2.5", True),
        ("2.50", True),
        ("2.500000", True),
        ("0.99", True),
        ("2.500001", False),
        ("2.51", False),
        ("10", False),  # a string comparison would say "10" < "2.50"
        ("100", False),
    ],
)
def test_price_caps_compare_as_decimals(price: str, allowed: bool) -> None:
    p = policy(maxPricePerHour="2.50")
    found = messages(spec(maxPricePerHour=price), p)
    assert (found == []) is allowed
    if not allowed:
        assert found == [
            f"spec.maxPricePerHour {price} exceeds the limit in namespace team-a: GpuTenantPolicy "
            "p caps it at 2.50 USD/h; set spec.maxPricePerHour to at most 2.50"
        ]


def test_a_price_cap_requires_a_price_cap_on_the_gpupod() -> None:
    assert messages(spec(), policy(maxPricePerHour="3")) == [
        "spec.maxPricePerHour is required in namespace team-a: GpuTenantPolicy p caps it at 3 "
        "USD/h; set spec.maxPricePerHour to at most 3"
    ]


@pytest.mark.parametrize(
    ("duration", "allowed"),
    [
        ("8h", True),
        ("480m", True),
        ("7h59m59s", True),
        ("8h1s", False),
        ("9h", False),
        ("481m", False),
    ],
)
def test_run_duration_compares_as_durations(duration: str, allowed: bool) -> None:
    found = messages(spec(lifetime={"maxRunDuration": duration}), policy(maxRunDuration="8h"))
    assert (found == []) is allowed
    if not allowed:
        assert found == [
            f"spec.lifetime.maxRunDuration {duration} exceeds the limit in namespace team-a: "
            "GpuTenantPolicy p allows at most 8h; set spec.lifetime.maxRunDuration to 8h or less"
        ]


def test_required_lifetime_says_the_cap_when_there_is_one() -> None:
    head = "spec.lifetime is required in namespace team-a: GpuTenantPolicy p requires every "
    assert messages(spec(), policy(requireLifetime=True)) == [
        head + "GpuPod to have an end; set spec.lifetime.maxRunDuration"
    ]
    assert messages(spec(), policy(requireLifetime=True, maxRunDuration="4h")) == [
        head + "GpuPod to have an end; set spec.lifetime.maxRunDuration (at most 4h)"
    ]
    # Without requireLifetime, a GpuPod with no lifetime is not held to maxRunDuration.
    assert messages(spec(), policy(maxRunDuration="4h")) == []


def test_only_selected_policies_apply_in_name_order_and_all_violations_are_said() -> None:
    gold = {"matchLabels": {"tier": "gold"}}
    policies = [
        policy("zeta", maxGpuCountPerPod=1),
        policy("alpha", allowedGpuTypes=["NVIDIA_H100_80G"]),
        policy("gold-only", gold, maxGpuCountPerPod=1),
    ]
    found = violations(spec(gpuCount=2), NS, {"tier": "silver"}, policies)
    assert [(v.policy, v.field) for v in found] == [
        ("alpha", "spec.gpuType"),
        ("zeta", "spec.gpuCount"),
    ]
    assert describe(found) == f"{found[0].message}; and {found[1].message}"
    gold_found = violations(spec(gpuCount=2), NS, {"tier": "gold"}, policies)
    assert [v.policy for v in gold_found] == ["alpha", "gold-only", "zeta"]
    assert violations(spec(gpuCount=2), NS, {}, []) == []


def test_every_limit_left_out_restricts_nothing() -> None:
    assert messages(spec(gpuCount=8, regions=["ap-southeast-1"]), policy()) == []
