"""The Helm chart (deploy/helm/gpupod-operator): lint, render, the real API server, and RBAC.

- ``helm lint --strict`` and ``helm template`` with the defaults and with every option on;
  assertions on the rendered objects (restricted securityContext, Recreate, the probe, the API
  key only as a mounted file, the CRD byte-identical to ``crds/``).
- The rendered manifests are accepted by the real kube-apiserver (``kubectl apply
  --dry-run=server``, server-side, strict field validation). The ServiceMonitor CRD is not
  part of a bare API server: a minimal one with the real field names and a strict schema is
  installed first, so every rendered object is checked. The Deployment's pod template is also
  dry-run as a Pod in a namespace that enforces the ``restricted`` Pod Security Standard.
- RBAC, for real: the chart's ServiceAccount, ClusterRole(s)/Role(s) and bindings are applied,
  the operator process runs with a token of that ServiceAccount and the chart's own container
  arguments and key file, drives a full GpuPod lifecycle without a single permission error,
  and that same identity is then refused (403) everything it does not need. These run on a
  control plane of their own: an operator with -A would otherwise serve other tests' GpuPods.

helm comes from ``$GPUPOD_CACHE/bin/helm`` (``make helm``, hack/build-helm.sh), built on demand.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gpupod_operator.devenv.controlplane import ApiError, ControlPlane
from gpupod_operator.devenv.kubeconfig import read_kubeconfig
from gpupod_operator.devenv.operator_process import OperatorProcess
from gpupod_operator.devenv.process import free_port
from gpupod_operator.devenv.simulator_process import SimulatorProcess

from .conftest import REPO_ROOT, StartOperator
from .gpupods import GpuPods, live_pods, manifest, wait_for

pytestmark = pytest.mark.e2e

CHART = REPO_ROOT / "deploy" / "helm" / "gpupod-operator"
CRD_FILE = REPO_ROOT / "crds" / "gpupods.gpupod.dev.yaml"
API_KEY_MOUNT = "/etc/gpupod-operator/api-key"

Doc = dict[str, Any]

#: Every option on (the namespaces are replaced per test where they must exist).
ALL_OPTIONS: Doc = {
    "replicaCount": 2,
    "apiUrl": "https://yotta.example.test",
    "apiKey": {"value": "sk-all-options-0123456789", "existingSecretKey": "token"},
    "watchNamespaces": ["team-a", "team-b"],
    "defaultAccount": {"allowedNamespaces": ["team-a", "platform-demo"]},
    "logLevel": "DEBUG",
    "syncInterval": 15,
    "fastSyncInterval": 0.5,
    "clusterId": "prod-eu-1",
    "orphans": {"mode": "delete", "grace": 120},
    "rateLimit": {"qps": 5, "burst": 10},
    "maxConcurrentReconciles": 8,
    "metrics": {
        "port": 9100,
        "service": {"annotations": {"prometheus.io/scrape": "true"}},
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
    },
    "networkPolicy": {
        "enabled": True,
        "ingressFrom": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
        ],
        "dnsTo": [
            {
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                },
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }
        ],
        "apiServer": {"to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}], "ports": [443, 6443]},
        "extraEgress": [
            {"to": [{"ipBlock": {"cidr": "192.0.2.10/32"}}], "ports": [{"port": 3128}]}
        ],
    },
    "image": {"repository": "registry.example.test/gpupod-operator", "tag": "0.1.0-test"},
    "imagePullSecrets": [{"name": "regcred"}],
    "serviceAccount": {"annotations": {"example.test/role": "operator"}},
    "podAnnotations": {"example.test/team": "platform"},
    "podLabels": {"example.test/tier": "control"},
    "priorityClassName": "system-cluster-critical",
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}
    ],
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}
                        ]
                    }
                ]
            }
        }
    },
}

#: The smallest ServiceMonitor CRD that accepts what the chart renders: the real group, kind,
#: scope and field names of prometheus-operator's, with a closed schema, so a misspelt field is
#: refused by strict field validation instead of being pruned.
SERVICE_MONITOR_CRD: Doc = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
    "spec": {
        "group": "monitoring.coreos.com",
        "names": {
            "kind": "ServiceMonitor",
            "listKind": "ServiceMonitorList",
            "plural": "servicemonitors",
            "singular": "servicemonitor",
        },
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "required": ["spec"],
                        "properties": {
                            "apiVersion": {"type": "string"},
                            "kind": {"type": "string"},
                            "metadata": {"type": "object"},
                            "spec": {
                                "type": "object",
                                "required": ["selector"],
                                "properties": {
                                    "selector": {
                                        "type": "object",
                                        "properties": {
                                            "matchLabels": {
                                                "type": "object",
                                                "additionalProperties": {"type": "string"},
                                            }
                                        },
                                    },
                                    "namespaceSelector": {
                                        "type": "object",
                                        "properties": {
                                            "any": {"type": "boolean"},
                                            "matchNames": {
                                                "type": "array",
                                                "items": {"type": "string"},
                                            },
                                        },
                                    },
                                    "endpoints": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "properties": {
                                                "port": {"type": "string"},
                                                "path": {"type": "string"},
                                                "interval": {
                                                    "type": "string",
                                                    "pattern": "^(0|(([0-9]+)y)?(([0-9]+)w)?"
                                                    "(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?"
                                                    "(([0-9]+)s)?(([0-9]+)ms)?)$",
                                                },
                                                "scrapeTimeout": {
                                                    "type": "string",
                                                    "pattern": "^(0|(([0-9]+)y)?(([0-9]+)w)?"
                                                    "(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?"
                                                    "(([0-9]+)s)?(([0-9]+)ms)?)$",
                                                },
                                            },
                                        },
                                    },
                                },
                            },
                        },
                    }
                },
            }
        ],
    },
}

#: What a permission problem looks like in the operator's log (kopf's and our client's words).
PERMISSION_TROUBLE = re.compile(
    r"Forbidden|forbidden|Not enough permissions|APIForbiddenError|answered 403", re.MULTILINE
)


# --------------------------------------------------------------------------- helm


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def helm() -> Path:
    """The helm binary: ``$GPUPOD_CACHE/bin/helm``, else built by hack/build-helm.sh."""
    cache = Path(os.environ.get("GPUPOD_CACHE") or Path.home() / ".cache" / "gpupod-operator")
    binary = cache.expanduser() / "bin" / "helm"
    if binary.is_file() and os.access(binary, os.X_OK):
        return binary
    build = subprocess.run(
        ["bash", str(REPO_ROOT / "hack" / "build-helm.sh")],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    lines = build.stdout.strip().splitlines()
    if build.returncode == 0 and lines and Path(lines[-1]).is_file():
        return Path(lines[-1])
    message = f"helm not available (hack/build-helm.sh exited {build.returncode}): {build.stderr}"
    if _in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def run_helm(helm: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(helm), *args], capture_output=True, text=True, timeout=120, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result


def template(
    helm: Path,
    tmp_path: Path,
    values: Doc | None = None,
    *,
    release: str = "gpupod",
    namespace: str = "gpupod-system",
    include_crds: bool = False,
    api_versions: tuple[str, ...] = (),
) -> list[Doc]:
    """``helm template`` with ``values`` (a values file); the rendered objects. `api_versions`:
    what the API server serves beyond helm's defaults (`helm install` asks the server)."""
    values_file = tmp_path / f"values-{uuid.uuid4().hex[:8]}.yaml"
    values_file.write_text(yaml.safe_dump(values or {}))
    args = ["template", release, str(CHART), "--namespace", namespace, "-f", str(values_file)]
    if include_crds:
        args.append("--include-crds")
    for api in api_versions:
        args += ["--api-versions", api]
    rendered = run_helm(helm, *args).stdout
    return [d for d in yaml.safe_load_all(rendered) if d]


