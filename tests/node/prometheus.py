"""A real Prometheus (Debian's `prometheus` binary) scraping one target, and the check that
every query of the chart's Grafana dashboard returns a series from it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import httpx
import yaml

from gpupod_operator.devenv.process import ManagedProcess, free_port

from ..e2e.gpupods import wait_for


class Prometheus:
    def __init__(self, run_dir: Path, target: str, interval: str = "1s") -> None:
        binary = shutil.which("prometheus")
        assert binary, "prometheus missing: apt-get install prometheus (make node-e2e does)"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "scrape_configs": [
                {"job_name": "gpupod-operator", "static_configs": [{"targets": [target]}]}
            ],
        }
        (run_dir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.process = ManagedProcess(
            "prometheus",
            [
                binary,
                f"--config.file={run_dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={run_dir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            log_path=run_dir / "prometheus.log",
        )

    def start(self) -> Prometheus:
        self.process.start()
        self.process.wait_ready(lambda: httpx.get(f"{self.url}/-/ready").status_code == 200, 60)
        return self

    def stop(self) -> None:
        self.process.stop()

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = answer.json()
        assert body["status"] == "success", f"{expr}: {body}"
        return list(body["data"]["result"])


def panel_queries(dashboard: dict[str, Any]) -> dict[str, str]:
    """Panel title -> query, for every target of every panel (rows' nested panels too)."""
    queries: dict[str, str] = {}
    panels = list(dashboard["panels"])
    while panels:
        panel = panels.pop()
        panels.extend(panel.get("panels", []))
        for target in panel.get("targets", []):
            queries[f"{panel['title']} [{target['refId']}]"] = target["expr"]
    return queries


def assert_every_panel_has_data(prometheus: Prometheus, dashboard_json: str) -> dict[str, int]:
    """Wait (a rate needs two scrapes) until each panel's query returns a series; fail with
    the panels that never did. The series count per panel."""
    queries = panel_queries(json.loads(dashboard_json))
    assert queries, "the dashboard has no queries"
    wait_for(lambda: prometheus.query('up{job="gpupod-operator"} == 1') or None, 60, "a scrape")
    found: dict[str, int] = {}

    def all_answer() -> bool | None:
        for title, expr in queries.items():
            found[title] = len(prometheus.query(expr))
        return all(found.values()) or None

    try:
        wait_for(all_answer, 60, "every panel's query to return a series")
    except AssertionError:
        empty = {t: queries[t] for t, n in found.items() if not n}
        raise AssertionError(f"panels without data: {empty}") from None
    return found
