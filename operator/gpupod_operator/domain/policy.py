"""GpuTenantPolicy: which limits apply to a namespace, and what a GpuPod spec violates.

The chart's ValidatingAdmissionPolicy (templates/admission-policy.yaml) enforces the same
limits when a GpuPod is applied; this is the operator's own check before a create, for
GpuPods admitted before a policy existed and clusters without the admission policy. Both say
the same thing in the same words (tests/e2e/test_tenant_policy.py compares them): the field,
the namespace's limit, and what to do.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gpupod_operator.domain.spec import GpuPodSpec, parse_duration

MAX_LIST = 64  # items in a policy's lists (bounds the admission policy's CEL cost)
SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Requirement(_Model):
    key: str
    operator: str
    values: list[str] = Field(default_factory=list)

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        match self.operator:
            case "In":
                return present and labels[self.key] in self.values
            case "NotIn":
                return not (present and labels[self.key] in self.values)
            case "Exists":
                return present
            case "DoesNotExist":
                return not present
        return False  # an operator the CRD does not allow: select nothing


class LabelSelector(_Model):
    matchLabels: dict[str, str] = Field(default_factory=dict)
    matchExpressions: list[Requirement] = Field(default_factory=list)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Kubernetes' semantics: every label and every requirement; {} selects everything."""
        return all(labels.get(k) == v for k, v in self.matchLabels.items()) and all(
            r.matches(labels) for r in self.matchExpressions
        )


class PolicySpec(_Model):
    namespaceSelector: LabelSelector = Field(default_factory=LabelSelector)
    allowedGpuTypes: list[str] | None = None
    allowedRegions: list[str] | None = None
    maxGpuCountPerPod: int | None = None
    maxPricePerHour: str | None = None
    maxRunDuration: str | None = None
    requireLifetime: bool = False


@dataclass(frozen=True)
class Policy:
    name: str
    spec: PolicySpec

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> Policy:
        return cls(body["metadata"]["name"], PolicySpec.model_validate(body.get("spec") or {}))


@dataclass(frozen=True)
class Violation:
    policy: str
    field: str
    message: str


def _join(values: Iterable[str]) -> str:
    return ", ".join(values)


def check(spec: GpuPodSpec, namespace: str, policy: Policy) -> list[Violation]:
    """What `spec` violates of one policy (which applies to `namespace`), in the admission
    policy's order and words."""
    p, out = policy.spec, []
    where = f" in namespace {namespace}: GpuTenantPolicy {policy.name}"

    def deny(field: str, message: str) -> None:
        out.append(Violation(policy.name, field, message))

    if p.allowedGpuTypes is not None and spec.gpuType and spec.gpuType not in p.allowedGpuTypes:
        deny(
            "spec.gpuType",
            f"spec.gpuType {spec.gpuType} is not allowed{where} allows "
            f"{_join(p.allowedGpuTypes)}; use one of them",
        )
    if p.allowedRegions is not None:
        allowed = f"{where} allows only {_join(p.allowedRegions)}; set spec.regions to some of them"
        outside = [r for r in spec.regions if r not in p.allowedRegions]
        if not spec.regions:
            deny("spec.regions", f"spec.regions is required{allowed}")
        elif outside:
            deny("spec.regions", f"spec.regions {_join(outside)} is not allowed{allowed}")
    if p.maxGpuCountPerPod is not None and spec.gpuCount > p.maxGpuCountPerPod:
        deny(
            "spec.gpuCount",
            f"spec.gpuCount {spec.gpuCount} exceeds the limit{where} allows at most "
            f"{p.maxGpuCountPerPod} GPUs per pod; lower spec.gpuCount",
        )
    if p.maxPricePerHour is not None:
        most = p.maxPricePerHour
        cap = f"{where} caps it at {most} USD/h; set spec.maxPricePerHour to at most {most}"
        if spec.maxPricePerHour is None:
            deny("spec.maxPricePerHour", f"spec.maxPricePerHour is required{cap}")
        elif Decimal(spec.maxPricePerHour) > Decimal(p.maxPricePerHour):
            deny(
                "spec.maxPricePerHour",
                f"spec.maxPricePerHour {spec.maxPricePerHour} exceeds the limit{cap}",
            )
    if spec.lifetime is None:
        if p.requireLifetime:
            most = f" (at most {p.maxRunDuration})" if p.maxRunDuration else ""
            deny(
                "spec.lifetime",
                f"spec.lifetime is required{where} requires every GpuPod to have an end; "
                f"set spec.lifetime.maxRunDuration{most}",
            )
    elif p.maxRunDuration is not None and spec.lifetime.max_run > parse_duration(p.maxRunDuration):
        deny(
            "spec.lifetime.maxRunDuration",
            f"spec.lifetime.maxRunDuration {spec.lifetime.maxRunDuration} exceeds the limit"
            f"{where} allows at most {p.maxRunDuration}; set spec.lifetime.maxRunDuration to "
            f"{p.maxRunDuration} or less",
        )
    return out


def violations(
    spec: GpuPodSpec, namespace: str, labels: Mapping[str, str], policies: Iterable[Policy]
) -> list[Violation]:
    """Everything `spec` violates of the policies whose selector matches the namespace's
    labels, policy by policy (by name: the order is stable, so the message is too)."""
    out: list[Violation] = []
    for policy in sorted(policies, key=lambda p: p.name):
        if policy.spec.namespaceSelector.matches(labels):
            out.extend(check(spec, namespace, policy))
    return out


def describe(found: list[Violation]) -> str:
    """The Synced message: every violation, the first one first."""
    return "; and ".join(v.message for v in found)
