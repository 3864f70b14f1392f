"""YottaAccount (namespaced, tenant-owned) and ClusterYottaAccount (cluster-scoped, platform-owned)
CustomResourceDefinitions; hack/gen_crd.py writes them to crds/ (contract: DESIGN §2.4)."""

from __future__ import annotations

from typing import Any

from gen_crd import (
    CONDITION_ITEM,
    GROUP,
    VERSION,
    Schema,
    array,
    bounded_string,
    crd_document,
    integer,
    obj,
    string,
)

from gpupod_operator.domain.spec import (
    DNS_SUBDOMAIN_PATTERN,
    SECRET_KEY,
    SECRET_KEY_PATTERN,
    SECRET_NAME,
)


def _secret_ref(where: str) -> Schema:
    return obj(
        f"The Secret holding the Yotta API key, {where}. The operator reads it on every call "
        "(a rotated key is used from the next call, no restart) and keeps it, with a "
        "gpupod.dev/in-use finalizer, until the last GpuPod created with it is deleted. "
        "Immutable: rotate the key inside the Secret, or create another account.",
        {
            "name": bounded_string(
                "Name of the Secret.", SECRET_NAME, pattern=DNS_SUBDOMAIN_PATTERN
            ),
            "key": bounded_string(
                "Key in the Secret's data whose value is the API key.",
                SECRET_KEY,
                pattern=SECRET_KEY_PATTERN,
            ),
        },
        required=["name", "key"],
        # The in-use finalizer is on THIS Secret: re-pointing the account would leave it there
        # (and a namespace deletion hanging). A plain dict: see CLUSTER_YOTTA_ACCOUNT's rule.
        rules=[
            {
                "rule": "self == oldSelf",
                "message": "apiKeySecretRef is immutable: put the new key in the same Secret "
                "(kubectl create secret generic ... --dry-run=client -o yaml | kubectl apply "
                "-f -), or create another account",
            }
        ],
    )


RATE_LIMIT = obj(
    "Client-side rate limit toward the Yotta API for this account's key (one token bucket per "
    "account). Omitted: the operator's --qps and --burst.",
    {
        "qps": integer("Requests per second.", minimum=1, maximum=1000),
        "burst": integer("Requests that may be sent at once.", minimum=1, maximum=10000),
    },
)

_STRING_MAP: Schema = {
    "description": "Labels the namespace must carry (all of them).",
    "type": "object",
    "additionalProperties": {"type": "string"},
}

LABEL_SELECTOR = obj(
    "A label selector on the namespace's labels, as in a Deployment ({} selects every namespace).",
    {
        "matchLabels": _STRING_MAP,
        "matchExpressions": array(
            "Requirements on the namespace's labels, all of which must hold.",
            obj(
                "One requirement.",
                {
                    "key": string("The label key."),
                    "operator": string(
                        "In, NotIn, Exists or DoesNotExist.",
                        enum=["In", "NotIn", "Exists", "DoesNotExist"],
                    ),
                    "values": array("Values for In and NotIn.", string("A label value.")),
                },
                required=["key", "operator"],
            ),
        ),
    },
)

ALLOWED_NAMESPACES = obj(
    "Which namespaces' GpuPods may use this account: a namespace is allowed if it is named in "
    "names or its labels match selector. Omitted: no namespace may use it.",
    {
        "names": array(
            "Namespaces allowed by name.",
            string("A namespace name.", pattern=DNS_SUBDOMAIN_PATTERN),
            list_type="set",
        ),
        "selector": LABEL_SELECTOR,
    },
)


def _status(kind: str) -> Schema:
    return obj(
        f"What the operator knows of this {kind}.",
        {
            "conditions": array(
                "Ready: the API key Secret was found and has the key (reason SecretFound, or "
                "AccountNotFound with what to do). Keyed by type.",
                CONDITION_ITEM,
                list_type="map",
                map_keys=["type"],
            ),
            "keyFingerprint": string(
                "A short one-way fingerprint of the current API key (never the key): GpuPods "
                "record the one they were created with in status.account."
            ),
            "gpuPods": integer(
                "GpuPods whose remote pod is in this account (status.account names it).",
                minimum=0,
            ),
        },
    )


