"""Pure helpers: percentiles, counter diffs, Prometheus text, /proc parsing. No I/O here."""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# --------------------------------------------------------------------------- percentiles


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation between closest ranks
    (numpy's default); None for no values."""
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile {q} is not within 0..100")
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    fraction = rank - low
    return float(ordered[low] + (ordered[high] - ordered[low]) * fraction)


@dataclass(frozen=True)
class Summary:
    count: int
    min: float | None
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None
    mean: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "min": _round(self.min),
            "p50": _round(self.p50),
            "p95": _round(self.p95),
            "p99": _round(self.p99),
            "max": _round(self.max),
            "mean": _round(self.mean),
        }


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def summarize(values: Sequence[float]) -> Summary:
    if not values:
        return Summary(0, None, None, None, None, None, None)
    return Summary(
        count=len(values),
        min=float(min(values)),
        p50=percentile(values, 50),
        p95=percentile(values, 95),
        p99=percentile(values, 99),
        max=float(max(values)),
        mean=sum(values) / len(values),
    )


def cdf_points(values: Sequence[float]) -> tuple[list[float], list[float]]:
    """(sorted values, cumulative fraction) for a step CDF plot."""
    ordered = sorted(values)
    n = len(ordered)
    return ordered, [(i + 1) / n for i in range(n)]


# --------------------------------------------------------------------------- simulator stats

SimStats = Mapping[str, Any]  # {"requests": {op: {result: n}}, "faults": ..., "pods": ...}


def sim_requests(stats: SimStats) -> dict[str, dict[str, int]]:
    raw = stats.get("requests") or {}
    return {
        str(op): {str(r): int(n) for r, n in (results or {}).items()} for op, results in raw.items()
    }


def diff_nested(
    after: Mapping[str, Mapping[str, int]], before: Mapping[str, Mapping[str, int]]
) -> dict[str, dict[str, int]]:
    """after - before for {op: {result: count}}; zero entries are dropped."""
    out: dict[str, dict[str, int]] = {}
    for op, results in after.items():
        previous = before.get(op, {})
        for result, count in results.items():
            delta = count - previous.get(result, 0)
            if delta:
                out.setdefault(op, {})[result] = delta
    return out