def one(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    found = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def container(docs: list[Doc]) -> Doc:
    containers = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: Doc = containers[0]
    return result


def kinds(docs: list[Doc]) -> list[str]:
    return sorted(d["kind"] for d in docs)


def verbs(rules: list[Doc]) -> dict[tuple[str, str], set[str]]:
    """(apiGroup, resource) -> verbs, over all rules."""
    out: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        assert not rule.get("resourceNames") and not rule.get("nonResourceURLs")
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


NAMESPACED_RULES = {
    ("gpupod.dev", "gpupods"): {"get", "list", "watch", "patch"},
    ("gpupod.dev", "gpupods/status"): {"patch"},
    ("gpupod.dev", "gpuquotas"): {"get", "list", "watch"},
    ("gpupod.dev", "gpuquotas/status"): {"patch"},
    ("", "secrets"): {"get", "patch"},
    ("", "events"): {"create"},
    ("gpupod.dev", "yottaaccounts"): {"get", "list", "watch", "patch"},
    ("gpupod.dev", "yottaaccounts/status"): {"patch"},
}
CRD_RULES = {("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"}}
# ClusterYottaAccounts, and a namespace's labels for their allowedNamespaces.selector.
ACCOUNT_RULES = {
    ("gpupod.dev", "clusteryottaaccounts"): {"get", "list", "watch", "patch"},
    ("gpupod.dev", "clusteryottaaccounts/status"): {"patch"},
    ("", "namespaces"): {"get"},
}
# The operator's policy check: the policies (read-only) and the labels of a namespace.
POLICY_RULES = {
    ("gpupod.dev", "gputenantpolicies"): {"list", "watch"},
    ("", "namespaces"): {"get"},
}
TENANCY_KINDS = ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]
MAP_API = "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy"  # Kubernetes 1.36+
FINALIZER_KINDS = ["MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding"]
FINALIZER = "gpupod.dev/finalizer"


def lease_rules(name: str) -> list[Doc]:
    """The leader election Role's rules: get/update of the one Lease, create (no name)."""
    return [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": [name],
            "verbs": ["get", "update"],
        },
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    ]


# Orphans, in the release namespace: the released-pods ConfigMap and Events on the operator Pod.
ORPHAN_RULES: list[Doc] = [
    {
        "apiGroups": [""],
        "resources": ["configmaps"],
        "resourceNames": ["gpupod-released-pods"],
        "verbs": ["get", "patch"],
    },
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
]
DOWNWARD_ENV = {
    "POD_NAME": "metadata.name",
    "POD_NAMESPACE": "metadata.namespace",
    "POD_UID": "metadata.uid",
}


def orphans_role(docs: list[Doc]) -> Doc:
    (role,) = [
        d for d in docs if d["kind"] == "Role" and d["metadata"]["name"].endswith("-orphans")
    ]
    return role


def unnamed(rules: list[Doc]) -> list[Doc]:
    """The rules that are not limited to named objects."""
    return [r for r in rules if not r.get("resourceNames")]


def leader_election_role(docs: list[Doc]) -> Doc:
    (role,) = [
        d
        for d in docs
        if d["kind"] == "Role" and d["metadata"]["name"].endswith("-leader-election")
    ]
    return role


# --------------------------------------------------------------------------- offline: lint, render


def test_lint_strict_is_clean_with_defaults_and_every_option(helm: Path, tmp_path: Path) -> None:
    values_file = tmp_path / "all.yaml"
    values_file.write_text(yaml.safe_dump(ALL_OPTIONS))
    for extra in ([], ["-f", str(values_file)]):
        result = run_helm(helm, "lint", "--strict", str(CHART), *extra)
        assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout
        assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


