"""Pure rendering: the console summary of one run and the markdown scaling table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def fmt_map(values: Mapping[str, Any] | None, digits: int = 2) -> str:
    """{"create": 1.0, "list": 0.05} -> "create 1.00, list 0.05" (empty -> "-")."""
    if not values:
        return "-"
    return ", ".join(f"{k} {fmt(v, digits)}" for k, v in values.items())


def _get(data: Mapping[str, Any], path: str) -> Any:
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


TABLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("N", "n"),
    ("apply→Running p50 / p95 / max (s)", "create.latency"),
    ("total to all Running (s)", "create.seconds_all_running"),
    ("floor (s)", "floor.seconds"),
    ("ratio", "ratio_to_floor"),
    ("remote calls / GpuPod", "remote_calls.per_gpupod"),
    ("K8s writes / GpuPod", "kube.operator_writes_per_gpupod"),
    ("peak RSS (MiB)", "operator.peak_rss_mib"),
    ("CPU (s)", "operator.cpu_seconds"),
    ("steady remote calls/min", "steady.remote_calls_per_min"),
)


def _cell(result: Mapping[str, Any], path: str) -> str:
    value = _get(result, path)
    if path == "create.latency":
        if not isinstance(value, Mapping):
            return "-"
        return " / ".join(fmt(value.get(k)) for k in ("p50", "p95", "max"))
    if isinstance(value, Mapping):
        return fmt_map(value)
    if path == "ratio_to_floor" and isinstance(value, float):
        return f"{value:.2f}x"
    if path == "operator.peak_rss_mib" and isinstance(value, float):
        return f"{value:.0f}"
    if path == "operator.cpu_seconds" and isinstance(value, float):
        return f"{value:.1f}"
    return fmt(value)


def scaling_table(results: Sequence[Mapping[str, Any]]) -> str:
    """A markdown table, one row per run, in the order given."""
    header = "| " + " | ".join(title for title, _ in TABLE_COLUMNS) + " |"
    rule = "|" + "|".join("---:" if i < 5 else "---" for i in range(len(TABLE_COLUMNS))) + "|"
    rows = [
        "| " + " | ".join(_cell(r, path).replace("|", "\\|") for _, path in TABLE_COLUMNS) + " |"
        for r in results
    ]
    return "\n".join([header, rule, *rows])


def summary_lines(result: Mapping[str, Any]) -> list[str]:
    """The console summary of one run."""
    n = result.get("n")
    create = result.get("create") or {}
    delete = result.get("delete") or {}
    floor = result.get("floor") or {}
    checks = result.get("checks") or {}
    operator = result.get("operator") or {}
    steady = result.get("steady") or {}
    kube = result.get("kube") or {}
    remote = result.get("remote_calls") or {}
    latency = create.get("latency") or {}
    dlatency = delete.get("latency") or {}
    flags = result.get("flags") or {}
    operator_flags = " ".join(flags.get("operator_args") or []) or "defaults"
    if flags.get("experiments"):
        operator_flags += f"; experiments {','.join(flags['experiments'])}"
    lines = [
        f"== bench N={n} (operator flags: {operator_flags}, log level {flags.get('log_level')})",
        f"apply (client): {fmt(_get(result, 'apply.client_seconds'))}s for {n} POSTs "
        f"(per POST p50 {fmt(_get(result, 'apply.per_request.p50'), 3)}s)",
        f"apply→Running: p50 {fmt(latency.get('p50'))}s  p95 {fmt(latency.get('p95'))}s  "
        f"max {fmt(latency.get('max'))}s; all Running after "
        f"{fmt(create.get('seconds_all_running'))}s ({fmt(create.get('throughput_per_s'))}/s)",
        f"floor: {fmt(floor.get('seconds'))}s  ->  ratio {fmt(result.get('ratio_to_floor'))}x",
        f"delete→gone: p50 {fmt(dlatency.get('p50'))}s  p95 {fmt(dlatency.get('p95'))}s  "
        f"max {fmt(dlatency.get('max'))}s; all gone after {fmt(delete.get('seconds_all_gone'))}s",
        f"remote calls / GpuPod: {fmt_map(remote.get('per_gpupod'), 3)}",
        f"K8s writes / GpuPod (operator): {fmt_map(kube.get('operator_writes_per_gpupod'), 3)}",
        f"K8s reads (operator, whole run): {fmt_map(kube.get('operator_reads'), 0)}",
        f"watch events / GpuPod: {fmt_map(result.get('watch_events_per_gpupod'), 2)}",
        f"operator: peak RSS {fmt(operator.get('peak_rss_mib'), 1)} MiB, "
        f"CPU {fmt(operator.get('cpu_seconds'), 1)}s",
        f"settle (all Running -> operator quiet): "
        f"{fmt(_get(result, 'settle.seconds_to_quiet_after_all_running'))}s; K8s writes "
        f"{fmt(_get(result, 'settle.kube_writes'))} "
        f"({fmt_map(_get(result, 'settle.kube_requests'), 0)})",
        f"steady state ({fmt(steady.get('window_seconds'), 0)}s, N idle): "
        f"{fmt(steady.get('remote_calls_per_min'))} remote calls/min "
        f"({fmt_map(steady.get('remote_calls'), 0)}); K8s writes {fmt(steady.get('kube_writes'))}",
        *_restart_lines(result),
        f"checks: remote creates {checks.get('remote_creates')} (want {n}), distinct podIds "
        f"{checks.get('distinct_pod_ids')}, live remote pods at end "
        f"{checks.get('live_remote_pods_at_end')} -> {'OK' if checks.get('ok') else 'FAILED'}",
    ]
    other = _get(result, "cpu_seconds.create_phase.other")
    wall = _get(result, "cpu_seconds.create_phase.wall")
    if isinstance(other, float | int) and isinstance(wall, float | int) and wall > 0:
        lines.append(
            f"machine: {_get(result, 'machine.nproc')} CPUs; other work on the machine used "
            f"{other / wall:.2f} cores on average during the create phase; load average at start "
            f"{_get(result, 'machine.loadavg_at_start')}"
        )
    source = result.get("operator_source") or {}
    if source:
        lines.append(
            f"operator source: sha256 {source.get('sha256')} (newest file "
            f"{source.get('newest_file_mtime')}, git {source.get('git_head') or 'no commit'})"
        )
    if result.get("error"):
        lines.append(f"ERROR: {result['error']}")
    return lines


def _restart_lines(result: Mapping[str, Any]) -> list[str]:
    restart = result.get("restart")
    if not restart:
        return []
    return [
        f"restart with N Running: live {fmt(restart.get('seconds_to_live'), 1)}s, quiet "
        f"{fmt(restart.get('seconds_to_quiet'), 1)}s; remote calls "
        f"{fmt_map(restart.get('remote_calls'), 0)}; K8s writes / GpuPod "
        f"{fmt_map(restart.get('kube_writes_per_gpupod'), 3)}; RSS after resume "
        f"{fmt(restart.get('rss_after_resume_mib'), 1)} MiB"
    ]


def targets_lines(result: Mapping[str, Any]) -> list[str]:
    """The issue's targets, checked."""
    out: list[str] = []
    ratio = result.get("ratio_to_floor")
    creates = _get(result, "remote_calls.per_gpupod.create")
    rss = _get(result, "operator.peak_rss_mib")
    out.append(f"target ratio <= 3x: {fmt(ratio)} -> {_mark(ratio is not None and ratio <= 3)}")
    out.append(
        f"target remote creates/GpuPod <= 1.05: {fmt(creates, 3)} -> "
        f"{_mark(creates is not None and creates <= 1.05)}"
    )
    out.append(f"target RSS < 200 MiB: {fmt(rss, 1)} -> {_mark(rss is not None and rss < 200)}")
    return out


def _mark(ok: bool) -> str:
    return "met" if ok else "NOT met"
