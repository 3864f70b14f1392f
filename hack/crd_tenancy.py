"""The tenancy guardrail kinds: GpuTenantPolicy (cluster-scoped) and GpuQuota (namespaced).

Contract: /work/shared/DESIGN.md section 2.4. GpuTenantPolicy is the params kind of the chart's
ValidatingAdmissionPolicy (deploy/helm/.../templates/admission-policy.yaml) and is read by the
operator (domain/policy.py); GpuQuota is enforced by the operator alone (domain/quota.py).
The patterns and bounds are the GpuPod's own (domain/spec.py), so a policy can only state
limits a GpuPod can be compared with.
"""

from __future__ import annotations

from typing import Any

from gen_crd import (
    GPU_COUNTS,
    GROUP,
    STRINGS,
    VERSION,
    array,
    boolean,
    bounded_string,
    crd_document,
    integer,
    obj,
    rule,
    string,
)

from gpupod_operator import api_limits as limits
from gpupod_operator.domain.policy import MAX_LIST, SELECTOR_OPERATORS
from gpupod_operator.domain.spec import (
    DECIMAL,
    DECIMAL_PATTERN,
    DURATION,
    DURATION_PATTERN,
    REGION_PATTERN,
)

Schema = dict[str, Any]

LABEL = 317  # a label key: 253-character prefix, "/", 63-character name
LABEL_VALUE = 63


def _string_map(description: str, max_properties: int) -> Schema:
    return {
        "description": description,
        "type": "object",
        "maxProperties": max_properties,
        "additionalProperties": {"type": "string", "maxLength": LABEL_VALUE},
    }


def label_selector() -> Schema:
    expression = obj(
        "One requirement on a namespace label.",
        {
            "key": string("The label key.", min_length=1, max_length=LABEL),
            "operator": string("In, NotIn, Exists or DoesNotExist.", enum=list(SELECTOR_OPERATORS)),
            "values": array(
                "The values for In and NotIn (non-empty); empty for Exists and DoesNotExist.",
                string("A label value.", max_length=LABEL_VALUE),
                max_items=MAX_LIST,
            ),
        },
        required=["key", "operator"],
        rules=[
            rule(
                "self.operator in ['In', 'NotIn']\n"
                "? has(self.values) && size(self.values) > 0\n"
                ": !has(self.values) || size(self.values) == 0",
                "values must be non-empty for In and NotIn, and empty for Exists and DoesNotExist",
                field_path=".values",
            )
        ],
    )
    return obj(
        "Which namespaces this policy applies to, by their labels (a LabelSelector: "
        "matchLabels and matchExpressions with In, NotIn, Exists, DoesNotExist). {} selects "
        "every namespace; to name one namespace, match its kubernetes.io/metadata.name label.",
        {
            "matchLabels": _string_map("Labels a namespace must carry, key -> value.", MAX_LIST),
            "matchExpressions": array(
                "Requirements on namespace labels; all must hold.",
                expression,
                max_items=MAX_LIST,
            ),
        },
    )


def policy_spec() -> Schema:
    return obj(
        "Limits for the GpuPods of the selected namespaces. Every limit is optional; one that "
        "is left out does not restrict. Enforced when a GpuPod is created or its spec changes "
        "(by the chart's ValidatingAdmissionPolicy), and again by the operator before it "
        "creates a remote pod.",
        {
            "namespaceSelector": label_selector(),
            "allowedGpuTypes": array(
                "GPU types (spec.gpuType) a GpuPod may ask for.",
                bounded_string("A GPU type such as NVIDIA_RTX_4090_24G.", STRINGS["gpuType"]),
                max_items=MAX_LIST,
                list_type="set",
            ),
            "allowedRegions": array(
                "Regions a GpuPod may run in. When set, spec.regions is required (without it "
                "the cloud picks any region) and must be a subset of these.",
                bounded_string(
                    "A region such as us-east-1.", limits.REGION, pattern=REGION_PATTERN
                ),
                max_items=MAX_LIST,
                list_type="set",
            ),
            "maxGpuCountPerPod": integer(
                "The most GPUs one GpuPod may ask for (spec.gpuCount).",
                minimum=1,
                maximum=max(GPU_COUNTS),
            ),
            "maxPricePerHour": bounded_string(
                "The highest spec.maxPricePerHour a GpuPod may set, in USD per hour, as a "
                "decimal string such as 2.50. When set, spec.maxPricePerHour is required.",
                DECIMAL,
                pattern=DECIMAL_PATTERN,
            ),
            "maxRunDuration": bounded_string(
                "The longest spec.lifetime.maxRunDuration a GpuPod may set (a duration such as "
                "8h or 1h30m); also checked when a running GpuPod's lifetime is extended.",
                DURATION,
                pattern=DURATION_PATTERN,
            ),
            "requireLifetime": boolean(
                "Require spec.lifetime on every GpuPod, so that none runs (and bills) without "
                "an end.",
                default=False,
            ),
        },
        required=["namespaceSelector"],
    )