def test_default_render(helm: Path, tmp_path: Path) -> None:
    docs = template(helm, tmp_path)
    assert kinds(docs) == sorted(
        [
            "ClusterRole",
            "ClusterRole",
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "Role",
            "Role",
            "RoleBinding",
            "RoleBinding",
            "Service",
            "ServiceAccount",
            *TENANCY_KINDS,
        ]
    )
    deployment = one(docs, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == one(docs, "ServiceAccount")["metadata"]["name"]
    assert pod["terminationGracePeriodSeconds"] == 60
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    c = container(docs)
    assert c["image"] == "gpupod-operator:0.1.0"
    assert c["securityContext"] == {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert c["args"] == [
        "run",
        "--all-namespaces",
        "--leader-election",
        "--leader-election-namespace=gpupod-system",
        "--leader-election-id=gpupod-gpupod-operator",
        "--liveness=http://0.0.0.0:8080/healthz",
        "--metrics-port=9090",
        "--metrics-addr=0.0.0.0",
        "--sync-interval=30",
        "--fast-sync-interval=2",
        "--qps=20",
        "--burst=40",
        "--max-concurrent-reconciles=64",
        "--log-level=INFO",
        "--operator-namespace=gpupod-system",
        "--orphans=report",
        "--orphan-grace=600",
    ]
    probe = c["livenessProbe"]
    assert probe["httpGet"] == {"path": "/healthz", "port": "liveness"}
    # Ready (Available) only once logged in and watching: /readyz on the same port.
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "liveness"}
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"liveness": 8080, "metrics": 9090}
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    # The key is a file from the Secret yotta-api-key, never an environment value.
    env = {e["name"]: e for e in c["env"]}
    assert set(env) == {"YOTTA_API_URL", "YOTTA_API_KEY_FILE", *DOWNWARD_ENV}
    assert env["YOTTA_API_URL"]["value"] == "https://api.yottalabs.ai"
    assert env["YOTTA_API_KEY_FILE"]["value"] == f"{API_KEY_MOUNT}/api-key"
    # Only the pod's own identity comes from elsewhere (the downward API); never a Secret.
    from_elsewhere = {e["name"]: e["valueFrom"] for e in c["env"] if "valueFrom" in e}
    assert from_elsewhere == {k: {"fieldRef": {"fieldPath": v}} for k, v in DOWNWARD_ENV.items()}
    assert "envFrom" not in c
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["api-key"]["secret"] == {
        "secretName": "yotta-api-key",
        "defaultMode": 0o440,
        "items": [{"key": "api-key", "path": "api-key"}],
    }
    assert volumes["tmp"] == {"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert set(mounts) == {API_KEY_MOUNT, "/tmp"} and mounts[API_KEY_MOUNT]["readOnly"] is True
    # cluster-wide RBAC: exactly the namespaced rules plus kopf's read-only CRD watch, the
    # policy check and the ClusterYottaAccount reads
    cluster_rules = one(docs, "ClusterRole", "gpupod-gpupod-operator")["rules"]
    assert verbs(unnamed(cluster_rules)) == {
        **NAMESPACED_RULES,
        **CRD_RULES,
        **POLICY_RULES,
        **ACCOUNT_RULES,
    }
    assert not [r for r in cluster_rules if r.get("resourceNames")]
    binding = one(docs, "ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "gpupod-gpupod-operator", "namespace": "gpupod-system"}
    ]
    # leader election: the one Lease in the release namespace, even with one replica
    role = leader_election_role(docs)
    assert role["metadata"]["namespace"] == "gpupod-system"
    assert role["rules"] == lease_rules("gpupod-gpupod-operator")
    orphans = orphans_role(docs)
    assert orphans["metadata"]["namespace"] == "gpupod-system"
    assert orphans["rules"] == ORPHAN_RULES
    role_bindings = {b["roleRef"]["name"]: b for b in docs if b["kind"] == "RoleBinding"}
    assert set(role_bindings) == {role["metadata"]["name"], orphans["metadata"]["name"]}
    for lease_binding in role_bindings.values():
        assert lease_binding["metadata"]["namespace"] == "gpupod-system"
        assert lease_binding["subjects"] == binding["subjects"]
    service = one(docs, "Service")
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_every_option_render(helm: Path, tmp_path: Path) -> None:
    docs = template(helm, tmp_path, ALL_OPTIONS, release="ops", namespace="platform")
    assert kinds(docs) == sorted(
        [
            "ClusterRole",
            "ClusterRole",
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Role",
            "Role",
            "Role",
            "Role",
            "Role",
            "RoleBinding",
            "RoleBinding",
            "RoleBinding",
            "RoleBinding",
            "RoleBinding",
            "Secret",
            "Service",
            "ServiceAccount",
            "ServiceMonitor",
            *TENANCY_KINDS,
        ]
    )
    key = ALL_OPTIONS["apiKey"]["value"]
    secret = one(docs, "Secret")
    assert secret["metadata"] == {**secret["metadata"], "name": "ops-gpupod-operator-api-key"}
    assert base64.b64decode(secret["data"]["token"]).decode() == key
    # The key is in the Secret and nowhere else, in clear or base64.
    others = json.dumps([d for d in docs if d["kind"] != "Secret"])
    assert key not in others and base64.b64encode(key.encode()).decode() not in others
    c = container(docs)
    assert c["image"] == "registry.example.test/gpupod-operator:0.1.0-test"
    assert c["args"] == [
        "run",
        "--namespace=team-a",
        "--namespace=team-b",
        "--leader-election",
        "--leader-election-namespace=platform",
        "--leader-election-id=ops-gpupod-operator",
        "--liveness=http://0.0.0.0:8080/healthz",
        "--metrics-port=9100",
        "--metrics-addr=0.0.0.0",
        "--sync-interval=15",
        "--fast-sync-interval=0.5",
        "--qps=5",
        "--burst=10",
        "--max-concurrent-reconciles=8",
        "--log-level=DEBUG",
        "--operator-namespace=platform",
        "--default-account-namespaces=team-a,platform-demo",
        "--orphans=delete",
        "--orphan-grace=120",
        "--cluster-id=prod-eu-1",
    ]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env == {
        "YOTTA_API_URL": "https://yotta.example.test",
        "YOTTA_API_KEY_FILE": f"{API_KEY_MOUNT}/api-key",
        **dict.fromkeys(DOWNWARD_ENV),
    }
    template_ = one(docs, "Deployment")["spec"]["template"]
    volumes = {v["name"]: v for v in template_["spec"]["volumes"]}
    assert volumes["api-key"]["secret"]["secretName"] == "ops-gpupod-operator-api-key"
    assert volumes["api-key"]["secret"]["items"] == [{"key": "token", "path": "api-key"}]
    annotations = template_["metadata"]["annotations"]
    assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/api-key"])
    assert annotations["example.test/team"] == "platform"
    assert template_["metadata"]["labels"]["example.test/tier"] == "control"
    pod = template_["spec"]
    assert pod["nodeSelector"] == ALL_OPTIONS["nodeSelector"]
    assert pod["tolerations"] == ALL_OPTIONS["tolerations"]
    assert pod["affinity"] == ALL_OPTIONS["affinity"]
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    # Two replicas: a rolling update that starts the standby first, and a disruption budget.
    deployment = one(docs, "Deployment")["spec"]
    assert deployment["replicas"] == 2
    assert deployment["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    budget = one(docs, "PodDisruptionBudget")
    assert budget["metadata"]["namespace"] == "platform"
    assert budget["spec"] == {
        "maxUnavailable": 1,
        "selector": {"matchLabels": one(docs, "Deployment")["spec"]["selector"]["matchLabels"]},
    }
    lease_role = leader_election_role(docs)
    assert lease_role["metadata"]["namespace"] == "platform"
    assert lease_role["rules"] == lease_rules("ops-gpupod-operator")
    # Namespaced RBAC: a Role per watched namespace, only cluster-scoped reads cluster-wide.
    orphans = orphans_role(docs)
    assert orphans["metadata"]["namespace"] == "platform" and orphans["rules"] == ORPHAN_RULES
    # ClusterYottaAccounts' Secrets are in the release namespace, which is not watched.
    (accounts_role,) = [
        d for d in docs if d["kind"] == "Role" and d["metadata"]["name"].endswith("-accounts")
    ]
    assert accounts_role["kind"] == "Role" and accounts_role["metadata"]["namespace"] == "platform"
    assert verbs(accounts_role["rules"]) == {("", "secrets"): {"get", "patch"}}
    roles = [
        d for d in docs if d["kind"] == "Role" and d not in (lease_role, orphans, accounts_role)
    ]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    for role in roles:
        assert verbs(role["rules"]) == NAMESPACED_RULES
    for binding in (d for d in docs if d["kind"] == "RoleBinding"):
        assert binding["roleRef"]["kind"] == "Role"
        if binding["roleRef"]["name"] in (
            lease_role["metadata"]["name"],
            orphans["metadata"]["name"],
        ):
            assert binding["metadata"]["namespace"] == "platform"
            continue
        assert binding["subjects"][0]["namespace"] == "platform"
    assert verbs(one(docs, "ClusterRole", "ops-gpupod-operator")["rules"]) == {
        **CRD_RULES,
        **ACCOUNT_RULES,
        **POLICY_RULES,
        ("", "namespaces"): {"get", "list", "watch"},
    }
    monitor = one(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    service = one(docs, "Service")
    for key_, value in monitor["spec"]["selector"]["matchLabels"].items():
        assert service["metadata"]["labels"][key_] == value
    assert service["metadata"]["annotations"] == {"prometheus.io/scrape": "true"}
    policy = one(docs, "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["ingress"][0]["ports"] == [
        {"port": 8080, "protocol": "TCP"},
        {"port": 9100, "protocol": "TCP"},
    ]
    egress = policy["egress"]
    assert [sorted((p["port"], p["protocol"]) for p in rule["ports"]) for rule in egress[:3]] == [
        [(53, "TCP"), (53, "UDP")],  # DNS
        [(443, "TCP"), (6443, "TCP")],  # the API server
        [(443, "TCP")],  # the Yotta API
    ]
    assert egress[0]["to"] == ALL_OPTIONS["networkPolicy"]["dnsTo"]
    assert policy["egress"][1]["to"] == [{"ipBlock": {"cidr": "10.0.0.1/32"}}]
    assert policy["egress"][3] == ALL_OPTIONS["networkPolicy"]["extraEgress"][0]
    assert policy["ingress"][0]["from"] == ALL_OPTIONS["networkPolicy"]["ingressFrom"]


def test_values_are_documented_line_by_line_and_covered_by_the_schema() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = [
        line
        for i, line in enumerate(lines)
        if re.match(r"^\s*[A-Za-z][\w.-]*:", line) and not lines[i - 1].strip().startswith("#")
    ]
    assert not undocumented, f"values without a comment right above them: {undocumented}"

    def paths(values: Doc, schema: Doc, prefix: str = "") -> None:
        properties = schema.get("properties", {})
        assert set(values) == set(properties) - {"global"}, f"{prefix or 'top level'}"
        for key, value in values.items():
            if isinstance(value, dict) and "properties" in properties[key]:
                paths(value, properties[key], f"{prefix}{key}.")

    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
    paths(yaml.safe_load((CHART / "values.yaml").read_text()), schema)


def test_tenancy_objects_are_on_by_default_and_can_be_turned_off(
    helm: Path, tmp_path: Path
) -> None:
    docs = template(helm, tmp_path)
    vap = one(docs, "ValidatingAdmissionPolicy", "gpupod-gpupod-operator-tenant-policy")
    assert vap["spec"]["paramKind"] == {
        "apiVersion": "gpupod.dev/v1alpha1",
        "kind": "GpuTenantPolicy",
    }
    assert vap["spec"]["failurePolicy"] == "Fail"
    (spec_changed,) = vap["spec"]["matchConditions"]
    assert "oldObject.spec != object.spec" in spec_changed["expression"]
    binding = one(docs, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"]["policyName"] == vap["metadata"]["name"]
    assert binding["spec"]["paramRef"] == {"selector": {}, "parameterNotFoundAction": "Allow"}
    assert binding["spec"]["validationActions"] == ["Deny"]
    edit = one(docs, "ClusterRole", "gpupod-gpupod-operator-tenant-edit")
    view = one(docs, "ClusterRole", "gpupod-gpupod-operator-tenant-view")
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert verbs(view["rules"]) == {
        ("gpupod.dev", r): {"get", "list", "watch"}
        for r in ("gpupods", "gpupods/status", "yottaaccounts", "gpuquotas", "gpuquotas/status")
    }
    off = template(
        helm, tmp_path, {"admissionPolicy": {"enabled": False}, "tenantRoles": {"enabled": False}}
    )
    assert not {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"} & set(kinds(off))
    assert [d["metadata"]["name"] for d in off if d["kind"] == "ClusterRole"] == [
        "gpupod-gpupod-operator"
    ]


def test_the_finalizer_policy_is_rendered_where_the_api_server_serves_it(
    helm: Path, tmp_path: Path
) -> None:
    assert not set(FINALIZER_KINDS) & set(kinds(template(helm, tmp_path)))  # before 1.36
    docs = template(helm, tmp_path, api_versions=(MAP_API,))
    policy = one(docs, "MutatingAdmissionPolicy")
    assert policy["spec"]["failurePolicy"] == "Ignore"  # the operator adds it otherwise
    rules = policy["spec"]["matchConstraints"]["resourceRules"]
    assert [(r["resources"], r["operations"]) for r in rules] == [(["gpupods"], ["CREATE"])]
    binding = one(docs, "MutatingAdmissionPolicyBinding")
    assert binding["spec"] == {"policyName": policy["metadata"]["name"]}  # every namespace
    scoped = template(helm, tmp_path, {"watchNamespaces": ["a", "b"]}, api_versions=(MAP_API,))
    assert one(scoped, "MutatingAdmissionPolicyBinding")["spec"]["matchResources"] == {
        "namespaceSelector": {
            "matchExpressions": [
                {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["a", "b"]}
            ]
        }
    }
    off = template(helm, tmp_path, {"finalizerPolicy": {"enabled": False}}, api_versions=(MAP_API,))
    assert not set(FINALIZER_KINDS) & set(kinds(off))


def test_the_finalizer_policy_sets_the_finalizer_at_apply_in_watched_namespaces_only(
    helm: Path,
    tmp_path: Path,
    control_plane: ControlPlane,
    namespace: str,
    simulator: SimulatorProcess,
    start_operator: StartOperator,
) -> None:
    """With the chart's MutatingAdmissionPolicy the finalizer is in the tenant's own CREATE:
    the operator writes nothing of its own to the GpuPod (its status aside), and the
    deletion still ends with the finalizer removed. Outside watchNamespaces: no finalizer."""
    cp, other = control_plane, control_plane.create_namespace(unique("unwatched"))
    docs = template(
        helm,
        tmp_path,
        {"watchNamespaces": [namespace]},
        release=unique("map"),
        api_versions=(MAP_API,),
    )
    policy = [d for d in docs if d["kind"] in FINALIZER_KINDS]
    kubectl_apply(cp, policy, dry_run=False)
    try:
        probe = manifest("probe")
        dry = f"/apis/gpupod.dev/v1alpha1/namespaces/{namespace}/gpupods?dryRun=All"
        wait_for(  # the API server loads a new policy within a moment
            lambda: (
                FINALIZER in (cp.request("POST", dry, probe)["metadata"].get("finalizers") or [])
            ),
            30,
            "the finalizer policy in effect",
        )
        GpuPods(cp, other).create("theirs")
        assert not GpuPods(cp, other).get("theirs")["metadata"].get("finalizers")
        pods = GpuPods(cp, namespace)
        pods.create("mine")
        assert pods.get("mine")["metadata"]["finalizers"] == [FINALIZER]  # before any operator
        start_operator()
        pod_id = pods.wait_phase("mine", "Running")["podId"]
        managers = {m["manager"]: m for m in pods.get("mine")["metadata"]["managedFields"]}
        # The operator's writes are its status (subresource) only: no kopf patch of the object.
        assert {m.get("subresource") for n, m in managers.items() if n != "Python-urllib"} == {
            "status"
        }, managers
        pods.delete("mine")
        pods.wait_gone("mine")
        assert remote(simulator, pod_id)["status"] == "TERMINATED"
    finally:
        for doc in policy:
            cp.kubectl("delete", doc["kind"], doc["metadata"]["name"], "--ignore-not-found")
        cp.kubectl("delete", "gpupod", "theirs", "-n", other, "--ignore-not-found", "--wait=false")


def test_existing_secret_is_mounted_and_no_secret_is_created(helm: Path, tmp_path: Path) -> None:
    docs = template(
        helm, tmp_path, {"apiKey": {"existingSecret": "yotta", "existingSecretKey": "key"}}
    )
    assert "Secret" not in kinds(docs)
    volumes = {v["name"]: v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["api-key"]["secret"]["secretName"] == "yotta"
    assert volumes["api-key"]["secret"]["items"] == [{"key": "key", "path": "api-key"}]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"apiKey": {"existingSecret": ""}}, "set apiKey.existingSecret"),
        ({"logLevel": "debug"}, "logLevel"),
        ({"replicaCount": 0}, "replicaCount"),
        ({"replicaCount": "2"}, "replicaCount"),
        ({"replicas": 2}, "replicas"),  # a typo: refused, not ignored
        ({"watchNamespaces": ["Not_A_Namespace"]}, "watchNamespaces"),
        ({"securityContext": {"runAsUser": 0}}, "runAsUser"),
        ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
        ({"orphans": {"mode": "nuke"}}, "orphans/mode"),
        ({"orphans": {"grace": -1}}, "orphans/grace"),
        ({"clusterId": "has space"}, "clusterId"),
        (
            {"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}},
            "needs metrics.enabled",
        ),
    ],
)
def test_bad_values_are_refused(helm: Path, tmp_path: Path, values: Doc, message: str) -> None:
    values_file = tmp_path / "bad.yaml"
    values_file.write_text(yaml.safe_dump(values))
    result = run_helm(helm, "template", "x", str(CHART), "-f", str(values_file), check=False)
    assert result.returncode != 0 and message in result.stderr, result.stderr


def test_crd_comes_from_the_single_source_in_crds(helm: Path, tmp_path: Path) -> None:
    """The chart's crds/ is a symlink to the repository's crds/: nothing to copy, nothing to
    drift. helm follows it in lint, template and package; the packaged chart (what users
    install) carries the same bytes."""
    link = CHART / "crds"
    assert link.is_symlink(), "deploy/helm/gpupod-operator/crds must be a symlink to crds/"
    assert os.readlink(link) == "../../../crds"  # relative: valid in any clone
    assert link.resolve() == CRD_FILE.parent.resolve()
    # Everything helm would install from crds/ is a CRD (no stray manifest rides along).
    for path in sorted(CRD_FILE.parent.iterdir()):
        if path.suffix in (".yaml", ".yml", ".json"):
            for doc in yaml.safe_load_all(path.read_text()):
                assert doc["kind"] == "CustomResourceDefinition", path
    files = sorted(CRD_FILE.parent.glob("*.yaml"))
    assert CRD_FILE in files
    rendered = template(helm, tmp_path, include_crds=True)
    for path in files:
        crd = yaml.safe_load(path.read_text())
        assert one(rendered, "CustomResourceDefinition", crd["metadata"]["name"]) == crd
    run_helm(helm, "package", str(CHART), "--destination", str(tmp_path))
    with tarfile.open(tmp_path / "gpupod-operator-0.1.0.tgz") as tar:
        names = tar.getnames()
        for path in files:
            member = tar.extractfile(f"gpupod-operator/crds/{path.name}")
            assert member is not None
            assert member.read() == path.read_bytes()
    assert sorted(n for n in names if "/crds/" in n) == [
        f"gpupod-operator/crds/{p.name}" for p in files
    ]
    assert "gpupod-operator/values.schema.json" in names


# --------------------------------------------------------------------------- the real API server


def kubectl_apply(cp: ControlPlane, docs: list[Doc], *, dry_run: bool) -> str:
    """Server-side apply with strict field validation; the output (dry run: nothing persists).
    Conflicts are forced: field ownership (the CRD is already applied by the ``crds`` fixture)
    says nothing about whether the API server accepts the objects."""
    stream = io.StringIO()
    yaml.safe_dump_all(docs, stream)
    args = ["apply", "--server-side", "--force-conflicts", "--field-manager=helm-test"]
    args += ["--validate=strict", "-f", "-"]
    if dry_run:
        args.insert(1, "--dry-run=server")
    result = cp.kubectl(*args, input=stream.getvalue())
    assert "Warning" not in result.stderr, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def service_monitor_crd(control_plane: ControlPlane) -> None:
    kubectl_apply(control_plane, [SERVICE_MONITOR_CRD], dry_run=False)
    control_plane.wait_crd_established(SERVICE_MONITOR_CRD["metadata"]["name"])


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def test_rendered_manifests_are_accepted_by_the_api_server(
    helm: Path,
    tmp_path: Path,
    control_plane: ControlPlane,
    crds: list[str],
    service_monitor_crd: None,
) -> None:
    release_ns = control_plane.create_namespace(unique("helm-dry"))
    watched = [control_plane.create_namespace(unique("team")) for _ in range(2)]
    for values in ({}, {**ALL_OPTIONS, "watchNamespaces": watched}):
        docs = template(
            helm,
            tmp_path,
            values,
            release=unique("dry"),
            namespace=release_ns,
            include_crds=True,
            api_versions=(MAP_API,),  # as `helm install` renders it on this server
        )
        assert set(FINALIZER_KINDS) <= set(kinds(docs))
        out = kubectl_apply(control_plane, docs, dry_run=True)
        for doc in docs:
            kind = doc["kind"].lower()
            assert re.search(rf"^{kind}[./][^ ]*{doc['metadata']['name']} ", out, re.M), (
                f"{doc['kind']} {doc['metadata']['name']} missing in: {out}"
            )
    # Nothing persisted by the dry runs (the CRD was installed by the `crds` fixture).
    assert not control_plane.request("GET", f"/apis/apps/v1/namespaces/{release_ns}/deployments")[
        "items"
    ]


def test_pod_template_meets_the_restricted_pod_security_standard(
    helm: Path, tmp_path: Path, control_plane: ControlPlane
) -> None:
    """The API server's PodSecurity admission, enforcing `restricted`, admits the operator's pod
    (dry run: no kubelet here) and refuses a pod without the chart's securityContext."""
    ns = control_plane.create_namespace(
        unique("psa-restricted"),
        labels={
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
        },
    )
    docs = template(helm, tmp_path, ALL_OPTIONS, namespace=ns)
    # ServiceAccount admission (on, as in any cluster) refuses a pod whose SA does not exist:
    # the chart's own SA first, as `helm install` creates it.
    kubectl_apply(control_plane, [one(docs, "ServiceAccount")], dry_run=False)
    deployment = one(docs, "Deployment")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "operator", "namespace": ns},
        "spec": deployment["spec"]["template"]["spec"],
    }
    path = f"/api/v1/namespaces/{ns}/pods?dryRun=All"
    control_plane.request("POST", path, pod)
    loose = json.loads(json.dumps(pod))
    del loose["spec"]["containers"][0]["securityContext"]
    with pytest.raises(ApiError) as refused:
        control_plane.request("POST", path, loose)
    assert refused.value.status == 403 and "restricted" in refused.value.message


# --------------------------------------------------------------------------- RBAC, for real


class Identity:
    """The chart's ServiceAccount, applied for real with its RBAC objects from the rendering."""

    def __init__(self, cp: ControlPlane, docs: list[Doc], kubeconfig: Path) -> None:
        self.cp = cp
        self.docs = docs
        self.kubeconfig = kubeconfig
        token = read_kubeconfig(kubeconfig).token
        assert token
        self.token = token

    def status(self, method: str, path: str, body: Any = None) -> int:
        """The HTTP status of one request as this identity."""
        try:
            self.cp.request(method, path, body, token=self.token, timeout=10)
        except ApiError as exc:
            return exc.status
        return 200

    def can_i(self, *args: str) -> bool:
        result = self.cp.kubectl("auth", "can-i", *args, kubeconfig=self.kubeconfig, check=False)
        answer = result.stdout.strip()
        assert answer in ("yes", "no"), result.stderr
        return answer == "yes"


RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")


def install_identity(
    helm: Path, tmp_path: Path, cp: ControlPlane, release_ns: str, values: Doc
) -> tuple[Identity, Doc]:
    """Render the chart, apply only its ServiceAccount and RBAC objects for real (no kubelet:
    the Deployment could not run here), mint a token for that ServiceAccount."""
    docs = template(helm, tmp_path, values, release=unique("op"), namespace=release_ns)
    rbac = [d for d in docs if d["kind"] in RBAC_KINDS]
    kubectl_apply(cp, rbac, dry_run=False)
    account = one(docs, "ServiceAccount")["metadata"]["name"]
    kubeconfig = cp.service_account_kubeconfig(release_ns, account, tmp_path / "sa.kubeconfig")
    return Identity(cp, rbac, kubeconfig), container(docs)


def start_as_chart(
    start_operator: StartOperator,
    identity: Identity,
    chart_container: Doc,
    tmp_path: Path,
    key: str,
) -> tuple[OperatorProcess, str]:
    """The operator process with the chart's own container arguments, the API key as a file
    (YOTTA_API_KEY_FILE, as the chart mounts it) and the ServiceAccount's token. Only the
    ports change: free loopback ones instead of the pod's."""
    args = list(chart_container["args"])
    assert args[0] == "run"
    metrics_port = free_port()
    args = [
        a
        for a in args[1:]
        if not a.startswith(("--liveness=", "--metrics-port=", "--metrics-addr="))
    ]
    args += [f"--metrics-port={metrics_port}", "--metrics-addr=127.0.0.1"]
    key_file = tmp_path / "api-key"
    key_file.write_text(key + "\n")
    key_file.chmod(0o400)
    env = {e["name"]: e.get("value") for e in chart_container["env"]}
    assert env["YOTTA_API_KEY_FILE"] == f"{API_KEY_MOUNT}/api-key"
    # The downward API's values, as the kubelet would fill them in for the chart's Pod.
    home = next(a.split("=", 1)[1] for a in args if a.startswith("--leader-election-namespace="))
    downward = {"POD_NAME": CHART_POD, "POD_NAMESPACE": home, "POD_UID": "uid-1"}
    assert set(downward) <= set(env)
    operator = start_operator(
        args=args,
        kubeconfig=identity.kubeconfig,
        env={"YOTTA_API_KEY": "", "YOTTA_API_KEY_FILE": str(key_file), **downward},
    )
    return operator, f"http://127.0.0.1:{metrics_port}/metrics"


CHART_POD = "gpupod-operator-5d8c7-abcde"


def create_secret(cp: ControlPlane, namespace: str, name: str, data: dict[str, str]) -> None:
    cp.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/secrets",
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data},
    )


