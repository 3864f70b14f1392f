"""The PNG: latency CDFs, remote calls over time, the operator's RSS and CPU over time.

matplotlib is optional (a dev dependency): without it the run still writes its JSON.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .stats import cdf_points


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def write_plot(
    path: Path,
    result: Mapping[str, Any],
    create_latencies: Sequence[float],
    delete_latencies: Sequence[float],
    floor_latencies: Sequence[float],
) -> bool:
    if not have_matplotlib():
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: list[dict[str, Any]] = list(result.get("series") or [])
    marks: dict[str, float] = dict(result.get("phase_marks") or {})
    fig, (ax_cdf, ax_calls, ax_proc) = plt.subplots(3, 1, figsize=(10, 12))
    n = result.get("n")

    for values, label in (
        (create_latencies, "apply → Running"),
        (delete_latencies, "delete → gone"),
        (floor_latencies, "floor (CR + remote create + status patch)"),
    ):
        if values:
            xs, ys = cdf_points(values)
            ax_cdf.step(xs, ys, where="post", label=f"{label} (n={len(values)})")
    ax_cdf.set_xlabel("seconds")
    ax_cdf.set_ylabel("fraction of GpuPods")
    ax_cdf.set_title(f"Latency CDF, N={n}")
    ax_cdf.grid(True, alpha=0.3)
    ax_cdf.legend(loc="lower right")

    if series:
        ts = [s["t"] for s in series]
        ops = sorted({op for s in series for op in s["sim"]})
        base = series[0]["sim"]
        for op in ops:
            ax_calls.plot(ts, [s["sim"].get(op, 0) - base.get(op, 0) for s in series], label=op)
        ax_calls.set_ylabel("remote calls (cumulative)")
        ax_calls.set_xlabel("seconds since the operator phase began")
        ax_calls.set_title("Yotta API calls over time (/_sim/stats, 1 s samples)")
        ax_calls.grid(True, alpha=0.3)
        for label, t in marks.items():
            ax_calls.axvline(t, color="grey", linestyle=":", linewidth=1)
            ax_calls.text(t, 0, f" {label}", rotation=90, va="bottom", fontsize=8, color="grey")
        ax_calls.legend(loc="upper left")

        rss = [(s["rss_kib"].get("operator") or 0) / 1024.0 for s in series]
        ax_proc.plot(ts, rss, color="tab:purple", label="operator RSS (MiB)")
        ax_proc.set_ylabel("RSS (MiB)")
        ax_proc.set_xlabel("seconds since the operator phase began")
        ax_cpu = ax_proc.twinx()
        for label, color in (
            ("operator", "tab:red"),
            ("kube-apiserver", "tab:blue"),
            ("etcd", "tab:green"),
            ("simulator", "tab:orange"),
            ("bench", "tab:grey"),
        ):
            cpu = [s["cpu"].get(label) for s in series]
            pct: list[float] = []
            for i in range(1, len(series)):
                a, b = cpu[i - 1], cpu[i]
                dt = ts[i] - ts[i - 1]
                ok = a is not None and b is not None and dt > 0 and b >= a  # b < a: restarted
                pct.append(100.0 * (b - a) / dt if ok else 0.0)
            if pct:
                ax_cpu.plot(
                    ts[1:], pct, color=color, alpha=0.6, linewidth=1, label=f"{label} CPU %"
                )
        ax_cpu.set_ylabel("CPU % (100 = one core)")
        ax_proc.set_title("Operator memory and per-process CPU")
        lines = ax_proc.get_legend_handles_labels()
        lines2 = ax_cpu.get_legend_handles_labels()
        ax_proc.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="upper right", fontsize=8)
        ax_proc.grid(True, alpha=0.3)

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True