def totals_by_op(requests: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    return {op: sum(results.values()) for op, results in sorted(requests.items())}


def sim_total(stats: SimStats) -> int:
    return sum(sum(r.values()) for r in sim_requests(stats).values())


def add_counts(*maps: Mapping[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for m in maps:
        for key, value in m.items():
            out[key] = out.get(key, 0) + value
    return dict(sorted(out.items()))


def per_item(counts: Mapping[str, int | float], n: int, digits: int = 3) -> dict[str, float]:
    """Each count divided by n (per GpuPod)."""
    if n <= 0:
        return {}
    return {key: round(value / n, digits) for key, value in counts.items()}


# --------------------------------------------------------------------------- Prometheus text

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)")
_LABEL = re.compile(r'(?P<key>[a-zA-Z_][a-zA-Z0-9_]*)="(?P<value>(?:[^"\\]|\\.)*)"')

Labels = tuple[tuple[str, str], ...]


def parse_prometheus(text: str, name: str) -> dict[Labels, float]:
    """The samples of one metric in the Prometheus text format, keyed by sorted labels."""
    out: dict[Labels, float] = {}
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None or match.group("name") != name:
            continue
        labels = tuple(
            sorted(
                (m.group("key"), m.group("value"))
                for m in _LABEL.finditer(match.group("labels") or "")
            )
        )
        try:
            out[labels] = out.get(labels, 0.0) + float(match.group("value"))
        except ValueError:
            continue
    return out


@dataclass(frozen=True)
class RequestKey:
    """One row of apiserver_request_total folded to what we report."""

    verb: str  # POST PATCH PUT DELETE GET LIST WATCH APPLY ...
    resource: str  # "gpupods", "events", "" for non-resource URLs
    subresource: str  # "status" or ""
    code: str

    @property
    def target(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource or "-"


def request_counts(samples: Mapping[Labels, float]) -> dict[RequestKey, int]:
    out: dict[RequestKey, int] = {}
    for labels, value in samples.items():
        d = dict(labels)
        key = RequestKey(
            d.get("verb", ""), d.get("resource", ""), d.get("subresource", ""), d.get("code", "")
        )
        out[key] = out.get(key, 0) + round(value)
    return out


def diff_counts(
    after: Mapping[RequestKey, int], before: Mapping[RequestKey, int]
) -> dict[RequestKey, int]:
    out: dict[RequestKey, int] = {}
    for key, count in after.items():
        delta = count - before.get(key, 0)
        if delta:
            out[key] = delta
    return out


WRITE_VERBS = frozenset({"POST", "PATCH", "PUT", "DELETE", "APPLY", "DELETECOLLECTION"})
READ_VERBS = frozenset({"GET", "LIST", "WATCH"})


def subtract_own(
    counts: Mapping[RequestKey, int], own: Mapping[tuple[str, str], int]
) -> dict[RequestKey, int]:
    """Remove requests the bench made itself ((verb, target) -> n), from 2xx rows first."""
    remaining = dict(own)
    out = dict(counts)
    for key in sorted(out, key=lambda k: (not k.code.startswith("2"), k.code)):
        left = remaining.get((key.verb, key.target), 0)
        if left <= 0:
            continue
        take = min(left, out[key])
        out[key] -= take
        remaining[(key.verb, key.target)] = left - take
    return {k: v for k, v in out.items() if v}


def by_verb_target(counts: Mapping[RequestKey, int]) -> dict[str, int]:
    """{"PATCH gpupods/status": n, ...}, summed over codes, sorted."""
    out: dict[str, int] = {}
    for key, count in counts.items():
        label = f"{key.verb} {key.target}"
        out[label] = out.get(label, 0) + count
    return dict(sorted(out.items()))


def errors_by_code(counts: Mapping[RequestKey, int]) -> dict[str, int]:
    """Non-2xx answers: {"PATCH gpupods/status 409": n}."""
    out: dict[str, int] = {}
    for key, count in counts.items():
        if key.code and not key.code.startswith("2"):
            label = f"{key.verb} {key.target} {key.code}"
            out[label] = out.get(label, 0) + count
    return dict(sorted(out.items()))


# What the operator touches; anything else in apiserver_request_total during a phase is the API
# server's own housekeeping (leases, endpoints, the OpenAPI aggregator) and is shown apart.
OPERATOR_TARGETS = frozenset(
    {
        "gpupods",
        "gpupods/status",
        "events",
        "secrets",
        # The project's other kinds: only the operator reads them in a bench run (account
        # resolution, quota admission, policy checks), per GpuPod: not housekeeping.
        "yottaaccounts",
        "yottaaccounts/status",
        "clusteryottaaccounts",
        "clusteryottaaccounts/status",
        "gpuquotas",
        "gpuquotas/status",
        "gputenantpolicies",
    }
)


def split_targets(
    values: Mapping[str, int], keep: frozenset[str] = OPERATOR_TARGETS
) -> tuple[dict[str, int], dict[str, int]]:
    """({target: n} for targets in keep, the rest) from {target or "VERB target": n}."""
    mine: dict[str, int] = {}
    other: dict[str, int] = {}
    for label, count in values.items():
        target = label.split(" ", 1)[-1]
        (mine if target in keep else other)[label] = count
    return mine, other


def writes_by_target(counts: Mapping[RequestKey, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for key, count in counts.items():
        if key.verb in WRITE_VERBS:
            out[key.target] = out.get(key.target, 0) + count
    return dict(sorted(out.items()))


def reads_by_target(counts: Mapping[RequestKey, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for key, count in counts.items():
        if key.verb in READ_VERBS:
            label = f"{key.verb} {key.target}"
            out[label] = out.get(label, 0) + count
    return dict(sorted(out.items()))


# --------------------------------------------------------------------------- /proc parsing


def parse_proc_status(text: str) -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, ... (KiB) and Threads from /proc/PID/status."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        sized = len(parts) == 2 and parts[1] == "kB"
        counted = key == "Threads" and len(parts) == 1
        if (sized or counted) and parts[0].isdigit():
            out[key] = int(parts[0])
    return out


def parse_proc_stat_cpu(text: str, ticks_per_second: float) -> float:
    """utime + stime in seconds from /proc/PID/stat (the comm field may hold spaces)."""
    fields = text[text.rindex(")") + 2 :].split()
    # After ")": state(3) ppid(4) ... utime is field 14, stime 15 (1-based) -> index 11, 12.
    return (int(fields[11]) + int(fields[12])) / ticks_per_second


def parse_system_cpu(text: str, ticks_per_second: float) -> tuple[float, float]:
    """(busy seconds, total seconds) over all CPUs from /proc/stat's first line."""
    first = text.splitlines()[0].split()
    values = [int(v) for v in first[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already in user
    return (total - idle) / ticks_per_second, total / ticks_per_second


def rate_per_minute(count: float, seconds: float) -> float | None:
    return None if seconds <= 0 else round(count * 60.0 / seconds, 3)


def intervals(times: Iterable[float]) -> list[float]:
    ordered = sorted(times)
    return [b - a for a, b in itertools.pairwise(ordered)]


def fmt_ops(now: Mapping[str, int], base: Mapping[str, int]) -> str:
    """Like "create 10, list 3", from two {op: cumulative count} maps (zero deltas left out)."""
    parts = [
        f"{op} {now.get(op, 0) - base.get(op, 0)}"
        for op in sorted(set(now) | set(base))
        if now.get(op, 0) - base.get(op, 0)
    ]
    return ", ".join(parts) or "none"
