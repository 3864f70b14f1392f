"""The operator's own GpuTenantPolicy check before a create (domain/policy.py decides).

Policies are read through a lister (kopf's watch: controller.listers), namespace labels
through KubeApi; both are kept for a few seconds: a create costs no extra request in a burst,
and a policy applied now holds for creates from a few seconds on (the chart's admission policy
holds from the moment it is applied).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from pydantic import ValidationError

from gpupod_operator.controller.kube import KubeApi
from gpupod_operator.controller.listers import Lister, LiveLister
from gpupod_operator.domain.policy import Policy, Violation, violations
from gpupod_operator.domain.spec import GpuPodSpec

log = logging.getLogger(__name__)

PLURAL = "gputenantpolicies"
TTL = 2.0  # seconds a read of the policies or of a namespace's labels is reused


class PolicyGate:
    def __init__(
        self,
        kube: KubeApi,
        ttl: float = TTL,
        clock: Callable[[], float] = time.monotonic,
        lister: Lister | None = None,
    ) -> None:
        self._kube, self._ttl, self._clock = kube, ttl, clock
        self._lister = lister or LiveLister(kube, PLURAL)
        self._policies: tuple[float, list[Policy]] | None = None
        self._labels: dict[str, tuple[float, dict[str, str]]] = {}

    def _fresh(self, at: float) -> bool:
        return self._clock() - at < self._ttl

    async def policies(self) -> list[Policy]:
        if self._policies is not None and self._fresh(self._policies[0]):
            return self._policies[1]
        at, parsed = self._clock(), []
        for body in await self._lister.list():
            try:
                parsed.append(Policy.parse(body))
            except ValidationError as e:  # the CRD's schema makes this unlikely: say, skip
                log.warning("GpuTenantPolicy %s ignored: %s", body["metadata"]["name"], e)
        self._policies = (at, parsed)
        return parsed

    async def labels(self, namespace: str) -> dict[str, str]:
        cached = self._labels.get(namespace)
        if cached is not None and self._fresh(cached[0]):
            return cached[1]
        at = self._clock()
        labels = await self._kube.get_namespace_labels(namespace) or {}
        self._labels[namespace] = (at, labels)
        return labels

    async def check(self, namespace: str, spec: GpuPodSpec) -> list[Violation]:
        policies = await self.policies()
        if not policies:
            return []
        return violations(spec, namespace, await self.labels(namespace), policies)
