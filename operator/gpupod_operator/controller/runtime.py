"""Everything a handler needs, created once at startup and kept in kopf's memo."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from gpupod_operator.config import OperatorConfig
from gpupod_operator.controller.accounts import Accounts
from gpupod_operator.controller.events import EventRecorder
from gpupod_operator.controller.gate import ReconcileGate
from gpupod_operator.controller.kube import KubeApi
from gpupod_operator.controller.metrics import Metrics
from gpupod_operator.controller.orphans import Released
from gpupod_operator.controller.policy import PolicyGate
from gpupod_operator.controller.poller import Poller
from gpupod_operator.controller.quota import QuotaController
from gpupod_operator.controller.registry import Registry
from gpupod_operator.controller.status_writer import StatusWriter


@dataclass
class Runtime:
    config: OperatorConfig
    # The per-account providers (controller.accounts): `await accounts.bind(account)` is the
    # one way to a provider; `accounts.operator` is the operator's own key's.
    accounts: Accounts
    kube: KubeApi
    status: StatusWriter
    events: EventRecorder
    registry: Registry
    poller: Poller
    metrics: Metrics
    # HA (controller.leader): whether a create may start now. Without leader election, always.
    may_create: Callable[[], bool] = field(default=lambda: True)
    # Tenancy (controller.admission): GpuTenantPolicy and GpuQuota checks before a create.
    policy: PolicyGate | None = None
    quota: QuotaController | None = None
    # Pods released on purpose (deletionPolicy: Orphan, Observe), so the orphan sweep spares
    # them; None when the operator has no namespace of its own to keep that record in.
    released: Released | None = None
    # How many reconciles of a namespace run at once (`--max-concurrent-reconciles`).
    gate: ReconcileGate = field(init=False)

    def __post_init__(self) -> None:
        self.gate = ReconcileGate(self.config.max_concurrent_reconciles)

    @property
    def cluster_id(self) -> str:
        """This cluster's identity in remote names, resolved at startup (`--cluster-id`)."""
        assert self.config.cluster_id, "startup resolves the cluster id before any handler"
        return self.config.cluster_id