def remote(sim: SimulatorProcess, pod_id: str) -> Doc:
    return next(p for p in sim.pods() if str(p["id"]) == pod_id)


def assert_no_permission_trouble(operator: OperatorProcess) -> None:
    log = operator.log_text()
    found = PERMISSION_TROUBLE.findall(log)
    assert not found, f"permission errors in the operator log: {found[:5]}\n{operator.log_tail()}"


@pytest.fixture(scope="module")
def rbac_plane(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlane]:
    """A control plane of their own for the RBAC tests: an operator run with -A serves every
    GpuPod of the cluster, and the shared one holds other tests' GpuPods."""
    plane = ControlPlane(tmp_path_factory.mktemp("rbac-plane"), bin_dir=control_plane.bin_dir)
    plane.start()
    try:
        plane.apply_crds(CRD_FILE.parent)
        yield plane
    finally:
        plane.stop()


@pytest.fixture
def release_namespace(rbac_plane: ControlPlane) -> str:
    """Where the chart is 'installed' (the operator's own namespace, not the GpuPods')."""
    return rbac_plane.create_namespace(unique("gpupod-system"))


@pytest.fixture
def tenant_namespace(rbac_plane: ControlPlane) -> str:
    """Where the tenant's GpuPods are."""
    return rbac_plane.create_namespace(unique("tenant"))


