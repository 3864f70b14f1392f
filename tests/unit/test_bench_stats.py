"""The bench's pure helpers: percentiles, counter diffs, Prometheus text, /proc parsing."""

from __future__ import annotations

import pytest
from bench import stats as S
from bench.stats import RequestKey

# --------------------------------------------------------------------------- percentiles


def test_percentile_interpolates_like_numpy() -> None:
    values = [1.0, 2.0, 3.0, 4.0]
    assert S.percentile(values, 0) == 1.0
    assert S.percentile(values, 100) == 4.0
    assert S.percentile(values, 50) == pytest.approx(2.5)
    assert S.percentile(values, 95) == pytest.approx(3.85)


def test_percentile_edge_cases() -> None:
    assert S.percentile([], 50) is None
    assert S.percentile([7.0], 99) == 7.0
    assert S.percentile([3.0, 1.0, 2.0], 50) == 2.0  # unsorted input
    with pytest.raises(ValueError):
        S.percentile([1.0], 101)


def test_summarize() -> None:
    summary = S.summarize([float(i) for i in range(1, 101)])
    assert summary.count == 100
    assert summary.min == 1.0 and summary.max == 100.0
    assert summary.p50 == pytest.approx(50.5)
    assert summary.p95 == pytest.approx(95.05)
    assert summary.mean == pytest.approx(50.5)
    assert S.summarize([]).to_json()["p50"] is None


def test_cdf_points() -> None:
    xs, ys = S.cdf_points([3.0, 1.0, 2.0, 4.0])
    assert xs == [1.0, 2.0, 3.0, 4.0]
    assert ys == [0.25, 0.5, 0.75, 1.0]


# --------------------------------------------------------------------------- simulator stats


def test_sim_stats_diff_per_op_and_per_item() -> None:
    before = {"requests": {"list": {"ok": 3}, "create": {"ok": 1}}}
    after = {
        "requests": {"list": {"ok": 5}, "create": {"ok": 201, "500": 2}, "get": {"ok": 4}},
        "pods": {"RUNNING": 200},
    }
    diff = S.diff_nested(S.sim_requests(after), S.sim_requests(before))
    assert diff == {"list": {"ok": 2}, "create": {"ok": 200, "500": 2}, "get": {"ok": 4}}
    totals = S.totals_by_op(diff)
    assert totals == {"create": 202, "get": 4, "list": 2}
    assert S.per_item(totals, 200) == {"create": 1.01, "get": 0.02, "list": 0.01}
    assert S.per_item(totals, 0) == {}
    assert S.sim_total(after) == 212


def test_diff_nested_drops_unchanged() -> None:
    same = {"list": {"ok": 3}}
    assert S.diff_nested(same, same) == {}


def test_add_counts() -> None:
    assert S.add_counts({"b": 1, "a": 2}, {"a": 3}, {}) == {"a": 5, "b": 1}


def test_fmt_ops() -> None:
    assert S.fmt_ops({"create": 10, "list": 3, "get": 1}, {"list": 1, "get": 1}) == (
        "create 10, list 2"
    )
    assert S.fmt_ops({}, {}) == "none"


# --------------------------------------------------------------------------- Prometheus text

METRICS = """\
# HELP apiserver_request_total [STABLE] Counter of apiserver requests
# TYPE apiserver_request_total counter
apiserver_request_total{code="201",component="apiserver",dry_run="",group="gpupod.dev",\
resource="gpupods",scope="resource",subresource="",verb="POST",version="v1alpha1"} 200
apiserver_request_total{code="200",component="apiserver",dry_run="",group="gpupod.dev",\
resource="gpupods",scope="resource",subresource="status",verb="PATCH",version="v1alpha1"} 410
apiserver_request_total{code="409",component="apiserver",dry_run="",group="gpupod.dev",\
resource="gpupods",scope="resource",subresource="status",verb="PATCH",version="v1alpha1"} 3
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",\
resource="events",scope="resource",subresource="",verb="POST",version="v1"} 600
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",\
resource="",scope="",subresource="/metrics",verb="GET",version=""} 2
apiserver_request_total_other{code="200"} 99
apiserver_request_duration_seconds_bucket{le="0.1",verb="POST"} 5
"""


def test_parse_prometheus_picks_one_metric() -> None:
    samples = S.parse_prometheus(METRICS, "apiserver_request_total")
    assert len(samples) == 5
    counts = S.request_counts(samples)
    assert counts[RequestKey("PATCH", "gpupods", "status", "200")] == 410
    assert counts[RequestKey("POST", "events", "", "201")] == 600


def test_label_values_may_hold_escaped_quotes() -> None:
    text = 'm{a="x\\"y",b="z"} 1\n'
    assert S.parse_prometheus(text, "m") == {(("a", 'x\\"y'), ("b", "z")): 1.0}


