"""One benchmark run: fresh control plane, the floor, then the operator through
apply -> Running -> steady state -> delete, measured from outside."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import itertools
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from gpupod_operator.devenv.controlplane import ApiError, ControlPlane
from gpupod_operator.devenv.operator_process import OperatorProcess
from gpupod_operator.devenv.paths import control_plane_bin_dir, control_plane_version
from gpupod_operator.devenv.simulator_process import SimulatorProcess

from . import stats as S
from .floor import FloorResult, run_floor, run_pool
from .kubeclient import KubeClient, Watcher, collection, gpupod_manifest, pod_names
from .plot import write_plot
from .profiling import PySpy
from .report import summary_lines, targets_lines
from .sampler import (
    Sampler,
    all_processes_cpu,
    cpu_between,
    loadavg,
    proc_memory_kib,
    sim_ops_between,
    top_other,
)

REPO = Path(__file__).resolve().parents[1]
SIMULATOR_ARGS = (
    "--provision-seconds",
    "0",
    "--pause-seconds",
    "0",
    "--terminate-seconds",
    "0",
    "--log-level",
    "warning",
)
MIB = 1024.0
LIFTED_RATE_LIMIT = ("--qps", "1000", "--burst", "1000")


def log(message: str) -> None:
    stamp = dt.datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", flush=True)


@dataclass
class RunConfig:
    n: int = 200
    concurrency: int = 32
    steady_seconds: float = 90.0
    settle_seconds: float = 5.0
    operator_args: list[str] = field(default_factory=list)
    experiments: list[str] = field(default_factory=list)
    log_level: str = "INFO"
    out_dir: Path = REPO / "bench-results"
    profile: bool = False
    floor: bool = True
    finalizer_policy: bool = True  # the chart's MutatingAdmissionPolicy (finalizer at apply)
    restart: bool = True
    plot: bool = True
    phase_timeout: float | None = None  # default: 120 + 0.6 s per GpuPod
    #: Keep the operator's own client-side rate limit (--qps 20 --burst 40): the create and
    #: delete phases are then bound by it, ~(3.8 N - 40) / 20 s of Yotta calls (31 min at
    #: N=10000). Off by default: the simulator has no limit, the bench measures the operator.
    product_rate_limit: bool = False
    #: A wait for Running / gone fails when no GpuPod got there for this long.
    stall_seconds: float = 180.0

    @property
    def effective_operator_args(self) -> list[str]:
        """operator_args, with the rate limit lifted unless kept or given there."""
        given = {a.split("=", 1)[0] for a in self.operator_args}
        if self.product_rate_limit or given & {"--qps", "--burst"}:
            return list(self.operator_args)
        return [*LIFTED_RATE_LIMIT, *self.operator_args]

    @property
    def timeout(self) -> float:
        return self.phase_timeout or 120.0 + 0.6 * self.n


# --------------------------------------------------------------------------- environment facts


EXPERIMENTS_DIR = Path(__file__).resolve().parent / "experiments"


def memory_detail(pid: int) -> dict[str, int]:
    status = proc_memory_kib(pid)
    keys = ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads")
    return {k: status[k] for k in keys if k in status}


def experiment_env(names: list[str], tracemalloc_out: Path | None = None) -> dict[str, str]:
    """Environment that makes the operator apply bench/experiments/sitecustomize.py patches."""
    if not names:
        return {}
    env = {"PYTHONPATH": str(EXPERIMENTS_DIR), "GPUPOD_BENCH_EXPERIMENTS": ",".join(names)}
    if tracemalloc_out is not None:
        env["GPUPOD_BENCH_TRACEMALLOC_OUT"] = str(tracemalloc_out)
    return env


def machine_facts() -> dict[str, Any]:
    mem_total = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total = int(line.split()[1])
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "mem_total_mib": None if mem_total is None else round(mem_total / MIB),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_at_start": loadavg(),
    }


def versions(plane: ControlPlane) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for dist in ("gpupod-operator", "kopf", "httpx", "aiohttp", "pydantic"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    try:
        out["kube-apiserver"] = plane.request("GET", "/version").get("gitVersion")
    except Exception:
        out["kube-apiserver"] = control_plane_version(control_plane_bin_dir())
    try:
        text = subprocess.run(
            [str(control_plane_bin_dir() / "etcd"), "--version"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
        match = re.search(r"etcd Version: (\S+)", text)
        out["etcd"] = match.group(1) if match else None
    except OSError:
        out["etcd"] = None
    return out


def source_fingerprint(root: Path = REPO / "operator" / "gpupod_operator") -> dict[str, Any]:
    """Which operator code ran: others edit it concurrently, and there may be no commit."""
    digest = hashlib.sha256()
    newest = 0.0
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
        newest = max(newest, path.stat().st_mtime)
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "sha256": digest.hexdigest()[:16],
        "newest_file_mtime": dt.datetime.fromtimestamp(newest, dt.UTC).isoformat(
            timespec="seconds"
        ),
        "git_head": head or None,
    }


def operator_log_facts(path: Path) -> dict[str, Any]:
    """Line counts by level and the most frequent WARNING/ERROR messages (numbers masked)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return {}
    levels: Counter[str] = Counter()
    messages: Counter[str] = Counter()
    for line in text.splitlines():
        match = re.search(r"\b(DEBUG|INFO|WARNING|ERROR|CRITICAL)\b", line)
        level = match.group(1) if match else "other"
        levels[level] += 1
        if level in ("WARNING", "ERROR", "CRITICAL") and match is not None:
            message = line[match.end() :].strip()
            message = re.sub(r"bench-\d+", "bench-N", message)
            message = re.sub(r"\d+(\.\d+)?", "#", message)[:160]
            messages[f"{level} {message}"] += 1
    return {
        "lines": sum(levels.values()),
        "by_level": dict(levels),
        "top_problems": [{"message": m, "count": c} for m, c in messages.most_common(8)],
    }


