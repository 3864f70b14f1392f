"""The chart's tenant ClusterRoles on the real API server, acted on as a tenant user.

The chart's `<fullname>-tenant-edit` / `-tenant-view` are applied; kube-controller-manager's
clusterrole-aggregation controller folds them into the built-in `edit` and `view` roles. A
platform engineer binds `edit` to alice and `view` to bob in the tenant namespace, as for any
other workload, and this test impersonates them (`kubectl --as`): every allowed and refused
verb is asked with `kubectl auth can-i`, and the important ones are done for real.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpupod_operator.devenv.controlplane import ControlPlane

from .gpupods import manifest, wait_for
from .test_helm import helm, kubectl_apply, template

pytestmark = pytest.mark.e2e
__all__ = ["helm"]  # the fixture, imported for this module's tests

RBAC = "/apis/rbac.authorization.k8s.io/v1"
Doc = dict[str, Any]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def aggregated(cp: ControlPlane, role: str, resource: str) -> bool:
    rules = cp.request("GET", f"{RBAC}/clusterroles/{role}").get("rules") or []
    return any(
        "gpupod.dev" in r.get("apiGroups", []) and resource in r.get("resources", []) for r in rules
    )


@pytest.fixture(scope="module")
def tenant_roles(
    helm: Path,
    tmp_path_factory: pytest.TempPathFactory,
    control_plane: ControlPlane,
    crds: list[str],
) -> Iterator[list[str]]:
    docs = [
        d
        for d in template(helm, tmp_path_factory.mktemp("roles"), release="tenancy")
        if d["kind"] == "ClusterRole"
        and d["metadata"]["name"].endswith(("-tenant-edit", "-tenant-view"))
    ]
    assert len(docs) == 2
    for kind, plural, scope in ACCOUNT_KINDS:
        if f"{plural}.gpupod.dev" not in crds:
            kubectl_apply(control_plane, [stand_in_crd(kind, plural, scope)], dry_run=False)
            control_plane.wait_crd_established(f"{plural}.gpupod.dev")
    kubectl_apply(control_plane, docs, dry_run=False)
    # The aggregation controller (kube-controller-manager) copies their rules into edit/view.
    wait_for(lambda: aggregated(control_plane, "edit", "gpupods"), 60, "gpupods in edit")
    wait_for(lambda: aggregated(control_plane, "view", "gpuquotas"), 60, "gpuquotas in view")
    names = [d["metadata"]["name"] for d in docs]
    try:
        yield names
    finally:
        for name in names:
            control_plane.request("DELETE", f"{RBAC}/clusterroles/{name}")


def stand_in_crd(kind: str, plural: str, scope: str) -> Doc:
    """A minimal CRD for a kind another change adds (the accounts' YottaAccount and
    ClusterYottaAccount), so that kubectl resolves its name; never replaces the real one."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.gpupod.dev"},
        "spec": {
            "group": "gpupod.dev",
            "names": {"kind": kind, "plural": plural, "listKind": f"{kind}List"},
            "scope": scope,
            "versions": [
                {
                    "name": "v1alpha1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


ACCOUNT_KINDS = [
    ("YottaAccount", "yottaaccounts", "Namespaced"),
    ("ClusterYottaAccount", "clusteryottaaccounts", "Cluster"),
]


def bind(cp: ControlPlane, namespace: str, user: str, role: str) -> None:
    cp.request(
        "POST",
        f"{RBAC}/namespaces/{namespace}/rolebindings",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": f"{user}-{role}"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role,
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        },
    )


def can_i(cp: ControlPlane, user: str, verb: str, resource: str, namespace: str | None) -> bool:
    scope = ["-n", namespace] if namespace else ["--all-namespaces"]
    resource, _, sub = resource.partition("/")
    if sub:
        scope.append(f"--subresource={sub}")
    result = cp.kubectl("auth", "can-i", f"--as={user}", verb, resource, *scope, check=False)
    answer = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert answer in ("yes", "no"), (verb, resource, result.stdout, result.stderr)
    return answer == "yes"


def as_user(cp: ControlPlane, user: str, *args: str, input: str | None = None) -> tuple[bool, str]:
    result = cp.kubectl(f"--as={user}", *args, input=input, check=False)
    return result.returncode == 0, result.stdout + result.stderr


EDIT_VERBS = ("get", "list", "watch", "create", "update", "patch", "delete")
READ_VERBS = ("get", "list", "watch")
WRITE_VERBS = ("create", "update", "patch", "delete")


def test_tenants_manage_gpupods_and_accounts_read_quotas_and_touch_nothing_else(
    control_plane: ControlPlane, tenant_roles: list[str]
) -> None:
    cp = control_plane
    tenant = cp.create_namespace(unique("tenant"))
    other = cp.create_namespace(unique("other-tenant"))
    operator_ns = cp.create_namespace(unique("gpupod-system"))
    bind(cp, tenant, "alice", "edit")
    bind(cp, tenant, "bob", "view")
    G = "gpupod.dev"
    allowed: list[tuple[str, str, str, str | None]] = []
    refused: list[tuple[str, str, str, str | None]] = []
    for verb in EDIT_VERBS:
        allowed += [
            ("alice", verb, f"gpupods.{G}", tenant),
            ("alice", verb, f"yottaaccounts.{G}", tenant),
        ]
        refused += [
            ("alice", verb, f"gpupods.{G}", other),
            ("alice", verb, f"gpupods.{G}", operator_ns),
        ]
    for verb in READ_VERBS:
        allowed += [
            ("alice", verb, f"gpuquotas.{G}", tenant),
            ("bob", verb, f"gpupods.{G}", tenant),
            ("bob", verb, f"yottaaccounts.{G}", tenant),
            ("bob", verb, f"gpuquotas.{G}", tenant),
        ]
    for verb in WRITE_VERBS:
        refused += [
            ("alice", verb, f"gpuquotas.{G}", tenant),
            ("alice", verb, f"gpupods.{G}/status", tenant),
            ("alice", verb, f"gpuquotas.{G}/status", tenant),
            ("bob", verb, f"gpupods.{G}", tenant),
            ("bob", verb, f"yottaaccounts.{G}", tenant),
            ("alice", verb, "validatingadmissionpolicies.admissionregistration.k8s.io", None),
            (
                "alice",
                verb,
                "validatingadmissionpolicybindings.admissionregistration.k8s.io",
                None,
            ),
        ]
    for verb in EDIT_VERBS:
        for user in ("alice", "bob"):
            refused += [
                (user, verb, f"gputenantpolicies.{G}", None),
                (user, verb, f"clusteryottaaccounts.{G}", None),
                (user, verb, f"yottaaccounts.{G}", operator_ns),
                (user, verb, f"gpuquotas.{G}", operator_ns),
            ]
    refused += [("alice", "patch", "namespaces", None), ("alice", "get", "secrets", operator_ns)]
    wrong = [c for c in allowed if not can_i(cp, *c)] + [c for c in refused if can_i(cp, *c)]
    assert not wrong, f"can-i answered against the design for: {wrong}"

    # For real: alice creates and deletes a GpuPod in her namespace ...
    body = json.dumps(manifest("alices-pod"))
    ok, out = as_user(cp, "alice", "apply", "-n", tenant, "-f", "-", input=body)
    assert ok, out
    ok, out = as_user(cp, "bob", "get", "gpupods", "-n", tenant, "-o", "name")
    assert ok and "alices-pod" in out, out
    ok, out = as_user(cp, "bob", "delete", "gpupod", "alices-pod", "-n", tenant, "--wait=false")
    assert not ok and "forbidden" in out.lower(), out
    ok, out = as_user(cp, "alice", "delete", "gpupod", "alices-pod", "-n", tenant, "--wait=false")
    assert ok, out
    # ... but not elsewhere, and she cannot raise her own quota or write a policy.
    ok, out = as_user(cp, "alice", "apply", "-n", other, "-f", "-", input=body)
    assert not ok and "forbidden" in out.lower(), out
    quota = {
        "apiVersion": "gpupod.dev/v1alpha1",
        "kind": "GpuQuota",
        "metadata": {"name": "mine"},
        "spec": {"hard": {"gpus": 1000}},
    }
    ok, out = as_user(cp, "alice", "create", "-n", tenant, "-f", "-", input=json.dumps(quota))
    assert not ok and "forbidden" in out.lower(), out
    policy = {
        "apiVersion": "gpupod.dev/v1alpha1",
        "kind": "GpuTenantPolicy",
        "metadata": {"name": unique("alices")},
        "spec": {"namespaceSelector": {}},
    }
    ok, out = as_user(cp, "alice", "create", "-f", "-", input=json.dumps(policy))
    assert not ok and "forbidden" in out.lower(), out
    # The quota the platform team sets, she can read.
    cp.request("POST", f"/apis/gpupod.dev/v1alpha1/namespaces/{tenant}/gpuquotas", quota)
    ok, out = as_user(cp, "alice", "get", "gpuquotas", "-n", tenant, "-o", "name")
    assert ok and "mine" in out, out
    print(f"TENANT-RBAC allowed={len(allowed)} refused={len(refused)} checked with can-i")
