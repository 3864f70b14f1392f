"""One sample per second for the whole run: the simulator's request counters, and CPU / RSS of
every process involved (operator, simulator, kube-apiserver, etcd, this bench) plus the whole
machine (so load from other work on the machine shows)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .stats import parse_proc_stat_cpu, parse_proc_status, parse_system_cpu, sim_total

TICKS = float(os.sysconf("SC_CLK_TCK"))


def proc_cpu_seconds(pid: int) -> float | None:
    try:
        return parse_proc_stat_cpu(Path(f"/proc/{pid}/stat").read_text(), TICKS)
    except (OSError, ValueError, IndexError):
        return None


def proc_memory_kib(pid: int) -> dict[str, int]:
    try:
        return parse_proc_status(Path(f"/proc/{pid}/status").read_text())
    except OSError:
        return {}


def system_cpu() -> tuple[float, float]:
    return parse_system_cpu(Path("/proc/stat").read_text(), TICKS)


def loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return []


def all_processes_cpu() -> dict[int, tuple[str, float]]:
    """{pid: (comm, cumulative CPU seconds)} for every process we can read."""
    out: dict[int, tuple[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
            comm = text[text.index("(") + 1 : text.rindex(")")]
            out[int(entry.name)] = (comm, parse_proc_stat_cpu(text, TICKS))
        except (OSError, ValueError, IndexError):
            continue
    return out


def top_other(
    before: Mapping[int, tuple[str, float]],
    after: Mapping[int, tuple[str, float]],
    ours: set[int],
    top: int = 6,
) -> dict[str, float]:
    """CPU seconds used between two snapshots by processes that are not ours, by command name
    (processes that started and ended in between are not seen)."""
    by_comm: dict[str, float] = {}
    for pid, (comm, cpu) in after.items():
        if pid in ours:
            continue
        start = before.get(pid, (comm, 0.0))[1] if pid in before else 0.0
        delta = cpu - start
        if delta > 0.05:
            by_comm[comm] = by_comm.get(comm, 0.0) + delta
    ranked = sorted(by_comm.items(), key=lambda kv: -kv[1])[:top]
    return {comm: round(cpu, 2) for comm, cpu in ranked}


@dataclass
class Sample:
    t: float  # seconds since the sampler's origin
    sim_by_op: dict[str, int]
    sim_total: int
    cpu: dict[str, float | None]  # process label -> cumulative CPU seconds
    rss_kib: dict[str, int | None]
    hwm_kib: dict[str, int | None]
    system_busy: float
    system_total: float


@dataclass
class Sampler:
    sim_url: str
    pids: dict[str, int]
    origin: float = field(default_factory=time.monotonic)
    interval: float = 1.0
    samples: list[Sample] = field(default_factory=list)
    errors: int = 0
    _task: asyncio.Task[None] | None = None
    _http: httpx.AsyncClient | None = None

    def add_pid(self, label: str, pid: int) -> None:
        self.pids[label] = pid

    async def start(self) -> None:
        self._http = httpx.AsyncClient(timeout=5.0)
        await self.sample_now()
        self._task = asyncio.create_task(self._run(), name="sampler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._http is not None:
            try:
                await self.sample_now()
            finally:
                await self._http.aclose()
                self._http = None

    async def _run(self) -> None:
        next_at = time.monotonic() + self.interval
        while True:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at += self.interval
            try:
                await self.sample_now()
            except (httpx.HTTPError, OSError, ValueError):
                self.errors += 1

    async def sim_stats(self) -> dict[str, Any]:
        assert self._http is not None
        response = await self._http.get(f"{self.sim_url}/_sim/stats")
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    async def sample_now(self) -> Sample:
        stats = await self.sim_stats()
        by_op = {
            op: sum(int(v) for v in results.values())
            for op, results in (stats.get("requests") or {}).items()
        }
        busy, total = system_cpu()
        memory = {label: proc_memory_kib(pid) for label, pid in self.pids.items()}
        sample = Sample(
            t=time.monotonic() - self.origin,
            sim_by_op=by_op,
            sim_total=sim_total(stats),
            cpu={label: proc_cpu_seconds(pid) for label, pid in self.pids.items()},
            rss_kib={label: m.get("VmRSS") for label, m in memory.items()},
            hwm_kib={label: m.get("VmHWM") for label, m in memory.items()},
            system_busy=busy,
            system_total=total,
        )
        self.samples.append(sample)
        return sample

    # ------------------------------------------------------------------ queries

    def at(self, t: float) -> Sample | None:
        """The last sample taken at or before t (seconds since origin)."""
        best: Sample | None = None
        for sample in self.samples:
            if sample.t <= t:
                best = sample
            else:
                break
        return best

    def peak(self, label: str) -> int | None:
        values = [s.hwm_kib.get(label) or s.rss_kib.get(label) for s in self.samples]
        present = [v for v in values if v is not None]
        return max(present) if present else None

    def peak_rss(self, label: str, start: float = 0.0, end: float = float("inf")) -> int | None:
        present = [
            v
            for s in self.samples
            if start <= s.t <= end and (v := s.rss_kib.get(label)) is not None
        ]
        return max(present) if present else None

    def series(self) -> list[dict[str, Any]]:
        return [
            {
                "t": round(s.t, 3),
                "sim": s.sim_by_op,
                "cpu": {k: None if v is None else round(v, 3) for k, v in s.cpu.items()},
                "rss_kib": s.rss_kib,
                "system_busy": round(s.system_busy, 2),
            }
            for s in self.samples
        ]


def cpu_between(a: Sample | None, b: Sample | None) -> dict[str, float | None]:
    """CPU seconds each process used between two samples, plus the machine's and 'other'."""
    if a is None or b is None:
        return {}
    out: dict[str, float | None] = {}
    ours = 0.0
    for label, end in b.cpu.items():
        start = a.cpu.get(label)
        if end is None or start is None:
            out[label] = None
            continue
        # A counter that went down belongs to a new process under the same label (restart).
        delta = end - start if end >= start else end
        out[label] = round(delta, 3)
        ours += delta
    machine = b.system_busy - a.system_busy
    out["machine"] = round(machine, 3)
    out["other"] = round(max(0.0, machine - ours), 3)
    out["wall"] = round(b.t - a.t, 3)
    return out


def sim_ops_between(a: Sample | None, b: Sample | None) -> Mapping[str, int]:
    if a is None or b is None:
        return {}
    return {
        op: b.sim_by_op.get(op, 0) - a.sim_by_op.get(op, 0)
        for op in sorted(set(a.sim_by_op) | set(b.sim_by_op))
        if b.sim_by_op.get(op, 0) - a.sim_by_op.get(op, 0)
    }