@pytest.fixture
def other_namespace(rbac_plane: ControlPlane) -> str:
    """A namespace with a GpuPod and a Secret the operator has no business with."""
    ns = rbac_plane.create_namespace(unique("other"))
    create_secret(rbac_plane, ns, "theirs", {"k": "v"})
    GpuPods(rbac_plane, ns).create("theirs", paused=True)
    return ns


def test_cluster_wide_rbac_runs_a_full_lifecycle_and_refuses_the_rest(
    helm: Path,
    tmp_path: Path,
    rbac_plane: ControlPlane,
    tenant_namespace: str,
    release_namespace: str,
    simulator: SimulatorProcess,
    start_operator: StartOperator,
) -> None:
    cp, ns = rbac_plane, tenant_namespace
    identity, chart_container = install_identity(
        helm, tmp_path, cp, release_namespace, {"logLevel": "DEBUG", "fastSyncInterval": 1}
    )
    assert "--all-namespaces" in chart_container["args"]
    operator, metrics_url = start_as_chart(
        start_operator, identity, chart_container, tmp_path, simulator.api_key
    )

    # A full lifecycle, env from a Secret included.
    pods = GpuPods(cp, ns)
    create_secret(cp, ns, "creds", {"token": "from-the-secret"})
    pods.create(
        "rbac",
        env=[{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}],
    )
    pod_id = pods.wait_phase("rbac", "Running")["podId"]
    assert {e["key"]: e["value"] for e in remote(simulator, pod_id)["environmentVars"]} == {
        "TOKEN": "from-the-secret"
    }
    assert pods.get("rbac")["metadata"]["finalizers"] == ["gpupod.dev/finalizer"]  # type: ignore[index]
    pods.patch_spec("rbac", paused=True)
    pods.wait_phase("rbac", "Paused")
    assert remote(simulator, pod_id)["status"] == "PAUSED"
    pods.patch_spec("rbac", paused=False)
    pods.wait_phase("rbac", "Running")
    pods.delete("rbac")
    pods.wait_gone("rbac")
    assert remote(simulator, pod_id)["status"] == "TERMINATED"
    assert not live_pods(simulator.pods(), f"{ns}-rbac-")
    reasons = pods.event_reasons("rbac")  # Events are best effort: prove they were allowed
    assert "Running" in reasons and "Pausing" in reasons and "Resuming" in reasons
    # A release on purpose is recorded in the release namespace (the orphans Role).
    pods.create("kept", deletionPolicy="Orphan")
    kept = pods.wait_phase("kept", "Running")["podId"]
    pods.delete("kept")
    pods.wait_gone("kept")
    released = cp.request(
        "GET", f"/api/v1/namespaces/{release_namespace}/configmaps/gpupod-released-pods"
    )
    assert [json.loads(v)["podId"] for v in released["data"].values()] == [kept]
    assert remote(simulator, kept)["status"] == "RUNNING"
    metrics = httpx.get(metrics_url, timeout=5).text
    assert "gpupod_remote_up" in metrics and "\ngpupod_leader 1.0\n" in metrics
    assert_no_permission_trouble(operator)
    # It led by the chart's Lease: created it, then renewed it (get + update by name).
    lease_name = next(
        a.split("=", 1)[1] for a in chart_container["args"] if a.startswith("--leader-election-id=")
    )
    leases = f"/apis/coordination.k8s.io/v1/namespaces/{release_namespace}/leases"
    lease = cp.request("GET", f"{leases}/{lease_name}")
    assert lease["spec"]["holderIdentity"] and lease["metadata"]["resourceVersion"]

    # What it needs, it may do...
    crd = "customresourcedefinitions.apiextensions.k8s.io"
    for allowed in (
        ("list", "gpupods.gpupod.dev", "--all-namespaces"),
        ("watch", "gpupods.gpupod.dev", "--all-namespaces"),
        ("patch", "gpupods.gpupod.dev", "-n", ns),
        ("patch", "gpupods.gpupod.dev", "--subresource=status", "-n", ns),
        ("get", "secrets/creds", "-n", ns),
        ("create", "events", "-n", ns),
        ("list", crd),
        ("watch", crd),
        ("get", f"leases.coordination.k8s.io/{lease_name}", "-n", release_namespace),
        ("update", f"leases.coordination.k8s.io/{lease_name}", "-n", release_namespace),
        ("create", "leases.coordination.k8s.io", "-n", release_namespace),
        ("get", "namespaces/kube-system"),
        ("get", "configmaps/gpupod-released-pods", "-n", release_namespace),
        ("patch", "configmaps/gpupod-released-pods", "-n", release_namespace),
        ("create", "configmaps", "-n", release_namespace),
        ("create", "events", "-n", release_namespace),
    ):
        assert identity.can_i(*allowed), f"the chart's identity cannot {allowed}"
    assert identity.status("GET", f"/api/v1/namespaces/{ns}/secrets/creds") == 200

    # ...and nothing else: each refusal is a real 403 from the API server.
    core, apps, gp = "/api/v1", "/apis/apps/v1", "/apis/gpupod.dev/v1alpha1"
    merge = {"metadata": {"labels": {"x": "y"}}}
    refused = {
        "list Secrets": ("GET", f"{core}/namespaces/{ns}/secrets", None),
        "watch Secrets": ("GET", f"{core}/namespaces/{ns}/secrets?watch=true", None),
        "list Secrets cluster-wide": ("GET", f"{core}/secrets", None),
        "update a Secret": ("PUT", f"{core}/namespaces/{ns}/secrets/creds", {"metadata": {}}),
        "create ConfigMaps": (
            "POST",
            f"{core}/namespaces/{ns}/configmaps",
            {"metadata": {"name": "x"}},
        ),
        "delete Pods": ("DELETE", f"{core}/namespaces/{ns}/pods/anything", None),
        "patch Deployments": ("PATCH", f"{apps}/namespaces/{ns}/deployments/anything", merge),
        "create GpuPods": ("POST", f"{gp}/namespaces/{ns}/gpupods", {"metadata": {"name": "x"}}),
        "delete GpuPods": ("DELETE", f"{gp}/namespaces/{ns}/gpupods/anything", None),
        "update GpuPods": ("PUT", f"{gp}/namespaces/{ns}/gpupods/anything", {"metadata": {}}),
        "read Events": ("GET", f"{core}/namespaces/{ns}/events", None),
        "delete Events": ("DELETE", f"{core}/namespaces/{ns}/events/anything", None),
        "patch the CRD": ("PATCH", f"/apis/apiextensions.k8s.io/v1/{crd.split('.')[0]}/x", merge),
        "list Namespaces": ("GET", f"{core}/namespaces", None),
        "get another ConfigMap": (
            "GET",
            f"{core}/namespaces/{release_namespace}/configmaps/kube-root-ca.crt",
            None,
        ),
        "create RoleBindings": (
            "POST",
            f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
            {"metadata": {"name": "x"}},
        ),
        "list Leases": ("GET", leases, None),
        "watch Leases": ("GET", f"{leases}?watch=true", None),
        "get another Lease": ("GET", f"{leases}/kube-scheduler", None),
        "update another Lease": ("PUT", f"{leases}/other", {"metadata": {"name": "other"}}),
        "patch the Lease": ("PATCH", f"{leases}/{lease_name}", merge),
        "delete the Lease": ("DELETE", f"{leases}/{lease_name}", None),
        "create Leases elsewhere": (
            "POST",
            f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases",
            {"metadata": {"name": lease_name}},
        ),
        "create tokens": (
            "POST",
            f"{core}/namespaces/{release_namespace}/serviceaccounts/x/token",
            {"spec": {}},
        ),
    }
    answers = {what: identity.status(*request) for what, request in refused.items()}
    assert answers == dict.fromkeys(refused, 403)
    assert not identity.can_i("list", "secrets", "-n", ns)
    assert not identity.can_i("watch", "secrets", "-n", ns)
    assert not identity.can_i("create", "configmaps", "-n", ns)
    assert not identity.can_i("delete", "pods", "-n", ns)
    assert not identity.can_i("patch", "deployments.apps", "-n", ns)
    assert not identity.can_i("*", "*", "--all-namespaces")


