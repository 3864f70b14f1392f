"""The bench's rendering (scaling table, console lines) and its py-spy stack reader."""

from __future__ import annotations

from typing import Any

from bench.profiling import area_of, parse_collapsed, short_frame, summarize_profile
from bench.report import fmt, fmt_map, scaling_table, summary_lines, targets_lines


def result(n: int, ratio: float, rss: float) -> dict[str, Any]:
    return {
        "n": n,
        "flags": {"operator_args": [], "log_level": "INFO"},
        "create": {
            "seconds_all_running": 9.5,
            "latency": {"p50": 5.0, "p95": 7.25, "max": 7.5},
        },
        "floor": {"seconds": 2.0},
        "ratio_to_floor": ratio,
        "remote_calls": {"per_gpupod": {"create": 1.0, "delete": 1.0, "get": 2.0}},
        "kube": {"operator_writes_per_gpupod": {"events": 3.0, "gpupods": 3.0}},
        "operator": {"peak_rss_mib": rss, "cpu_seconds": 6.25},
        "steady": {"remote_calls_per_min": 2.0},
        "checks": {"remote_creates": n, "distinct_pod_ids": n, "live_remote_pods_at_end": 0},
    }


def test_scaling_table_has_one_row_per_run() -> None:
    table = scaling_table([result(100, 2.5, 90.0), result(1000, 4.75, 210.4)])
    lines = table.splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("| N |") and "ratio" in lines[0]
    assert lines[1].count("|") == lines[0].count("|")
    row = lines[3]
    assert row.startswith("| 1000 |")
    assert "5.00 / 7.25 / 7.50" in row
    assert "4.75x" in row
    assert "create 1.00, delete 1.00, get 2.00" in row
    assert "| 210 |" in row and "| 6.2 |" in row


def test_scaling_table_missing_values_are_dashes() -> None:
    table = scaling_table([{"n": 5}])
    assert table.splitlines()[2] == "| 5 | - | - | - | - | - | - | - | - | - |"


def test_fmt() -> None:
    assert fmt(None) == "-"
    assert fmt(True) == "yes"
    assert fmt(1.23456, 3) == "1.235"
    assert fmt(7) == "7"
    assert fmt_map({"a": 1.0, "b": 0.5}) == "a 1.00, b 0.50"
    assert fmt_map({}) == "-"


def test_summary_and_targets() -> None:
    data = result(200, 4.0, 104.0)
    data["restart"] = {"seconds_to_live": 2.0, "remote_calls": {"list": 1}}
    lines = summary_lines(data)
    assert any(line.startswith("restart with N Running: live 2.0s") for line in lines)
    assert lines[0].startswith("== bench N=200 (operator flags: defaults")
    assert any("ratio 4.00x" in line for line in lines)
    targets = targets_lines(result(200, 2.0, 250.0))
    assert targets[0].endswith("met") and "NOT" not in targets[0]
    assert targets[1].endswith("met")
    assert targets[2].endswith("NOT met")


SITE = "/venv/lib/python3.11/site-packages"
LIB = "/usr/lib/python3.11"
ROOT = f"<module> (/venv/bin/gpupod-operator:8);main ({SITE}/gpupod_operator/cli.py:110)"
LOOP = f"_run_once ({LIB}/asyncio/base_events.py:1922)"
STACKS = [
    f"{ROOT};{LOOP};_process_event ({SITE}/kopf/_core/reactor/processing.py:100);"
    f"dumps ({LIB}/json/__init__.py:231) 30",
    f"{ROOT};{LOOP};reconcile ({SITE}/gpupod_operator/controller/reconciler.py:264) 10",
    f"{ROOT};select ({LIB}/selectors.py:468) 60",
    "",
    "not a stack line",
]


def test_parse_and_summarize_collapsed_stacks() -> None:
    stacks = parse_collapsed(STACKS)
    assert [count for _, count in stacks] == [30, 10, 60]
    summary = summarize_profile(stacks, top=5)
    assert summary.samples == 100
    self_area = dict(summary.self_by_area)
    assert self_area == {"json": 30, "operator": 10, "event loop": 60}
    inclusive = dict(summary.inclusive_by_area)
    assert inclusive["entry point"] == 100  # cli.main is on every stack
    assert inclusive["operator"] == 10
    assert inclusive["kopf"] == 30
    assert summary.self_top[0] == ("select (selectors.py)", 60)
    assert ("reconcile (gpupod_operator/controller/reconciler.py)", 10) in summary.self_top
    attribution = dict(summary.attribution)
    assert attribution["kopf: event processing (diffs, causes, storage)"] == 30, attribution
    assert attribution["operator: reconciler / domain (pure)"] == 10
    assert attribution["other (event loop, selectors, GC)"] == 60
    rendered = summary.render()
    assert "100 samples" in rendered and "60.0%" in rendered
    assert summary.to_json()["self_by_area"][0]["pct"] == 60.0


def test_frame_helpers() -> None:
    frame = "patch_obj (/work/.venv/lib/python3.11/site-packages/kopf/_cogs/clients/patching.py:42)"
    assert short_frame(frame) == "patch_obj (kopf/_cogs/clients/patching.py)"
    assert area_of(frame) == "kopf"
    assert area_of("load (/usr/lib/python3.11/json/__init__.py:1)") == "json"
    assert area_of("SSLObject.read (ssl.py:921)") == "ssl"
    assert area_of("request (httpcore/_async/connection_pool.py:2)") == "httpx"
    assert area_of("f (somewhere/else.py:1)") == "other"
    assert short_frame("weird frame") == "weird frame"
    editable = "reconcile (/work/main/operator/gpupod_operator/controller/reconciler.py:9)"
    assert short_frame(editable) == "reconcile (gpupod_operator/controller/reconciler.py)"
    assert short_frame(f"_run_once ({LIB}/asyncio/base_events.py:1)") == (
        "_run_once (asyncio/base_events.py)"
    )