def test_request_key_target() -> None:
    assert RequestKey("PATCH", "gpupods", "status", "200").target == "gpupods/status"
    assert RequestKey("POST", "events", "", "201").target == "events"
    assert RequestKey("GET", "", "", "200").target == "-"


def test_diff_subtract_own_and_fold() -> None:
    before = {RequestKey("POST", "gpupods", "", "201"): 5}
    after = {
        RequestKey("POST", "gpupods", "", "201"): 205,
        RequestKey("PATCH", "gpupods", "", "200"): 400,
        RequestKey("PATCH", "gpupods", "status", "200"): 398,
        RequestKey("PATCH", "gpupods", "status", "409"): 2,
        RequestKey("LIST", "gpupods", "", "200"): 1,
        RequestKey("PUT", "leases", "", "200"): 4,
    }
    delta = S.diff_counts(after, before)
    assert delta[RequestKey("POST", "gpupods", "", "201")] == 200
    operator = S.subtract_own(delta, {("POST", "gpupods"): 200, ("LIST", "gpupods"): 1})
    assert RequestKey("POST", "gpupods", "", "201") not in operator
    assert S.writes_by_target(operator) == {
        "gpupods": 400,
        "gpupods/status": 400,
        "leases": 4,
    }
    assert S.by_verb_target(operator)["PATCH gpupods/status"] == 400
    assert S.errors_by_code(operator) == {"PATCH gpupods/status 409": 2}
    assert S.reads_by_target(delta) == {"LIST gpupods": 1}
    mine, other = S.split_targets(S.writes_by_target(operator))
    assert mine == {"gpupods": 400, "gpupods/status": 400}
    assert other == {"leases": 4}
    mine, other = S.split_targets({"PUT leases": 1, "PATCH gpupods/status": 2})
    assert mine == {"PATCH gpupods/status": 2} and other == {"PUT leases": 1}


def test_subtract_own_takes_successes_first() -> None:
    counts = {
        RequestKey("DELETE", "gpupods", "", "404"): 1,
        RequestKey("DELETE", "gpupods", "", "200"): 3,
    }
    left = S.subtract_own(counts, {("DELETE", "gpupods"): 3})
    assert left == {RequestKey("DELETE", "gpupods", "", "404"): 1}


# --------------------------------------------------------------------------- /proc


def test_parse_proc_status() -> None:
    text = "Name:\tpython\nVmHWM:\t  104512 kB\nVmRSS:\t  100000 kB\nThreads:\t3\n"
    assert S.parse_proc_status(text) == {"VmHWM": 104512, "VmRSS": 100000, "Threads": 3}


def test_parse_proc_stat_cpu_with_spaces_in_comm() -> None:
    fields = ["S", "1", "1", "1", "0", "-1", "0", "0", "0", "0", "0", "250", "50"]
    text = "1234 (gpupod (op) x) " + " ".join(fields + ["0"] * 30)
    assert S.parse_proc_stat_cpu(text, 100.0) == pytest.approx(3.0)


def test_parse_system_cpu() -> None:
    text = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3\n"
    busy, total = S.parse_system_cpu(text, 100.0)
    assert total == pytest.approx(10.0)
    assert busy == pytest.approx(1.5)


def test_rate_and_intervals() -> None:
    assert S.rate_per_minute(3, 90.0) == 2.0
    assert S.rate_per_minute(3, 0.0) is None
    assert S.intervals([30.0, 0.0, 60.5]) == [30.0, 30.5]


def test_top_other_by_command() -> None:
    from bench.sampler import top_other

    before = {1: ("pytest", 10.0), 2: ("kube-apiserver", 5.0), 3: ("ours", 1.0)}
    after = {
        1: ("pytest", 14.0),
        2: ("kube-apiserver", 5.01),  # below the noise floor
        3: ("ours", 9.0),
        4: ("kube-apiserver", 2.0),  # started in between
        5: ("pytest", 1.0),
    }
    assert top_other(before, after, ours={3}) == {"pytest": 5.0, "kube-apiserver": 2.0}
    assert top_other(before, after, ours={3}, top=1) == {"pytest": 5.0}


def test_cpu_between_survives_a_restart() -> None:
    from bench.sampler import Sample, cpu_between

    def sample(t: float, op: float, busy: float) -> Sample:
        return Sample(t, {}, 0, {"operator": op}, {}, {}, busy, 2 * t)

    a, b = sample(0.0, 30.0, 10.0), sample(10.0, 4.0, 20.0)  # new process: counter restarted
    out = cpu_between(a, b)
    assert out["operator"] == 4.0
    assert out["machine"] == 10.0 and out["other"] == 6.0 and out["wall"] == 10.0
