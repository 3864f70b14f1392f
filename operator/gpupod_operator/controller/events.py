"""Kubernetes Events for every transition and error: best effort, never a reason to fail."""

from __future__ import annotations

import logging

from gpupod_operator.controller.kube import KubeApi, ObjectRef

log = logging.getLogger(__name__)

NORMAL = "Normal"
WARNING = "Warning"


class EventRecorder:
    def __init__(self, kube: KubeApi) -> None:
        self._kube = kube

    async def record(self, ref: ObjectRef, type_: str, reason: str, message: str) -> None:
        log.log(
            logging.WARNING if type_ == WARNING else logging.INFO,
            "%s/%s %s: %s",
            ref.namespace,
            ref.name,
            reason,
            message,
        )
        try:
            await self._kube.post_event(ref, type_, reason, message)
        except Exception as e:  # an Event must never break a reconcile
            log.warning("could not post event %s for %s/%s: %r", reason, ref.namespace, ref.name, e)

    async def normal(self, ref: ObjectRef, reason: str, message: str) -> None:
        await self.record(ref, NORMAL, reason, message)

    async def warning(self, ref: ObjectRef, reason: str, message: str) -> None:
        await self.record(ref, WARNING, reason, message)