def warm_up(plane: ControlPlane, namespace: str, count: int = 5) -> None:
    """The first writes of a new CRD take seconds (its storage and validators warm up):
    create and delete a few GpuPods nobody watches, so neither the floor nor the operator
    pays for that."""
    plane.create_namespace(namespace)
    for name in pod_names(count, "warmup"):
        plane.request("POST", collection(namespace), gpupod_manifest(name))
    plane.request("DELETE", collection(namespace))


CHART = REPO / "deploy" / "helm" / "gpupod-operator"
MAP_API = "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy"


def install_finalizer_policy(plane: ControlPlane, namespace: str, timeout: float = 60.0) -> None:
    """The chart's finalizer policy, as `helm install --set watchNamespaces={namespace}`
    renders it, in effect once a server-side dry run of a GpuPod comes back with the
    finalizer (the API server loads new policies within a second or so)."""
    cache = Path(os.environ.get("GPUPOD_CACHE") or Path.home() / ".cache" / "gpupod-operator")
    args = ["template", "bench", str(CHART), "--set", f"watchNamespaces={{{namespace}}}"]
    args += ["--api-versions", MAP_API, "--show-only", "templates/finalizer-policy.yaml"]
    rendered = subprocess.run(
        [str(cache / "bin" / "helm"), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    plane.kubectl("apply", "-f", "-", input=rendered)
    deadline = time.monotonic() + timeout
    probe = gpupod_manifest("finalizer-policy-probe")
    while True:
        made = plane.request("POST", f"{collection(namespace)}?dryRun=All", probe)
        if "gpupod.dev/finalizer" in (made.get("metadata", {}).get("finalizers") or []):
            return
        if time.monotonic() > deadline:
            raise BenchFailure(f"the finalizer policy took no effect within {timeout:.0f}s")
        time.sleep(0.2)


# --------------------------------------------------------------------------- the run


def wait_served(plane: ControlPlane, limit_seconds: float = 60.0) -> None:
    """An Established CRD can still answer 429 "storage is (re)initializing" for a moment."""
    deadline = time.monotonic() + limit_seconds
    while True:
        try:
            plane.request("GET", "/apis/gpupod.dev/v1alpha1/gpupods?limit=1")
            return
        except ApiError as exc:
            if exc.status != 429 or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class BenchFailure(RuntimeError):
    pass


@dataclass
class Metrics:
    """apiserver_request_total snapshots with the bench's own request tally at the time."""

    kube: KubeClient

    async def snapshot(self) -> tuple[dict[S.RequestKey, int], Counter[tuple[str, str]]]:
        text = await self.kube.metrics_text()
        counts = S.request_counts(S.parse_prometheus(text, "apiserver_request_total"))
        return counts, Counter(self.kube.own)


def operator_counts(
    before: tuple[dict[S.RequestKey, int], Counter[tuple[str, str]]],
    after: tuple[dict[S.RequestKey, int], Counter[tuple[str, str]]],
) -> dict[S.RequestKey, int]:
    """The API server's counts between two snapshots, minus the bench's own requests. The
    /metrics read of `before` shows in `after` but not in our tally's difference, and the read
    of `after` is in the tally but not in its own answer: the two cancel out."""
    own = after[1] - before[1]
    return S.subtract_own(S.diff_counts(after[0], before[0]), dict(own))


class Run:
    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.base = f"{self.stamp}-n{cfg.n}"
        self.logs_dir = cfg.out_dir / f"{self.base}-logs"
        self.result: dict[str, Any] = {
            "schema": 1,
            "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "n": cfg.n,
            "machine": machine_facts(),
            "flags": {
                "operator_args": cfg.effective_operator_args,
                "rate_limit": "product (--qps 20 --burst 40 unless given)"
                if cfg.product_rate_limit
                else "lifted (--qps 1000 --burst 1000 unless given)",
                "experiments": list(cfg.experiments),
                "operator_defaults": "--sync-interval 30 --fast-sync-interval 2 --qps 20 "
                "--burst 40 (cli.py) unless overridden in operator_args",
                "log_level": cfg.log_level,
                "concurrency": cfg.concurrency,
                "simulator_args": list(SIMULATOR_ARGS),
                "steady_seconds": cfg.steady_seconds,
                "profile": cfg.profile,
                "restart_phase": cfg.restart,
                "phase_timeout_seconds": cfg.timeout,
                "stall_seconds": cfg.stall_seconds,
            },
        }
        self._tracemalloc_out = (
            cfg.out_dir / f"{self.base}-tracemalloc" if "tracemalloc" in cfg.experiments else None
        )
        self.create_latencies: list[float] = []
        self.delete_latencies: list[float] = []
        self.floor_latencies: list[float] = []

    # ------------------------------------------------------------------ outer (processes)

    def execute(self) -> dict[str, Any]:
        cfg = self.cfg
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        plane: ControlPlane | None = None
        sim: SimulatorProcess | None = None
        operator: OperatorProcess | None = None
        started = time.monotonic()
        try:
            log(f"N={cfg.n}: starting kube-apiserver + etcd (logs {self._rel(self.logs_dir)})")
            plane = ControlPlane(
                Path(tempfile.mkdtemp(prefix="gpupod-bench-cp-")), log_dir=self.logs_dir
            )
            plane.start()
            plane.apply_crds(REPO / "crds")
            wait_served(plane)
            warm_up(plane, f"bench-warmup-{self.stamp[-6:]}")
            ns_floor = plane.create_namespace(f"bench-floor-{self.stamp[-6:]}")
            ns_op = plane.create_namespace(f"bench-op-{self.stamp[-6:]}")
            if cfg.finalizer_policy:
                install_finalizer_policy(plane, ns_op)
            self.result["finalizer_policy"] = cfg.finalizer_policy
            self.result["versions"] = versions(plane)
            self.result["operator_source"] = source_fingerprint()
            self.result["namespaces"] = {"floor": ns_floor, "operator": ns_op}

            if cfg.floor:
                floor_sim = SimulatorProcess(
                    args=SIMULATOR_ARGS, log_path=self.logs_dir / "simulator-floor.log"
                )
                try:
                    floor_sim.start()
                    log(
                        f"floor: {cfg.n} x (CR create, remote create, status patch), "
                        f"concurrency {cfg.concurrency}"
                    )
                    floor = asyncio.run(self._floor(plane, floor_sim, ns_floor))
                finally:
                    floor_sim.stop()
                self.result["floor"] = floor
                log(f"floor: {floor['seconds']}s")

            sim = SimulatorProcess(args=SIMULATOR_ARGS, log_path=self.logs_dir / "simulator.log")
            sim.start()
            log(f"simulator on {sim.url} (pid {sim.pid}); starting the operator ({cfg.log_level})")
            operator = OperatorProcess(
                plane.admin_kubeconfig,
                sim.url,
                sim.api_key,
                args=cfg.effective_operator_args,
                log_level=cfg.log_level,
                env=experiment_env(cfg.experiments, self._tracemalloc_out),
                namespaces=[ns_op],
                log_path=self.logs_dir / "operator.log",
            )
            operator.start()
            log(f"operator pid {operator.pid}")
            asyncio.run(self._operator_phase(plane, sim, operator, ns_op))
        except BaseException as exc:
            self.result["error"] = f"{type(exc).__name__}: {exc}"
            if operator is not None:
                with contextlib.suppress(Exception):
                    self.result["operator_log_tail"] = operator.log_tail(30)
            raise
        finally:
            for process in (operator, sim):
                if process is not None:
                    try:
                        process.stop()
                    except Exception as exc:  # keep stopping the rest
                        log(f"could not stop {process!r}: {exc}")
            if plane is not None:
                try:
                    plane.stop()
                except Exception as exc:
                    log(f"could not stop the control plane: {exc}")
            self.result["machine"]["loadavg_at_end"] = loadavg()
            self.result["wall_seconds"] = round(time.monotonic() - started, 1)
            if operator is not None:
                self.result["operator_log"] = operator_log_facts(operator.log_path)
            self._write()
        return self.result

    def _rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            return str(path)

    def _write(self) -> None:
        cfg = self.cfg
        cfg.out_dir.mkdir(parents=True, exist_ok=True)
        json_path = cfg.out_dir / f"{self.base}.json"
        if cfg.plot and "series" in self.result:
            png = cfg.out_dir / f"{self.base}.png"
            try:
                if write_plot(
                    png,
                    self.result,
                    self.create_latencies,
                    self.delete_latencies,
                    self.floor_latencies,
                ):
                    self.result["plot"] = png.name
                    log(f"wrote {self._rel(png)}")
                else:
                    log("matplotlib is not installed: no PNG (pip install matplotlib)")
            except Exception as exc:  # a plot problem must not lose the numbers
                log(f"plot failed: {exc!r}")
        json_path.write_text(json.dumps(self.result, indent=2, sort_keys=False) + "\n")
        log(f"wrote {self._rel(json_path)}")
        for line in summary_lines(self.result):
            print(line, flush=True)
        if "ratio_to_floor" in self.result:
            for line in targets_lines(self.result):
                print(line, flush=True)

    # ------------------------------------------------------------------ the floor

    async def _floor(
        self, plane: ControlPlane, sim: SimulatorProcess, namespace: str
    ) -> dict[str, Any]:
        kube = KubeClient(plane.server, plane.admin_token, plane.ca_path, pool=self._pool())
        pids = {"simulator": sim.pid, "bench": os.getpid(), **self._plane_pids(plane)}
        sampler = Sampler(sim.url, pids)
        try:
            await sampler.start()
            first = sampler.samples[-1]
            floor: FloorResult = await run_floor(
                kube,
                namespace,
                pod_names(self.cfg.n, "floor"),
                sim.url,
                sim.api_key,
                self.cfg.concurrency,
                limit_seconds=self.cfg.timeout,
                log=log,
            )
            last = await sampler.sample_now()
            self.floor_latencies = floor.per_item
            out = floor.to_json()
            out["cpu"] = cpu_between(first, last)
            # The floor's objects have no finalizer: one call removes them, not measured.
            await kube.delete_collection(namespace)
            return out
        finally:
            await sampler.stop()
            await kube.aclose()

    def _dump_memory(self, pid: int, when: str) -> None:
        """With the tracemalloc experiment: ask the operator for its top allocation sites."""
        if self._tracemalloc_out is None:
            return
        os.kill(pid, signal.SIGUSR1)
        log(f"tracemalloc snapshot requested ({when}) -> {self._tracemalloc_out}.*")
        time.sleep(3.0)  # the snapshot is taken in the operator's main thread

    @staticmethod
    async def _wait_quiet(sampler: Sampler, limit_seconds: float) -> float | None:
        """Seconds until the operator used < 5% of a core over 3 s (at least 5 s: one poller
        round); None if it never went quiet within the limit."""
        began = time.monotonic()
        await asyncio.sleep(5.0)
        while time.monotonic() - began < limit_seconds:
            window = [s for s in sampler.samples if s.t >= sampler.samples[-1].t - 3.0]
            first, last = window[0], window[-1]
            a, b = first.cpu.get("operator"), last.cpu.get("operator")
            span = last.t - first.t
            if a is not None and b is not None and span >= 2.5 and (b - a) / span < 0.05:
                return time.monotonic() - began
            await asyncio.sleep(1.0)
        return None

    def _pool(self) -> int:
        return self.cfg.concurrency + 8

    @staticmethod
    def _plane_pids(plane: ControlPlane) -> dict[str, int]:
        return {p.name: p.pid for p in plane.processes}

    # ------------------------------------------------------------------ the operator

    async def _operator_phase(
        self,
        plane: ControlPlane,
        sim: SimulatorProcess,
        operator: OperatorProcess,
        namespace: str,
    ) -> None:
        cfg, result = self.cfg, self.result
        n = cfg.n
        names = pod_names(n)
        kube = KubeClient(plane.server, plane.admin_token, plane.ca_path, pool=self._pool())
        metrics = Metrics(kube)
        watcher = Watcher(kube, namespace)
        pids = {
            "operator": operator.pid,
            "simulator": sim.pid,
            "bench": os.getpid(),
            **self._plane_pids(plane),
        }
        sampler = Sampler(sim.url, pids)
        marks: dict[str, float] = {}
        spy: PySpy | None = None

        def mark(label: str) -> float:
            marks[label] = round(time.monotonic() - sampler.origin, 3)
            return marks[label]

        try:
            await sampler.start()
            await watcher.start()
            await asyncio.sleep(2.0)  # the operator's initial list/watch settle
            base_metrics = await metrics.snapshot()
            procs0 = all_processes_cpu()
            s0 = await sampler.sample_now()
            stats0 = await sampler.sim_stats()
            if cfg.profile:
                spy = PySpy(operator.pid, cfg.out_dir / f"{self.base}-profile-create.txt")
                if not spy.start():
                    log("py-spy is not available or could not attach; no profile")
                    spy = None

            # ---- apply
            log(f"applying {n} GpuPods (concurrency {cfg.concurrency})")
            post_started: dict[str, float] = {}
            post_seconds: list[float] = []

            async def create(name: str) -> None:
                began = time.monotonic()
                post_started[name] = began
                await kube.create_gpupod(namespace, name)
                post_seconds.append(time.monotonic() - began)

            t_apply = time.monotonic()
            mark("apply")
            await asyncio.wait_for(run_pool(names, cfg.concurrency, create), cfg.timeout)
            client_seconds = time.monotonic() - t_apply
            mark("applied")
            log(f"applied in {client_seconds:.2f}s; waiting for Running")
            result["apply"] = {
                "client_seconds": round(client_seconds, 3),
                "per_request": S.summarize(post_seconds).to_json(),
                "method": "HTTP POST per GpuPod from an asyncio pool (httpx, TLS, admin token)",
            }

            def running() -> int:
                return watcher.running

            def tick_running() -> None:
                stats = sampler.samples[-1].sim_by_op if sampler.samples else {}
                log(
                    f"  Running {running()}/{n}; remote calls so far "
                    f"{S.fmt_ops(stats, s0.sim_by_op)}"
                )

            ok = await watcher.wait_for(
                lambda: running() >= n,
                cfg.timeout,
                tick_running,
                progress=running,
                stall_seconds=cfg.stall_seconds,
            )
            if not ok:
                raise BenchFailure(
                    f"only {running()}/{n} GpuPods Running after "
                    f"{time.monotonic() - t_apply:.0f}s (limit {cfg.timeout:g}s, or none more "
                    f"for {cfg.stall_seconds:g}s)"
                )
            t_running = max(t.running for t in watcher.tracks.values() if t.running is not None)
            mark("all Running")
            self.create_latencies = [
                watcher.tracks[name].running - post_started[name]  # type: ignore[operator]
                for name in names
            ]
            seconds_all_running = t_running - t_apply
            result["create"] = {
                "seconds_all_running": round(seconds_all_running, 3),
                "throughput_per_s": round(n / seconds_all_running, 2),
                "latency": S.summarize(self.create_latencies).to_json(),
            }
            log(f"all {n} Running after {seconds_all_running:.2f}s")
            floor = result.get("floor")
            if floor and floor.get("seconds"):
                result["ratio_to_floor"] = round(seconds_all_running / floor["seconds"], 3)

            # let the burst's tail land (poller rounds, kopf's own patches) before counting
            await asyncio.sleep(cfg.settle_seconds)
            if spy is not None:
                spy.stop()
                summary = spy.summary()
                if summary is not None:
                    result.setdefault("profile", {})["create"] = summary.to_json()
                    spy.output.with_suffix(".summary.txt").write_text(summary.render() + "\n")
                    log(f"profile (create) -> {self._rel(spy.output)}")
                spy = None
            self._dump_memory(operator.pid, "after the create burst")
            memory_at: dict[str, dict[str, int]] = {"created": memory_detail(operator.pid)}
            created_metrics = await metrics.snapshot()
            s1 = await sampler.sample_now()
            mark("settle")

            # ---- settle: with thousands of GpuPods the operator is still writing (queued
            # Events, the poller's status patches) well after the last one showed Running;
            # the steady window starts once it is quiet, and what it did meanwhile is here.
            log("settle: waiting until the operator is quiet")
            t_settle = time.monotonic()
            quiet_after = await self._wait_quiet(sampler, cfg.timeout)
            settled_metrics = await metrics.snapshot()
            s_settled = await sampler.sample_now()
            settle_kube = operator_counts(created_metrics, settled_metrics)
            settle_calls = dict(sim_ops_between(s1, s_settled))
            result["settle"] = {
                "seconds_to_quiet": None if quiet_after is None else round(quiet_after, 1),
                "seconds_to_quiet_after_all_running": round(time.monotonic() - t_running, 1),
                "remote_calls": settle_calls,
                "kube_writes": sum(S.split_targets(S.writes_by_target(settle_kube))[0].values()),
                "kube_requests": S.split_targets(S.by_verb_target(settle_kube))[0],
                "cpu": cpu_between(s1, s_settled),
                "note": "from the create phase's end (all Running + settle_seconds) until the "
                "operator used under 5% of a core for 3 s; the steady window starts there",
            }
            log(
                f"settle: quiet after {time.monotonic() - t_settle:.1f}s; K8s writes "
                f"{result['settle']['kube_writes']}, remote calls {S.fmt_ops(settle_calls, {})}"
            )
            # The create phase ends here: its writes and calls include the settle's.
            created_metrics, s1 = settled_metrics, s_settled
            procs1 = all_processes_cpu()
            stats1 = await sampler.sim_stats()
            mark("steady")

            # ---- steady state
            log(f"steady state: {n} Running and idle for {cfg.steady_seconds:g}s")
            steady_end = time.monotonic() + cfg.steady_seconds
            while (left := steady_end - time.monotonic()) > 0:
                await asyncio.sleep(min(15.0, left))
                if steady_end - time.monotonic() > 1:
                    calls = sim_ops_between(s1, sampler.samples[-1])
                    log(f"  steady: {S.fmt_ops(calls, {})} so far")
            s2 = await sampler.sample_now()
            procs2 = all_processes_cpu()
            steady_metrics = await metrics.snapshot()
            stats2 = await sampler.sim_stats()
            steady_calls = dict(sim_ops_between(s1, s2))
            window = s2.t - s1.t
            list_times = [
                b.t
                for a, b in itertools.pairwise(sampler.samples)
                if s1.t <= a.t
                and b.t <= s2.t
                and b.sim_by_op.get("list", 0) > a.sim_by_op.get("list", 0)
            ]
            steady_kube = operator_counts(created_metrics, steady_metrics)
            result["steady"] = {
                "window_seconds": round(window, 1),
                "remote_calls": steady_calls,
                "remote_calls_per_min": S.rate_per_minute(sum(steady_calls.values()), window),
                "by_op_per_min": {
                    op: S.rate_per_minute(c, window) for op, c in steady_calls.items()
                },
                "list_call_intervals_s": [round(x, 1) for x in S.intervals(list_times)],
                "kube_writes": sum(S.split_targets(S.writes_by_target(steady_kube))[0].values()),
                "kube_requests": S.split_targets(S.by_verb_target(steady_kube))[0],
                "cpu": cpu_between(s1, s2),
            }

            # ---- restart (optional): N GpuPods Running, the operator restarts
            hwm_before_restart = proc_memory_kib(operator.pid).get("VmHWM")
            old_operator_pids = [operator.pid]
            cpu_before_restart = cpu_between(s0, s2).get("operator") or 0.0
            if cfg.restart:
                mark("restart")
                log(f"restart: the operator restarts with {n} GpuPods Running")
                began = time.monotonic()
                await asyncio.to_thread(operator.restart)
                ready = time.monotonic() - began
                sampler.add_pid("operator", operator.pid)
                pids["operator"] = operator.pid
                quiet = await self._wait_quiet(sampler, cfg.timeout)
                self._dump_memory(operator.pid, "after the restart")
                memory_at["restarted"] = memory_detail(operator.pid)
                s_del = await sampler.sample_now()
                procs_del = all_processes_cpu()
                del_metrics = await metrics.snapshot()
                stats_del = await sampler.sim_stats()
                restart_kube = operator_counts(steady_metrics, del_metrics)
                restart_calls = dict(sim_ops_between(s2, s_del))
                restart_lists = [
                    b.t
                    for a, b in itertools.pairwise(sampler.samples)
                    if s2.t <= a.t
                    and b.t <= s_del.t
                    and b.sim_by_op.get("list", 0) > a.sim_by_op.get("list", 0)
                ]
                result["restart"] = {
                    "window_seconds": round(s_del.t - s2.t, 1),
                    # A window longer than the sync interval holds periodic Lists too.
                    "list_call_times_s": [round(t - s2.t, 1) for t in restart_lists],
                    "seconds_to_live": round(ready, 2),
                    "seconds_to_quiet": None if quiet is None else round(quiet + ready, 2),
                    "remote_calls": restart_calls,
                    "remote_calls_per_gpupod": S.per_item(restart_calls, n),
                    "kube_requests": S.split_targets(S.by_verb_target(restart_kube))[0],
                    "kube_writes_per_gpupod": S.per_item(
                        S.split_targets(S.writes_by_target(restart_kube))[0], n
                    ),
                    "operator_cpu_seconds": s_del.cpu.get("operator"),
                    "rss_after_resume_mib": round((s_del.rss_kib.get("operator") or 0) / MIB, 1),
                    "note": "quiet = the new operator used under 5% of a core for 3 s",
                }
                log(
                    f"restart: live after {ready:.1f}s, quiet after "
                    f"{result['restart']['seconds_to_quiet']}s; remote calls "
                    f"{S.fmt_ops(restart_calls, {})}; K8s writes "
                    f"{sum(S.split_targets(S.writes_by_target(restart_kube))[0].values())}"
                )
            else:
                s_del, procs_del, del_metrics, stats_del = s2, procs2, steady_metrics, stats2
            mark("delete")

            # ---- delete
            if cfg.profile:
                spy = PySpy(operator.pid, cfg.out_dir / f"{self.base}-profile-delete.txt")
                if not spy.start():
                    spy = None
            log(f"deleting {n} GpuPods")
            delete_started: dict[str, float] = {}

            async def delete(name: str) -> None:
                delete_started[name] = time.monotonic()
                await kube.delete_gpupod(namespace, name)

            t_delete = time.monotonic()
            await asyncio.wait_for(run_pool(names, cfg.concurrency, delete), cfg.timeout)
            delete_client = time.monotonic() - t_delete

            def gone() -> int:
                return watcher.deleted

            ok = await watcher.wait_for(
                lambda: gone() >= n,
                cfg.timeout,
                lambda: log(f"  gone {gone()}/{n}"),
                progress=gone,
                stall_seconds=cfg.stall_seconds,
            )
            if not ok:
                raise BenchFailure(
                    f"only {gone()}/{n} GpuPods gone after "
                    f"{time.monotonic() - t_delete:.0f}s (limit {cfg.timeout:g}s, or none more "
                    f"for {cfg.stall_seconds:g}s)"
                )
            t_gone = max(t.deleted for t in watcher.tracks.values() if t.deleted is not None)
            mark("all gone")
            self.delete_latencies = [
                watcher.tracks[name].deleted - delete_started[name]  # type: ignore[operator]
                for name in names
            ]
            result["delete"] = {
                "client_seconds": round(delete_client, 3),
                "seconds_all_gone": round(t_gone - t_delete, 3),
                "throughput_per_s": round(n / (t_gone - t_delete), 2),
                "latency": S.summarize(self.delete_latencies).to_json(),
            }
            log(f"all {n} gone after {t_gone - t_delete:.2f}s")
            await asyncio.sleep(min(cfg.settle_seconds, 3.0))
            if spy is not None:
                spy.stop()
                summary = spy.summary()
                if summary is not None:
                    result.setdefault("profile", {})["delete"] = summary.to_json()
                    spy.output.with_suffix(".summary.txt").write_text(summary.render() + "\n")
                spy = None
            deleted_metrics = await metrics.snapshot()
            procs3 = all_processes_cpu()
            s3 = await sampler.sample_now()
            stats3 = await sampler.sim_stats()

            # ---- remote calls
            create_req = S.diff_nested(S.sim_requests(stats1), S.sim_requests(stats0))
            delete_req = S.diff_nested(S.sim_requests(stats3), S.sim_requests(stats_del))
            total_req = S.diff_nested(S.sim_requests(stats3), S.sim_requests(stats0))
            totals = S.totals_by_op(total_req)
            create_ops = S.totals_by_op(create_req)
            delete_ops = S.totals_by_op(delete_req)
            active = {
                op: create_ops.get(op, 0) + delete_ops.get(op, 0)
                for op in sorted(set(create_ops) | set(delete_ops))
            }
            result["remote_calls"] = {
                "create_phase": create_ops,
                "steady_phase": steady_calls,
                "delete_phase": delete_ops,
                "total": totals,
                "per_gpupod": S.per_item(active, n),
                "per_gpupod_including_steady": S.per_item(totals, n),
                "results": total_req,
                "note": "per_gpupod counts the create phase (apply -> all Running -> quiet) and "
                "the delete phase (delete -> all gone + settle), not the idle window",
            }

            # ---- Kubernetes requests
            create_kube = operator_counts(base_metrics, created_metrics)
            delete_kube = operator_counts(del_metrics, deleted_metrics)
            total_kube = operator_counts(base_metrics, deleted_metrics)
            writes, housekeeping = S.split_targets(
                S.add_counts(S.writes_by_target(create_kube), S.writes_by_target(delete_kube))
            )
            reads, housekeeping_reads = S.split_targets(S.reads_by_target(total_kube))
            housekeeping.update(S.split_targets(S.writes_by_target(total_kube))[1])
            result["kube"] = {
                "operator_writes_per_gpupod": S.per_item(writes, n),
                "operator_writes_per_gpupod_by_phase": {
                    "create": S.per_item(S.split_targets(S.writes_by_target(create_kube))[0], n),
                    "delete": S.per_item(S.split_targets(S.writes_by_target(delete_kube))[0], n),
                },
                "operator_requests": {
                    "create_phase": S.split_targets(S.by_verb_target(create_kube))[0],
                    "steady_phase": S.split_targets(S.by_verb_target(steady_kube))[0],
                    "delete_phase": S.split_targets(S.by_verb_target(delete_kube))[0],
                },
                "operator_reads": reads,
                "errors": S.errors_by_code(total_kube),
                "apiserver_housekeeping": {**housekeeping, **housekeeping_reads},
                "bench_own_requests": {f"{v} {t}": c for (v, t), c in sorted(kube.own.items())},
                "note": "apiserver_request_total deltas minus the bench's own requests, limited "
                "to gpupods, gpupods/status, events and secrets (the rest is the API server's "
                "own housekeeping); long-running WATCH requests are counted when they end",
            }
            result["watch_events_per_gpupod"] = S.per_item(
                dict(sum((t.events for t in watcher.tracks.values()), Counter())), n, 2
            )
            phase_paths = Counter(" > ".join(t.phases) for t in watcher.tracks.values())
            result["phase_paths"] = dict(phase_paths.most_common(5))

            # ---- checks
            pods = sim.pods()
            live = [p for p in pods if p.get("status") not in ("TERMINATED",)]
            pod_ids = [watcher.tracks[name].pod_id for name in names]
            distinct = len({p for p in pod_ids if p})
            creates_ok = create_req.get("create", {}).get("ok", 0)
            creates_all = sum(total_req.get("create", {}).values())
            result["checks"] = {
                "remote_creates": creates_all,
                "remote_creates_ok": creates_ok,
                "distinct_pod_ids": distinct,
                "gpupods_without_pod_id": sum(1 for p in pod_ids if not p),
                "remote_pods_total": len(pods),
                "live_remote_pods_at_end": len(live),
                "ok": creates_all == n and distinct == n and not live,
            }

            # ---- operator resources
            hwm_now = proc_memory_kib(operator.pid).get("VmHWM")
            hwm = max((x for x in (hwm_before_restart, hwm_now) if x is not None), default=None)
            peak = max(x for x in (sampler.peak_rss("operator"), hwm) if x is not None)
            cpu_delete = cpu_between(s_del, s3).get("operator") or 0.0
            result["operator"] = {
                "pid": operator.pid,
                "peak_rss_mib": round(peak / MIB, 1),
                "vm_hwm_mib": None if hwm is None else round(hwm / MIB, 1),
                "rss_before_apply_mib": round((s0.rss_kib.get("operator") or 0) / MIB, 1),
                "peak_rss_create_phase_mib": round(
                    (sampler.peak_rss("operator", s0.t, s1.t) or 0) / MIB, 1
                ),
                "rss_growth_create_kib_per_gpupod": round(
                    (
                        (sampler.peak_rss("operator", s0.t, s1.t) or 0)
                        - (s0.rss_kib.get("operator") or 0)
                    )
                    / n,
                    1,
                ),
                "rss_at_end_mib": round(
                    (sampler.samples[-1].rss_kib.get("operator") or 0) / MIB, 1
                ),
                "cpu_seconds": round(cpu_before_restart + cpu_delete, 2),
                "cpu_seconds_by_phase": {
                    "create": cpu_between(s0, s1).get("operator"),
                    "steady": cpu_between(s1, s2).get("operator"),
                    "restart": (result.get("restart") or {}).get("operator_cpu_seconds"),
                    "delete": cpu_delete,
                },
                "memory_kib_at": {**memory_at, "end": memory_detail(operator.pid)},
                "note": "cpu_seconds = create + steady + delete phases (not the restart)",
            }
            ours = set(pids.values()) | set(old_operator_pids)
            result["cpu_seconds"] = {
                "create_phase": cpu_between(s0, s1),
                "steady_phase": cpu_between(s1, s2),
                "restart_phase": cpu_between(s2, s_del) if cfg.restart else {},
                "delete_phase": cpu_between(s_del, s3),
                "others_by_command": {
                    "create_phase": top_other(procs0, procs1, ours),
                    "steady_phase": top_other(procs1, procs2, ours),
                    "delete_phase": top_other(procs_del, procs3, ours),
                },
                "note": "'other' = the machine's busy time minus our processes: other work on "
                "this shared machine (and kernel time not charged to a process)",
            }
        finally:
            if spy is not None:
                spy.stop()
            await watcher.stop()
            await sampler.stop()
            await kube.aclose()
            result["phase_marks"] = marks
            result["series"] = sampler.series()
            result["sampler_errors"] = sampler.errors


def run_once(cfg: RunConfig) -> dict[str, Any]:
    return Run(cfg).execute()


def load_results(paths: list[Path]) -> list[Mapping[str, Any]]:
    return [json.loads(p.read_text()) for p in paths]


def interpreter() -> str:
    return sys.executable


Printer = Callable[[str], None]
