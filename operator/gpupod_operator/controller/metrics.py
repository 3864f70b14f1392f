"""Prometheus metrics, served on their own port (`--metrics-port`) at /metrics."""

from __future__ import annotations

import contextlib
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable
from decimal import Decimal

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import REGISTRY

from gpupod_operator.domain.status import Phase


class Metrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        self.remote_calls = Counter(
            "gpupod_remote_calls",
            "Calls to the Yotta API by operation and result",
            ["operation", "result"],
            registry=registry,
        )
        self.reconcile_errors = Counter(
            "gpupod_reconcile_errors",
            "Reconcile attempts that ended in an error, by reason",
            ["reason"],
            registry=registry,
        )
        self.pods = Gauge("gpupod_pods", "GpuPods by phase", ["phase"], registry=registry)
        self.gpus_in_use = Gauge(
            "gpupod_gpus_in_use",
            "GPUs of live remote pods by GPU type",
            ["gpu_type"],
            registry=registry,
        )
        self.price_per_hour = Gauge(
            "gpupod_price_per_hour_total",
            "Sum of pricePerHour over all live remote pods (USD)",
            registry=registry,
        )
        self.remote_up = Gauge(
            "gpupod_remote_up", "1 when the last Yotta API poll succeeded", registry=registry
        )
        self.last_poll = Gauge(
            "gpupod_last_successful_poll_timestamp_seconds",
            "Unix time of the last successful bulk poll",
            registry=registry,
        )
        self.status_patches = Counter(
            "gpupod_status_patches", "Status patches written by the poller", registry=registry
        )
        self.orphan_pods = Gauge(
            "gpupod_orphan_pods",
            "Remote pods named by this cluster whose GpuPod no longer exists (last sweep)",
            registry=registry,
        )
        # Computed at scrape time from the watch's index (track_deletions): always current.
        self.deletion_oldest_age = Gauge(
            "gpupod_deletion_oldest_age_seconds",
            "Seconds since the oldest GpuPod still being deleted got its deletionTimestamp "
            "(0: none); its finalizer waits for the remote pod to be gone",
            registry=registry,
        )

        self.cost = Counter(
            "gpupod_cost_dollars",
            "Estimated spend accrued by GpuPods while this process counted it (USD; price x "
            "RUNNING time, an estimate, not the invoice)",
            ["namespace"],
            registry=registry,
        )
        self.pod_price = Gauge(
            "gpupod_price_per_hour",
            "What each GpuPod's remote pod bills per hour now (USD; 0 while paused)",
            ["namespace", "name"],
            registry=registry,
        )

        self.leader = Gauge(
            "gpupod_leader",
            "1 while this process is the leader (holds the Lease, or runs without election)",
            registry=registry,
        )
        self.quota_used = Gauge(
            "gpupod_quota_used",
            "What the GpuPods of a namespace hold of its GpuQuota, by resource",
            ["namespace", "resource"],
            registry=registry,
        )
        self.quota_hard = Gauge(
            "gpupod_quota_hard",
            "The GpuQuota limit of a namespace, by resource (the tightest of its quotas)",
            ["namespace", "resource"],
            registry=registry,
        )

        self.reconciles_waiting = Gauge(
            "gpupod_reconciles_waiting",
            "Reconciles waiting for a turn (--max-concurrent-reconciles per namespace)",
            registry=registry,
        )

    def track_waiting(self, waiting: Callable[[], int]) -> None:
        self.reconciles_waiting.set_function(waiting)

    def set_quota(self, namespace: str, values: dict[str, tuple[float, float | None]]) -> None:
        """(used, hard) per resource; a resource without a limit has no hard series."""
        for resource, (used, hard) in values.items():
            self.quota_used.labels(namespace, resource).set(used)
            if hard is not None:
                self.quota_hard.labels(namespace, resource).set(hard)
                continue
            with contextlib.suppress(KeyError):  # never had one
                self.quota_hard.remove(namespace, resource)

    def observe_call(self, operation: str, result: str) -> None:
        self.remote_calls.labels(operation, result).inc()

    def set_inventory(
        self, phases: Iterable[str], gpus: Iterable[tuple[str, int]], prices: Iterable[str]
    ) -> None:
        by_phase = Tally(phases)
        for phase in Phase:
            self.pods.labels(phase.value).set(by_phase.get(phase.value, 0))
        self.gpus_in_use.clear()  # types no longer in use must drop to nothing
        by_type: Tally[str] = Tally()
        for gpu_type, count in gpus:
            by_type[gpu_type] += count
        for gpu_type, count in by_type.items():
            self.gpus_in_use.labels(gpu_type).set(count)
        self.price_per_hour.set(float(sum((Decimal(p) for p in prices), Decimal(0))))

    def track_deletions(
        self, since: Callable[[], Iterable[float | None]], clock: Callable[[], float] = time.time
    ) -> None:
        """`since()`: the deletionTimestamps (Unix seconds) of the GpuPods known now."""

        def oldest() -> float:
            return max((clock() - t for t in since() if t is not None), default=0.0)

        self.deletion_oldest_age.set_function(oldest)

    def add_cost(self, namespace: str, dollars: Decimal) -> None:
        """Spend a status write added (each interval is counted by one write only)."""
        if dollars > 0:
            self.cost.labels(namespace).inc(float(dollars))

    def set_pod_prices(self, prices: dict[tuple[str, str], str]) -> None:
        """One series per GpuPod with a live remote pod; the others' series go."""
        self.pod_price.clear()
        for (namespace, name), price in prices.items():
            self.pod_price.labels(namespace, name).set(float(Decimal(price)))

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        start_http_server(port, addr=addr, registry=self.registry)