def test_the_chart_identity_serves_yotta_and_cluster_yotta_accounts(
    helm: Path,
    tmp_path: Path,
    rbac_plane: ControlPlane,
    tenant_namespace: str,
    release_namespace: str,
    simulator: SimulatorProcess,
    start_operator: StartOperator,
) -> None:
    """Accounts under the chart's RBAC: a YottaAccount (Secret in the tenant's namespace) and
    a ClusterYottaAccount allowing the namespace by label (Secret in the release namespace);
    the in-use finalizers go on and come off, the accounts' status is written."""
    cp, ns = rbac_plane, tenant_namespace
    gp = "/apis/gpupod.dev/v1alpha1"
    cp.request("PATCH", f"/api/v1/namespaces/{ns}", {"metadata": {"labels": {"tier": "gold"}}})
    identity, chart_container = install_identity(helm, tmp_path, cp, release_namespace, {})
    key_ref = {"name": "yotta", "key": "api-key"}
    create_secret(cp, ns, "yotta", {"api-key": simulator.api_key})
    create_secret(cp, release_namespace, "yotta", {"api-key": simulator.api_key})
    account = {"apiVersion": "gpupod.dev/v1alpha1", "spec": {"apiKeySecretRef": key_ref}}
    cp.request(
        "POST",
        f"{gp}/namespaces/{ns}/yottaaccounts",
        {**account, "kind": "YottaAccount", "metadata": {"name": "team"}},
    )
    shared = unique("shared")
    cluster_spec = {"apiKeySecretRef": key_ref, "allowedNamespaces": {"selector": {}}}
    cluster_spec["allowedNamespaces"]["selector"] = {"matchLabels": {"tier": "gold"}}
    cp.request(
        "POST",
        f"{gp}/clusteryottaaccounts",
        {
            **account,
            "kind": "ClusterYottaAccount",
            "metadata": {"name": shared},
            "spec": cluster_spec,
        },
    )
    operator, _metrics = start_as_chart(
        start_operator, identity, chart_container, tmp_path, simulator.api_key
    )
    pods = GpuPods(cp, ns)
    pods.create("tenant", accountRef={"kind": "YottaAccount", "name": "team"})
    pods.create("shared", accountRef={"kind": "ClusterYottaAccount", "name": shared})
    assert pods.wait_phase("tenant", "Running")["account"]["name"] == "team"
    assert pods.wait_phase("shared", "Running")["account"]["kind"] == "ClusterYottaAccount"
    held = [
        f"{gp}/namespaces/{ns}/yottaaccounts/team",
        f"/api/v1/namespaces/{ns}/secrets/yotta",
        f"{gp}/clusteryottaaccounts/{shared}",
        f"/api/v1/namespaces/{release_namespace}/secrets/yotta",
    ]
    for path in held:
        assert "gpupod.dev/in-use" in cp.request("GET", path)["metadata"]["finalizers"], path
    status = cp.request("GET", held[0])["status"]
    assert status["gpuPods"] == 1 and status["conditions"][0]["status"] == "True"
    for name in ("tenant", "shared"):
        pods.delete(name)
    for name in ("tenant", "shared"):
        pods.wait_gone(name)
    for path in held:
        assert "gpupod.dev/in-use" not in (
            cp.request("GET", path)["metadata"].get("finalizers") or []
        ), path
    assert not live_pods(simulator.pods(), f"{ns}-")
    assert_no_permission_trouble(operator)