def _columns(extra: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"name": "Secret", "type": "string", "jsonPath": ".spec.apiKeySecretRef.name"},
        *extra,
        {
            "name": "Ready",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
        },
        {"name": "GpuPods", "type": "integer", "jsonPath": ".status.gpuPods"},
        {"name": "Key", "type": "string", "jsonPath": ".status.keyFingerprint", "priority": 1},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]


def _crd(
    kind: str,
    plural: str,
    scope: str,
    description: str,
    spec: Schema,
    columns: list[dict[str, Any]],
) -> Schema:
    schema = obj(
        description,
        {
            "apiVersion": string(f"Versioned schema of this representation: {GROUP}/{VERSION}."),
            "kind": string(f"REST resource this object represents: {kind}."),
            "metadata": {"type": "object"},
            "spec": spec,
            "status": _status(kind),
        },
        required=["spec"],
    )
    return crd_document(
        kind, plural, scope, schema, subresources={"status": {}}, additionalPrinterColumns=columns
    )


YOTTA_ACCOUNT = _crd(
    "YottaAccount",
    "yottaaccounts",
    "Namespaced",
    "A Yotta account of this namespace's tenant: GpuPods here that name it in "
    "spec.accountRef (or any GpuPod here, when it is named default) are created in and billed "
    "to the account of its API key.",
    obj(
        "The account's API key. There is no URL field: a tenant never chooses where the operator "
        "sends requests.",
        {"apiKeySecretRef": _secret_ref("in this namespace"), "rateLimit": RATE_LIMIT},
        required=["apiKeySecretRef"],
    ),
    _columns([]),
)

CLUSTER_YOTTA_ACCOUNT = _crd(
    "ClusterYottaAccount",
    "clusteryottaaccounts",
    "Cluster",
    "A Yotta account the platform team lends to the namespaces it allows: GpuPods there that "
    "name it in spec.accountRef (or, when it is named default, GpuPods without a YottaAccount "
    "named default) are created in and billed to it.",
    obj(
        "The account's API key, endpoint and the namespaces that may use it.",
        {
            "apiKeySecretRef": _secret_ref("in the operator's namespace"),
            "apiUrl": string(
                "Base URL of the Yotta API for this account. Omitted: the operator's "
                "YOTTA_API_URL. Immutable.",
                max_length=2048,
                pattern=r"^https?://[^\s]+$",
            ),
            "rateLimit": RATE_LIMIT,
            "allowedNamespaces": ALLOWED_NAMESPACES,
        },
        required=["apiKeySecretRef"],
        rules=[
            # A plain dict, not gen_crd.rule(): run as a script, gen_crd is __main__ and its
            # CelExpression class is not the one this module would import.
            {
                "rule": "!has(self.allowedNamespaces) || has(self.allowedNamespaces.names) || "
                "has(self.allowedNamespaces.selector)",
                "message": "allowedNamespaces needs names or selector (omit it to allow no "
                "namespace; selector: {} allows every namespace)",
                "fieldPath": ".allowedNamespaces",
            },
            # Pods are pinned to the account: at another endpoint they would all be "not
            # found" under the same key, which nothing could tell from deleted.
            {
                "rule": "has(self.apiUrl) == has(oldSelf.apiUrl) && "
                "(!has(self.apiUrl) || self.apiUrl == oldSelf.apiUrl)",
                "message": "apiUrl is immutable: the GpuPods of this account were created at "
                "that endpoint; create another ClusterYottaAccount for another endpoint",
                "fieldPath": ".apiUrl",
            },
        ],
    ),
    _columns([{"name": "API URL", "type": "string", "jsonPath": ".spec.apiUrl", "priority": 1}]),
)

CRDS = [YOTTA_ACCOUNT, CLUSTER_YOTTA_ACCOUNT]
