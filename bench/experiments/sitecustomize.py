"""Experiments: patches applied to the OPERATOR process (not the bench) at interpreter start,
to measure a proposed change before anyone edits the operator.

The bench puts this directory on the operator's PYTHONPATH and names the experiments in
GPUPOD_BENCH_EXPERIMENTS (comma-separated); Python imports `sitecustomize` at startup. Without
that variable nothing here runs. Each experiment is the smallest stand-in for a proposed change:

- consistency-60: kopf waits up to 60 s (default 5) for its own patch to come back through the
  watch before acting on an older body (under load it re-ran create handlers on stale bodies).
- worker-limit-100 (or worker-limit-N): kopf processes at most N objects at once
  (settings.queueing.worker_limit; the operator sets None = unlimited), which bounds the
  transient memory of a burst.
- queue-idle-S (e.g. queue-idle-1): kopf's per-object worker exits after S idle seconds
  (settings.queueing.idle_timeout, default 5): a worker holds its object's last body.
- malloc-trim: every 5 s, glibc malloc_trim(0): shows how much of the RSS is freed memory the
  allocator kept (a stand-in for MALLOC_TRIM_THRESHOLD_/MALLOC_ARENA_MAX tuning).
- kopf-pool-N (e.g. kopf-pool-20): kopf's own aiohttp session keeps at most N connections
  (kopf builds it with limit=0 = unlimited: a burst of N concurrent patches opens up to N TLS
  connections, each with its buffers, and most stay in the pool).
- census: not a change but a diagnosis: every 2 s append to $GPUPOD_BENCH_CENSUS_OUT (default
  /tmp/gpupod-census.pid<pid>) one JSON line: RSS, glibc mallinfo2 (in use / free in arenas,
  mmapped), pymalloc blocks, asyncio tasks and where they wait, watch events queued in kopf's
  per-object queues and one event's deep size, and the live objects by type (cheap enough to
  leave timings roughly intact; tells live objects from allocator slack).
- gc-collect-S: a full gc.collect() every S seconds (prints how many unreachable objects each
  found): shows how much of the RSS is cyclic garbage waiting for the oldest generation.
- coalesce-reads: concurrent identical tenancy reads of KubeApi (list_objects, find_object,
  get_namespace_labels) share one request: in a burst, hundreds of handlers otherwise wait on
  the client's pool for the same GpuTenantPolicy list / account / namespace, each holding its
  stack and body.
- tracemalloc: not a change but a diagnosis: trace Python allocations ($GPUPOD_BENCH_TRACEMALLOC_
  FRAMES deep, default 1) and write the
  top allocation sites to $GPUPOD_BENCH_TRACEMALLOC_OUT.<n> (and the whole snapshot, to load
  with tracemalloc.Snapshot.load, to <n>.snapshot) on each SIGUSR1 (slows the
  operator: never combine with timing runs).

(kube-semaphore, events-background, lean-delete, reconcile-limit-N and strip-managed-fields
were measured here and are now in the product: the official client's connection pool, the
background Event poster, no status write on release, `--max-concurrent-reconciles` (try other
bounds with `--operator-arg=--max-concurrent-reconciles=N`) and controller.watch_transform.)

`python -m bench --experiment` lists the plain names it accepts; the parametric ones
(NAME-<number>) and census are validated here only.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

ENV = "GPUPOD_BENCH_EXPERIMENTS"
KNOWN = (
    "consistency-60",
    "worker-limit-100",
    "malloc-trim",
    "tracemalloc",
    "kopf-pool-N",
    "coalesce-reads",
    "worker-limit-N",
    "queue-idle-S",
    "gc-collect-S",
    "census",
)


def _census() -> None:
    import ctypes
    import gc
    import json
    import sys
    import threading
    import time
    from collections import Counter

    class MallInfo2(ctypes.Structure):
        _fields_ = [
            (name, ctypes.c_size_t)
            for name in (
                "arena",
                "ordblks",
                "smblks",
                "hblks",
                "hblkhd",
                "usmblks",
                "fsmblks",
                "uordblks",
                "fordblks",
                "keepcost",
            )
        ]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    out = os.environ.get("GPUPOD_BENCH_CENSUS_OUT", "/tmp/gpupod-census") + f".pid{os.getpid()}"
    loops: list[asyncio.AbstractEventLoop] = []

    def rss_kib() -> int:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def deep_size(obj: Any) -> int:
        seen: set[int] = set()
        stack, total = [obj], 0
        while stack:
            o = stack.pop()
            if id(o) in seen:
                continue
            seen.add(id(o))
            total += sys.getsizeof(o)
            if isinstance(o, dict):
                stack += [*o.keys(), *o.values()]
            elif isinstance(o, list | tuple):
                stack += list(o)
        return total

    def sample() -> dict[str, Any]:
        m = libc.mallinfo2()
        by_type = Counter(type(o).__name__ for o in gc.get_objects())
        row: dict[str, Any] = {
            "t": round(time.time(), 1),
            "rss_kib": rss_kib(),
            "malloc_arena_kib": m.arena // 1024,
            "malloc_inuse_kib": m.uordblks // 1024,
            "malloc_free_kib": m.fordblks // 1024,
            "mmap_kib": m.hblkhd // 1024,
            "pymalloc_blocks": sys.getallocatedblocks(),
            "gc_objects": sum(by_type.values()),
            "top_types": by_type.most_common(25),
        }
        if loops:
            tasks = asyncio.all_tasks(loops[0])
            row["tasks"] = len(tasks)
            # Where the tasks wait: the outermost operator frame and the innermost frame.
            where: Counter[str] = Counter()
            for task in list(tasks):
                coro: Any = task.get_coro()
                chain: list[str] = []
                while coro is not None and len(chain) < 60:
                    code = getattr(coro, "cr_code", None) or getattr(coro, "ag_code", None)
                    if code is None:
                        break
                    chain.append(code.co_name)
                    coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
                where[f"{len(chain)}:{'>'.join(chain[-4:])}"] += 1
            row["task_waits"] = where.most_common(12)
        # Watch events waiting in kopf's per-object queues, and one body's deep size.
        queues = [o for o in gc.get_objects() if isinstance(o, asyncio.Queue)]
        row["queued_items"] = sum(q.qsize() for q in queues)
        bodies = [
            item
            for q in queues
            for item in list(getattr(q, "_queue", ()))[:1]
            if isinstance(item, dict) and "object" in item
        ]
        if bodies:
            row["event_deep_bytes"] = deep_size(bodies[0])
        return row

    def forever() -> None:
        while True:
            time.sleep(2.0)
            try:
                row = sample()  # from a thread: counts may be a little off, never by much
            except Exception as exc:  # a diagnosis must never take the operator down
                row = {"error": repr(exc)}
            with open(out, "a") as handle:
                handle.write(json.dumps(row) + "\n")

    original = asyncio.BaseEventLoop.run_forever

    def run_forever(self: asyncio.BaseEventLoop) -> None:
        loops.append(self)
        original(self)

    asyncio.BaseEventLoop.run_forever = run_forever  # type: ignore[method-assign]
    threading.Thread(target=forever, name="bench-census", daemon=True).start()


def _gc_collect(seconds: float) -> None:
    import gc

    import kopf

    from gpupod_operator.controller import handlers  # noqa: F401 - registers the real handlers

    tasks: list[asyncio.Task[None]] = []
    collected: list[int] = []

    async def collect_forever() -> None:
        while True:
            await asyncio.sleep(seconds)
            collected.append(gc.collect())
            if len(collected) % 10 == 0:
                print(f"bench gc-collect: unreachable per collect {collected[-10:]}", flush=True)

    @kopf.on.startup()
    async def bench_gc_collect(**_: Any) -> None:
        tasks.append(asyncio.create_task(collect_forever()))


def _coalesce_reads() -> None:
    import functools

    from gpupod_operator.controller.kube import KubeApi

    def coalesced(method: Any) -> Any:
        flights: dict[tuple[Any, ...], asyncio.Future[Any]] = {}

        @functools.wraps(method)
        async def wrapper(self: Any, *args: Any) -> Any:
            key = (id(self), *args)
            flight = flights.get(key)
            if flight is None:
                flight = asyncio.ensure_future(method(self, *args))
                flights[key] = flight
                flight.add_done_callback(lambda _: flights.pop(key, None))
            return await asyncio.shield(flight)

        return wrapper

    for name in ("list_objects", "find_object", "get_namespace_labels"):
        setattr(KubeApi, name, coalesced(getattr(KubeApi, name)))


def _kopf_pool(limit: int) -> None:
    import types

    import aiohttp
    from kopf._cogs.clients import auth

    class Capped(aiohttp.TCPConnector):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            if not kwargs.get("limit"):  # kopf's limit=0 means unlimited
                kwargs["limit"] = limit
            super().__init__(*args, **kwargs)

    # Only kopf's module sees the capped class; kubernetes.aio sets its own limit.
    auth.aiohttp = types.SimpleNamespace(**{**vars(aiohttp), "TCPConnector": Capped})  # type: ignore[assignment,attr-defined]


def _consistency() -> None:
    import kopf

    from gpupod_operator.controller import handlers  # noqa: F401 - registers the real handlers

    @kopf.on.startup()
    async def bench_consistency(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.consistency_timeout = 60.0


def _worker_limit(limit: int = 100) -> None:
    import kopf

    from gpupod_operator.controller import handlers  # noqa: F401 - registers the real handlers

    @kopf.on.startup()
    async def bench_worker_limit(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.queueing.worker_limit = limit


def _queue_idle(seconds: float) -> None:
    import kopf

    from gpupod_operator.controller import handlers  # noqa: F401 - registers the real handlers

    @kopf.on.startup()
    async def bench_queue_idle(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.queueing.idle_timeout = seconds


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
        snapshot.dump(f"{out}.{dumps[0]}.snapshot")  # for tracemalloc.Snapshot.load
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
    table = {  # in the order they are applied (tracemalloc first: it traces the others)
        "tracemalloc": _tracemalloc,
        "consistency-60": _consistency,
        "worker-limit-100": _worker_limit,
        "malloc-trim": _malloc_trim,
        "coalesce-reads": _coalesce_reads,
    }
    for name, run_it in table.items():
        if name in names:
            run_it()
    if "census" in names:
        _census()
    # Parametric ones: NAME-<number>.
    prefixes: dict[str, Callable[[str], None]] = {
        "kopf-pool-": lambda v: _kopf_pool(int(v)),
        "worker-limit-": lambda v: _worker_limit(int(v)),
        "queue-idle-": lambda v: _queue_idle(float(v)),
        "gc-collect-": lambda v: _gc_collect(float(v)),
    }
    done = set(table) | {"census"}
    for name in names:
        for prefix, run in prefixes.items():
            if name.startswith(prefix) and name not in table:
                run(name.removeprefix(prefix))
                done.add(name)
    unknown = sorted(set(names) - done)
    if unknown:
        raise SystemExit(f"unknown bench experiments: {unknown}; known: {list(KNOWN)}")


_names = [n.strip() for n in os.environ.get(ENV, "").split(",") if n.strip()]
if _names:
    apply(_names)
