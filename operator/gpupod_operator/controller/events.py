"""Kubernetes Events for every transition and error: best effort, never a reason to fail."""

from __future__ import annotations

import logging
from typing import Any

from gpupod_operator.controller.kube import KubeApi, ObjectRef
from gpupod_operator.domain.status import transition_event

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

    async def transition(
        self, ref: ObjectRef, old_phase: str | None, fields: dict[str, Any], pod_id: str | None
    ) -> None:
        """An Event when `fields` (a status update) moves the GpuPod into a notable phase."""
        event = transition_event(old_phase, fields, pod_id)
        if event is not None:
            reason, bad, message = event
            await self.record(ref, WARNING if bad else NORMAL, reason, message)