def _root(description: str, kind: str, properties: Schema) -> Schema:
    return obj(
        description,
        {
            "apiVersion": string(f"Versioned schema of this representation: {GROUP}/{VERSION}."),
            "kind": string(f"REST resource this object represents: {kind}."),
            "metadata": {"type": "object"},
            **properties,
        },
        required=["spec"],
    )


def _amounts(description: str, *, bounded: bool) -> Schema:
    """gpus, pods, pricePerHour: the quota's dimensions (bounds only where users write)."""
    gpus = integer("GPUs (the sum of spec.gpuCount).", minimum=0 if bounded else None)
    pods = integer("GpuPods with a remote pod.", minimum=0 if bounded else None)
    price = (
        bounded_string("USD per hour, a decimal string.", DECIMAL, pattern=DECIMAL_PATTERN)
        if bounded
        else string("USD per hour, a decimal string.")
    )
    return obj(description, {"gpus": gpus, "pods": pods, "pricePerHour": price})


def quota_status() -> Schema:
    reservation = obj(
        "Capacity held by one GpuPod from its admission until its remote pod is confirmed "
        "terminated or gone.",
        {
            "uid": string("The GpuPod's UID."),
            "name": string("The GpuPod's name."),
            "gpus": integer("GPUs held."),
            "pods": integer("Pods held (1)."),
            "pricePerHour": string("USD per hour held: an estimate until the pod exists."),
            "estimated": boolean("pricePerHour is still the estimate made before the create."),
            "since": string("When the GpuPod was admitted.", fmt="date-time"),
        },
        required=["uid"],
    )
    return obj(
        "Usage, written by the operator only: used is always the sum of the reservations.",
        {
            "used": _amounts("What the reservations add up to.", bounded=False),
            "reservations": array(
                "One entry per admitted GpuPod, keyed by its UID; written with a "
                "resourceVersion precondition, so no two admissions can use the same capacity.",
                reservation,
                list_type="map",
                map_keys=["uid"],
            ),
            "prices": _string_map(
                "The last price per GPU-hour (USD) the provider quoted for each GPU type: the "
                "estimate of a GpuPod's pricePerHour before it is created.",
                256,
            ),
            "spend": string(
                "The sum of status.cost.accrued over the namespace's GpuPods (USD), where known."
            ),
            "waiting": integer("GpuPods waiting for capacity (Synced=False, QuotaExceeded)."),
        },
    )


GPU_TENANT_POLICY = crd_document(
    "GpuTenantPolicy",
    "gputenantpolicies",
    "Cluster",
    _root(
        "Per-namespace limits on GpuPods, set by the platform team (cluster-scoped: a tenant "
        "can neither write nor delete it). Every policy whose namespaceSelector matches a "
        "GpuPod's namespace applies.",
        "GpuTenantPolicy",
        {"spec": policy_spec()},
    ),
)

GPU_QUOTA = crd_document(
    "GpuQuota",
    "gpuquotas",
    "Namespaced",
    _root(
        "Aggregate limits for the GpuPods of one namespace. The operator admits a GpuPod "
        "before it creates the remote pod, as one compare-and-swap on this object's status; "
        "a GpuPod that does not fit stays Pending (Synced=False, QuotaExceeded) and is "
        "admitted, oldest first, when capacity frees.",
        "GpuQuota",
        {
            "spec": obj(
                "The limits; each is optional (left out: unlimited).",
                {
                    "hard": _amounts(
                        "Upper bounds on what this namespace's GpuPods hold.", bounded=True
                    )
                },
                required=["hard"],
            ),
            "status": quota_status(),
        },
    ),
    subresources={"status": {}},
    additionalPrinterColumns=[
        {"name": "GPUs", "type": "integer", "jsonPath": ".status.used.gpus"},
        {"name": "Max GPUs", "type": "integer", "jsonPath": ".spec.hard.gpus"},
        {"name": "Pods", "type": "integer", "jsonPath": ".status.used.pods"},
        {"name": "Max Pods", "type": "integer", "jsonPath": ".spec.hard.pods"},
        {"name": "Price/h", "type": "string", "jsonPath": ".status.used.pricePerHour"},
        {"name": "Max Price/h", "type": "string", "jsonPath": ".spec.hard.pricePerHour"},
        {"name": "Waiting", "type": "integer", "jsonPath": ".status.waiting"},
        {"name": "Spend", "type": "string", "jsonPath": ".status.spend", "priority": 1},
    ],
)

CRDS: list[Schema] = [GPU_TENANT_POLICY, GPU_QUOTA]
