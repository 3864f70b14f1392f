"""Experiments: patches applied to the OPERATOR process (not the bench) at interpreter start,
to measure a proposed change before anyone edits the operator.

The bench puts this directory on the operator's PYTHONPATH and names the experiments in
GPUPOD_BENCH_EXPERIMENTS (comma-separated); Python imports `sitecustomize` at startup. Without
that variable nothing here runs. Each experiment is the smallest stand-in for a proposed change:

- consistency-60: kopf waits up to 60 s (default 5) for its own patch to come back through the
  watch before acting on an older body (under load it re-ran create handlers on stale bodies).
- worker-limit-100: kopf processes at most 100 objects at once (settings.queueing.worker_limit;
  the operator sets None = unlimited), which bounds the transient memory of a burst.

(kube-semaphore, events-background and lean-delete were measured here and are now in the
product: the official client's connection pool, the background Event poster, and no status
write on release.)
- malloc-trim: every 5 s, glibc malloc_trim(0): shows how much of the RSS is freed memory the
  allocator kept (a stand-in for MALLOC_TRIM_THRESHOLD_/MALLOC_ARENA_MAX tuning).
- tracemalloc: not a change but a diagnosis: trace Python allocations ($GPUPOD_BENCH_TRACEMALLOC_
  FRAMES deep, default 1) and write the
  top allocation sites to $GPUPOD_BENCH_TRACEMALLOC_OUT.<n> on each SIGUSR1 (slows the
  operator: never combine with timing runs).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

ENV = "GPUPOD_BENCH_EXPERIMENTS"
KNOWN = (
    "consistency-60",
    "worker-limit-100",
    "malloc-trim",
    "tracemalloc",
)


def _consistency() -> None:
    import kopf

    from gpupod_operator.controller import handlers  # noqa: F401 - registers the real handlers

    @kopf.on.startup()
    async def bench_consistency(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.consistency_timeout = 60.0


def _worker_limit() -> None:
    import kopf

    from gpupod_operator.controller import handlers  # noqa: F401 - registers the real handlers

    @kopf.on.startup()
    async def bench_worker_limit(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.queueing.worker_limit = 100


def _malloc_trim() -> None:
    import ctypes

    import kopf

    from gpupod_operator.controller import handlers  # noqa: F401 - registers the real handlers

    libc = ctypes.CDLL("libc.so.6")
    tasks: list[asyncio.Task[None]] = []

    async def trim_forever() -> None:
        while True:
            await asyncio.sleep(5.0)
            libc.malloc_trim(0)

    @kopf.on.startup()
    async def bench_malloc_trim(**_: Any) -> None:
        tasks.append(asyncio.create_task(trim_forever()))


def _tracemalloc() -> None:
    import gc
    import signal
    import tracemalloc

    out = os.environ.get("GPUPOD_BENCH_TRACEMALLOC_OUT", "/tmp/gpupod-tracemalloc")
    tracemalloc.start(int(os.environ.get("GPUPOD_BENCH_TRACEMALLOC_FRAMES", "1")))
    dumps = [0]
    out = f"{out}.pid{os.getpid()}"

    def dump(signum: int, frame: Any) -> None:
        gc.collect()
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__)]
        )
        current, peak = tracemalloc.get_traced_memory()
        dumps[0] += 1
        lines = [f"traced current {current / 2**20:.1f} MiB, peak {peak / 2**20:.1f} MiB"]
        for group in ("filename", "lineno"):
            lines.append(f"-- top by {group}")
            for stat in snapshot.statistics(group)[:30]:
                lines.append(f"{stat.size / 2**20:8.2f} MiB {stat.count:8d}  {stat.traceback[0]}")
        lines.append("-- top tracebacks")
        for stat in snapshot.statistics("traceback")[:12]:
            lines.append(f"{stat.size / 2**20:8.2f} MiB {stat.count:8d}")
            lines += [f"      {frame}" for frame in stat.traceback.format()[-16:]]
        with open(f"{out}.{dumps[0]}", "w") as handle:
            handle.write("\n".join(lines) + "\n")

    signal.signal(signal.SIGUSR1, dump)


def apply(names: list[str]) -> None:
    order = ["tracemalloc", "consistency-60", "worker-limit-100", "malloc-trim"]
    table = {
        "consistency-60": _consistency,
        "tracemalloc": _tracemalloc,
        "worker-limit-100": _worker_limit,
        "malloc-trim": _malloc_trim,
    }
    for name in order:
        if name in names:
            table[name]()
    unknown = sorted(set(names) - set(table))
    if unknown:
        raise SystemExit(f"unknown bench experiments: {unknown}; known: {list(KNOWN)}")


_names = [n.strip() for n in os.environ.get(ENV, "").split(",") if n.strip()]
if _names:
    apply(_names)
