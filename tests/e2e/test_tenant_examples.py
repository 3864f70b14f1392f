"""README "Hand GPUs to tenants", top to bottom, with the files in examples/ and the commands
the README shows, on the real API server with the chart's admission policy and tenant roles,
the operator and the simulator.

The only change to the files: the policy's namespace (team-a in the README) is this test's
namespace, since namespaces are shared by the tests of a session. Namespaced examples are
applied with `-n`, exactly as the README says.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpupod_operator.devenv.controlplane import ControlPlane
from gpupod_operator.devenv.simulator_process import SimulatorProcess

from .conftest import REPO_ROOT, StartOperator
from .gpupods import GpuPods, wait_for
from .test_helm import helm
from .test_tenant_policy import POLICIES, admission_policy
from .test_tenant_rbac import tenant_roles

pytestmark = pytest.mark.e2e
__all__ = ["admission_policy", "helm", "tenant_roles"]  # fixtures used by this module

EXAMPLES = REPO_ROOT / "examples"
README = (REPO_ROOT / "README.md").read_text()
_START = README.index("## Hand GPUs to tenants")
SECTION = README[_START : README.index("\n## ", _START + 1)]  # up to the next section
# Without "Accounts": tests/e2e/test_accounts.py runs that subsection's commands as written.
_ACCOUNTS = SECTION[SECTION.index("### Accounts\n") :]
SECTION = SECTION.replace(_ACCOUNTS[: _ACCOUNTS.index("\n### ", 1)], "")
Doc = dict[str, Any]


def test_every_example_the_section_names_exists_and_is_applied_here() -> None:
    named = {
        line.split("examples/")[1].split()[0]
        for line in SECTION.splitlines()
        if "-f examples/" in line
    }
    assert named == {
        "tenant-policy.yaml",
        "tenant-quota.yaml",
        "tenant-rbac.yaml",
        "tenant-gpupod.yaml",
    }
    for name in named:
        assert (EXAMPLES / name).is_file(), name
        assert name in Path(__file__).read_text()


def test_the_readme_walkthrough_with_the_example_files(
    control_plane: ControlPlane,
    admission_policy: str,
    tenant_roles: list[str],
    namespace: str,
    simulator: SimulatorProcess,
    start_operator: StartOperator,
) -> None:
    cp = control_plane
    policy: Doc = yaml.safe_load((EXAMPLES / "tenant-policy.yaml").read_text())
    assert policy["spec"]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "team-a"
    }
    policy["metadata"]["name"] = namespace
    policy["spec"]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] = namespace
    cp.kubectl("apply", "-f", "-", input=json.dumps(policy))
    try:
        cp.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / "tenant-quota.yaml"))
        cp.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / "tenant-rbac.yaml"))
        start_operator()

        # kubectl auth can-i, as the README shows it.
        def can_i(*args: str) -> str:
            out = cp.kubectl("auth", "can-i", *args, "-n", namespace, "--as=alice", check=False)
            return out.stdout.strip()

        assert can_i("create", "gpupods") == "yes"
        assert can_i("update", "gpuquotas") == "no"
        # ResourceQuota counts GpuPods once kube-controller-manager has synced it.
        wait_for(
            lambda: (
                "count/gpupods.gpupod.dev"
                in (
                    cp.request("GET", f"/api/v1/namespaces/{namespace}/resourcequotas/gpupods").get(
                        "status"
                    )
                    or {}
                ).get("hard", {})
            ),
            60,
            "the ResourceQuota to be counted",
        )
        # alice applies the example GpuPod: within the policy and the quota, it runs.
        out = cp.kubectl(
            "apply", "-n", namespace, "-f", str(EXAMPLES / "tenant-gpupod.yaml"), "--as=alice"
        )
        assert "gpupod.gpupod.dev/train-1 created" in out.stdout
        pods = GpuPods(cp, namespace)
        pods.wait_phase("train-1", "Running")
        # The README's denied example: 8 GPUs in team-a.
        big: Doc = yaml.safe_load((EXAMPLES / "tenant-gpupod.yaml").read_text())
        big["metadata"]["name"] = "big"
        big["spec"]["gpuCount"] = 8
        denied = cp.kubectl(
            "apply", "-n", namespace, "-f", "-", "--as=alice", input=json.dumps(big), check=False
        )
        assert denied.returncode != 0
        assert "denied request: " in denied.stderr and "ValidatingAdmissionPolicy" in denied.stderr
        print(f"DENIED {denied.stderr.strip()}")
        assert (
            f"spec.gpuCount 8 exceeds the limit in namespace {namespace}: GpuTenantPolicy "
            f"{namespace} allows at most 2 GPUs per pod; lower spec.gpuCount"
        ) in denied.stderr
        # The quota: 4 GPUs. Three more 1-GPU pods fit, the fifth waits with used/hard.
        for i in range(4):
            more = yaml.safe_load((EXAMPLES / "tenant-gpupod.yaml").read_text())
            more["metadata"]["name"] = f"train-{i + 2}"
            cp.kubectl("apply", "-n", namespace, "-f", "-", "--as=alice", input=json.dumps(more))
        for i in range(3):
            pods.wait_phase(f"train-{i + 2}", "Running")
        synced = wait_for(
            lambda: (
                (c := pods.condition("train-5", "Synced")).get("reason") == "QuotaExceeded" and c
            ),
            30,
            "train-5 waiting for quota",
        )
        assert "gpus 4/4 used (this GpuPod needs 1)" in synced["message"]
        quota = cp.kubectl("get", "gpuquota", "-n", namespace, "--as=alice").stdout
        assert quota.split("\n")[0].split()[:8] == [
            "NAME",
            "GPUS",
            "MAX",
            "GPUS",
            "PODS",
            "MAX",
            "PODS",
            "PRICE/H",
        ]
        row = quota.split("\n")[1].split()
        assert row[:6] == ["team-a", "4", "4", "4", "4", "1.80"], quota
        # GpuPod objects are capped by the ResourceQuota (10) by the API server itself.
        for i in range(5):
            extra = yaml.safe_load((EXAMPLES / "tenant-gpupod.yaml").read_text())
            extra["metadata"]["name"] = f"extra-{i}"
            cp.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(extra))
        refused = cp.kubectl(
            "apply",
            "-n",
            namespace,
            "-f",
            "-",
            check=False,
            input=json.dumps({**extra, "metadata": {"name": "eleventh"}}),
        )
        assert refused.returncode != 0 and "exceeded quota: gpupods" in refused.stderr, (
            refused.stderr
        )
        assert sum(simulator.stats()["requests"].get("create", {}).values()) == 4
        # status.spend: the GpuPods' cost.accrued added up (an earlier view: at most now's).
        quota_path = f"/apis/gpupod.dev/v1alpha1/namespaces/{namespace}/gpuquotas/team-a"
        spend = wait_for(
            lambda: (
                (v := (cp.request("GET", quota_path).get("status") or {}).get("spend"))
                and Decimal(v) > 0
                and Decimal(v)
            ),
            60,
            "status.spend",
        )
        accrued = [
            Decimal(a)
            for o in pods.all().values()
            if (a := ((o.get("status") or {}).get("cost") or {}).get("accrued"))
        ]
        assert 0 < spend <= sum(accrued, Decimal(0))
    finally:
        cp.request("DELETE", f"{POLICIES}/{namespace}")
