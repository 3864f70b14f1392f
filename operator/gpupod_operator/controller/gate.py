"""A bound on the reconciles of one namespace that run at once (`--max-concurrent-reconciles`).

kopf starts a worker for every GpuPod an event arrives for, and its handler runs at once: a
burst of N applied GpuPods is N reconciles in flight, each holding its body, its stack and the
watch events its own status writes bring back while it waits for a connection. That state was
most of the operator's memory growth in a burst (make bench: 64 KiB per GpuPod at N=1000,
about 40 with a bound of 64), and the extra concurrency bought no speed: the Kubernetes
writes are the bottleneck. controller-runtime's MaxConcurrentReconciles is the same idea.

Why per namespace: a reconcile may wait on its account's rate limiter (a tenant's
YottaAccount can allow 1 request per second); with one bound for all, one tenant's burst
would make every other tenant wait. Deletes are not gated (reconciler.finalize): a delete
may wait for the remote pod for seconds, and must never queue behind creates.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class ReconcileGate:
    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"the reconcile limit must be at least 1, not {limit}")
        self.limit = limit
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._holders: dict[str, int] = {}  # running + waiting, per namespace: when to drop
        self.waiting = 0  # reconciles queued here now, all namespaces (a metric)

    @asynccontextmanager
    async def slot(self, namespace: str) -> AsyncIterator[None]:
        slots = self._slots.setdefault(namespace, asyncio.Semaphore(self.limit))
        self._holders[namespace] = self._holders.get(namespace, 0) + 1
        try:
            self.waiting += 1
            try:
                await slots.acquire()  # FIFO: the GpuPods of a burst start in order
            finally:
                self.waiting -= 1
            try:
                yield
            finally:
                slots.release()
        finally:
            self._holders[namespace] -= 1
            if not self._holders[namespace]:  # no one runs or waits: forget the namespace
                del self._holders[namespace]
                del self._slots[namespace]

    def namespaces(self) -> int:
        """Namespaces with a reconcile running or waiting now."""
        return len(self._slots)
