"""Kubernetes Events for transitions and errors, posted in the background.

`record` only logs and queues: an Event is never on a reconcile's path (it was ~10% of the
operator's CPU inline, make bench) and never a reason for it to fail. One worker drains the
queue through the official client. The queue is bounded; when it is full, a Normal Event is
dropped (and logged) but a Warning waits for room.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from gpupod_operator.controller.kube import ObjectRef
from gpupod_operator.domain.status import transition_event

log = logging.getLogger(__name__)

NORMAL = "Normal"
WARNING = "Warning"
MAX_MESSAGE = 1024  # the API server's limit for an Event message
QUEUE_SIZE = 10_000
WORKERS = 8  # concurrent posts: a burst of 1000 GpuPods posts ~2000 Events

Post = Callable[[ObjectRef, str, str, str], Awaitable[None]]
_Item = tuple[ObjectRef, str, str, str]


class EventRecorder:
    def __init__(self, post: Post) -> None:
        self._post = post
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(QUEUE_SIZE)
        self._overflow: list[_Item] = []  # Warnings waiting for room in a full queue

    def record(self, ref: ObjectRef, type_: str, reason: str, message: str) -> None:
        log.log(
            logging.WARNING if type_ == WARNING else logging.INFO,
            "%s/%s %s: %s",
            ref.namespace,
            ref.name,
            reason,
            message,
        )
        item = (ref, type_, reason, message[:MAX_MESSAGE])
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            if type_ == WARNING:
                self._overflow.append(item)
            else:
                log.warning("event queue full: dropped %s for %s/%s", reason, *_where(ref))

    def normal(self, ref: ObjectRef, reason: str, message: str) -> None:
        self.record(ref, NORMAL, reason, message)

    def warning(self, ref: ObjectRef, reason: str, message: str) -> None:
        self.record(ref, WARNING, reason, message)

    def transition(
        self, ref: ObjectRef, old_phase: str | None, fields: Mapping[str, Any], pod_id: str | None
    ) -> None:
        """An Event when `fields` (a status update) move the GpuPod into a notable phase."""
        event = transition_event(old_phase, fields, pod_id)
        if event is not None:
            reason, bad, message = event
            self.record(ref, WARNING if bad else NORMAL, reason, message)

    def pending(self) -> int:
        return self._queue.qsize() + len(self._overflow)

    async def run(self) -> None:
        """Post queued Events forever."""
        await asyncio.gather(*(self._work() for _ in range(WORKERS)))

    async def _work(self) -> None:
        while True:
            item = await self._queue.get()
            if self._overflow and not self._queue.full():
                self._queue.put_nowait(self._overflow.pop(0))
            try:
                await self._post(*item)
            except Exception as e:  # an Event must never stop the others
                log.warning("could not post event %s for %s/%s: %r", item[2], *_where(item[0]), e)
            finally:
                self._queue.task_done()

    async def flush(self) -> None:
        """Post everything queued now, here (tests, and a worker-less shutdown)."""
        while not self._queue.empty():
            item = self._queue.get_nowait()
            try:
                await self._post(*item)
            finally:
                self._queue.task_done()

    async def drain(self, within: float) -> None:
        """At shutdown: give the queued Events a moment to be posted."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await self._queue.join()


def _where(ref: ObjectRef) -> tuple[str, str]:
    return ref.namespace, ref.name