def test_namespaced_rbac_serves_its_namespace_and_nothing_outside(
    helm: Path,
    tmp_path: Path,
    rbac_plane: ControlPlane,
    tenant_namespace: str,
    release_namespace: str,
    other_namespace: str,
    simulator: SimulatorProcess,
    start_operator: StartOperator,
) -> None:
    cp, ns, other = rbac_plane, tenant_namespace, other_namespace
    identity, chart_container = install_identity(
        helm,
        tmp_path,
        cp,
        release_namespace,
        {"watchNamespaces": [ns], "logLevel": "DEBUG", "fastSyncInterval": 1},
    )
    assert f"--namespace={ns}" in chart_container["args"]
    assert {d["kind"] for d in identity.docs} == set(RBAC_KINDS)
    operator, _ = start_as_chart(
        start_operator, identity, chart_container, tmp_path, simulator.api_key
    )

    pods = GpuPods(cp, ns)
    create_secret(cp, ns, "creds", {"token": "t"})
    pods.create(
        "scoped",
        env=[{"name": "T", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}],
    )
    pod_id = pods.wait_phase("scoped", "Running")["podId"]
    pods.delete("scoped")
    pods.wait_gone("scoped")
    assert remote(simulator, pod_id)["status"] == "TERMINATED"
    assert "Running" in pods.event_reasons("scoped")
    # The GpuPod outside watchNamespaces was never touched (no finalizer, no status, no pod).
    theirs = GpuPods(cp, other).get("theirs")
    assert theirs is not None and not theirs["metadata"].get("finalizers")
    assert not theirs.get("status") and len(simulator.pods()) == 1
    assert_no_permission_trouble(operator)

    gp, core = "/apis/gpupod.dev/v1alpha1", "/api/v1"
    merge = {"metadata": {"annotations": {"gpupod.dev/x": "y"}}}
    refused = {
        "list GpuPods elsewhere": ("GET", f"{gp}/namespaces/{other}/gpupods", None),
        "list GpuPods cluster-wide": ("GET", f"{gp}/gpupods", None),
        "patch GpuPods elsewhere": ("PATCH", f"{gp}/namespaces/{other}/gpupods/theirs", merge),
        "patch status elsewhere": (
            "PATCH",
            f"{gp}/namespaces/{other}/gpupods/theirs/status",
            {"status": {"phase": "Lost"}},
        ),
        "get Secrets elsewhere": ("GET", f"{core}/namespaces/{other}/secrets/theirs", None),
        "create Events elsewhere": (
            "POST",
            f"{core}/namespaces/{other}/events",
            {"metadata": {"name": "x"}},
        ),
        "list Secrets here": ("GET", f"{core}/namespaces/{ns}/secrets", None),
        "watch Secrets here": ("GET", f"{core}/namespaces/{ns}/secrets?watch=true", None),
        "create ConfigMaps here": (
            "POST",
            f"{core}/namespaces/{ns}/configmaps",
            {"metadata": {"name": "x"}},
        ),
        "patch Namespaces": ("PATCH", f"{core}/namespaces/{ns}", merge),
        "patch GpuQuotas here": ("PATCH", f"{gp}/namespaces/{ns}/gpuquotas/q", merge),
        "create GpuTenantPolicies": ("POST", f"{gp}/gputenantpolicies", {"metadata": {}}),
        "patch GpuQuota status elsewhere": (
            "PATCH",
            f"{gp}/namespaces/{other}/gpuquotas/q/status",
            {"status": {}},
        ),
    }
    answers = {what: identity.status(*request) for what, request in refused.items()}
    assert answers == dict.fromkeys(refused, 403)
    # The policy check reads the labels of a GpuPod's namespace (get only, never list).
    assert identity.status("GET", f"{core}/namespaces/{ns}") == 200
    assert identity.status("GET", f"{core}/namespaces/{ns}/secrets/creds") == 200
    assert identity.status("GET", f"{gp}/namespaces/{ns}/gpupods") == 200
    assert identity.can_i("patch", "gpupods.gpupod.dev", "-n", ns)
    assert not identity.can_i("patch", "gpupods.gpupod.dev", "-n", other)
    assert not identity.can_i("get", "secrets", "-n", other)
