"""The chart's PrometheusRule, as rendered by helm, unit-tested with `promtool test rules`.

`make rules-test` installs promtool (Debian's prometheus package) when it is missing, so these
tests never skip there; run alone without promtool they fail with that hint.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from ..tools import render_one

ALERTS = {
    "GpuPodProviderDown",
    "GpuPodReconcileErrors",
    "GpuPodDeletionStuck",
    "GpuPodOrphans",
    "GpuPodQuotaExhausted",
}


@pytest.fixture(scope="module")
def rules_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rule = render_one("prometheusrule.yaml", "prometheusRule.enabled=true")
    assert rule["kind"] == "PrometheusRule"
    path = tmp_path_factory.mktemp("rules") / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    return path


def _case(
    series: dict[str, str], checks: list[tuple[str, str, list[dict[str, Any]]]]
) -> dict[str, Any]:
    return {
        "interval": "1m",
        "input_series": [{"series": s, "values": v} for s, v in series.items()],
        "alert_rule_test": [
            {"eval_time": at, "alertname": name, "exp_alerts": alerts}
            for at, name, alerts in checks
        ],
    }


def _alert(labels: dict[str, str], summary: str, description: str) -> dict[str, Any]:
    return {
        "exp_labels": labels,
        "exp_annotations": {"summary": summary, "description": description},
    }


PROVIDER_DOWN = _case(
    {
        'gpupod_remote_up{instance="leader:9090"}': "1 0x10",
        'gpupod_leader{instance="leader:9090"}': "1x10",
        # A standby never polls: its 0 is no outage.
        'gpupod_remote_up{instance="standby:9090"}': "0x10",
        'gpupod_leader{instance="standby:9090"}': "0x10",
    },
    [
        ("4m", "GpuPodProviderDown", []),
        (
            "7m",
            "GpuPodProviderDown",
            [
                _alert(
                    {"severity": "critical", "instance": "leader:9090"},
                    "The Yotta API has not answered the operator's polls",
                    "The bulk status poll of leader:9090 has failed for 5m: GpuPod statuses "
                    "are stale and creates wait.",
                )
            ],
        ),
    ],
)

RECONCILE_ERRORS = _case(
    {
        # 6 a minute = 0.1/s (above 0.05), 1 a minute (below).
        'gpupod_reconcile_errors_total{instance="a",reason="SecretNotFound"}': "0+6x40",
        'gpupod_reconcile_errors_total{instance="a",reason="Conflict"}': "0+1x40",
    },
    [
        ("5m", "GpuPodReconcileErrors", []),
        (
            "25m",
            "GpuPodReconcileErrors",
            [
                _alert(
                    {"severity": "warning", "reason": "SecretNotFound"},
                    "GpuPod reconciles keep failing",
                    "100m reconcile errors per second with reason SecretNotFound (the "
                    "GpuPods' Events say which and why).",
                )
            ],
        ),
    ],
)

DELETION_STUCK = _case(
    {'gpupod_deletion_oldest_age_seconds{instance="a"}': "0 300 590 620 0"},
    [
        ("2m", "GpuPodDeletionStuck", []),
        (
            "3m",
            "GpuPodDeletionStuck",
            [
                _alert(
                    {"severity": "warning"},
                    "A GpuPod deletion has waited too long for its remote pod",
                    "The oldest GpuPod being deleted has waited 10m 20s; its finalizer stays "
                    "until the remote pod is confirmed gone.",
                )
            ],
        ),
        ("4m", "GpuPodDeletionStuck", []),  # it went through
    ],
)

ORPHANS = _case(
    {'gpupod_orphan_pods{instance="a"}': "0 1x30"},
    [
        ("10m", "GpuPodOrphans", []),
        (
            "17m",
            "GpuPodOrphans",
            [
                _alert(
                    {"severity": "warning"},
                    "Remote pods no GpuPod owns (they may still cost money)",
                    "1 remote pods on the Yotta account belong to no GpuPod.",
                )
            ],
        ),
    ],
)

QUOTA = _case(
    {
        'gpupod_quota_used{instance="a",namespace="team-a",resource="gpus"}': "4x10",
        'gpupod_quota_hard{instance="a",namespace="team-a",resource="gpus"}': "4x10",
        'gpupod_quota_used{instance="a",namespace="team-b",resource="gpus"}': "2x10",
        'gpupod_quota_hard{instance="a",namespace="team-b",resource="gpus"}': "4x10",
        # A zero quota is a deliberate "none here", not an exhausted one.
        'gpupod_quota_used{instance="a",namespace="team-c",resource="gpus"}': "0x10",
        'gpupod_quota_hard{instance="a",namespace="team-c",resource="gpus"}': "0x10",
        # Scraped through a ServiceMonitor, the metric's namespace becomes exported_namespace.
        'gpupod_quota_used{exported_namespace="team-d",namespace="ops",resource="pods"}': "3x10",
        'gpupod_quota_hard{exported_namespace="team-d",namespace="ops",resource="pods"}': "3x10",
    },
    [
        ("3m", "GpuPodQuotaExhausted", []),
        (
            "6m",
            "GpuPodQuotaExhausted",
            [
                _alert(
                    {
                        "severity": "info",
                        "instance": "a",
                        "namespace": "team-a",
                        "resource": "gpus",
                    },
                    "A namespace has used up its GpuPod quota",
                    "Namespace team-a uses all of its gpus quota: new GpuPods there wait.",
                ),
                _alert(
                    {
                        "severity": "info",
                        "exported_namespace": "team-d",
                        "namespace": "ops",
                        "resource": "pods",
                    },
                    "A namespace has used up its GpuPod quota",
                    "Namespace team-d uses all of its pods quota: new GpuPods there wait.",
                ),
            ],
        ),
    ],
)

CASES = [PROVIDER_DOWN, RECONCILE_ERRORS, DELETION_STUCK, ORPHANS, QUOTA]


def test_rules_are_valid(promtool: str, rules_file: Path) -> None:
    checked = subprocess.run(
        [promtool, "check", "rules", str(rules_file)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    names = {
        r["alert"] for g in yaml.safe_load(rules_file.read_text())["groups"] for r in g["rules"]
    }
    assert names == ALERTS


def test_every_alert_fires_when_it_should_and_only_then(
    promtool: str, rules_file: Path, tmp_path: Path
) -> None:
    fired = {
        check["alertname"]
        for case in CASES
        for check in case["alert_rule_test"]
        if check["exp_alerts"]
    }
    assert fired == ALERTS  # each alert has a firing case (and the cases a quiet one)
    tests = tmp_path / "tests.yaml"
    tests.write_text(
        yaml.safe_dump(
            {"rule_files": [str(rules_file)], "evaluation_interval": "1m", "tests": CASES}
        )
    )
    result = subprocess.run([promtool, "test", "rules", str(tests)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
