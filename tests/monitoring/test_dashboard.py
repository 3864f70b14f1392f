"""The chart's Grafana dashboard, rendered by helm, checked without Grafana or a cluster: a
ConfigMap the sidecar picks up, valid JSON, every query valid PromQL (promtool) and naming only
series the operator exports. tests/node/test_chart.py runs each query against a real Prometheus.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from gpupod_operator.controller.metrics import Metrics

from ..node.prometheus import panel_queries
from ..tools import render_one


@pytest.fixture(scope="module")
def queries() -> dict[str, str]:
    configmap = render_one("grafana-dashboard.yaml", "grafanaDashboard.enabled=true")
    assert configmap["kind"] == "ConfigMap"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    (name, text), *others = configmap["data"].items()
    assert name.endswith(".json") and not others
    dashboard = json.loads(text)
    assert dashboard["uid"] == "gpupod-operator"
    return panel_queries(dashboard)


def _exported() -> set[str]:
    """The series names of the operator's metrics (a counter's carry `_total`)."""
    registry = CollectorRegistry()
    Metrics(registry)
    return {
        f"{family.name}_total" if family.type == "counter" else family.name
        for family in registry.collect()
    }


def test_every_query_is_valid_promql(
    promtool: str, queries: dict[str, str], tmp_path: Path
) -> None:
    assert len(queries) >= 10
    rules = [
        {"record": f"dashboard:panel_{i}", "expr": expr} for i, expr in enumerate(queries.values())
    ]
    path = tmp_path / "queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_query_names_series_the_operator_exports(queries: dict[str, str]) -> None:
    exported = _exported()
    for title, expr in queries.items():
        named = set(re.findall(r"\bgpupod_[a-z_]+", expr))
        assert named, f"{title}: no gpupod_* series in {expr}"
        assert named <= exported, f"{title}: {named - exported} not exported"
