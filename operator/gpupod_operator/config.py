"""Operator settings from the environment and the command line. The API key is a SecretStr."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic import SecretStr

DEFAULT_API_URL = "https://api.yottalabs.ai"
ORPHAN_MODES = ("report", "delete")


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class OperatorConfig:
    api_url: str
    api_key: SecretStr = field(repr=False)
    sync_interval: float = 30.0  # seconds between bulk polls when nothing is changing
    fast_sync_interval: float = 2.0  # ... while any GpuPod is in a transitional phase
    qps: float = 20.0  # client-side rate limit toward the Yotta API
    burst: int = 40
    request_timeout: float = 15.0
    max_concurrent_reconciles: int = 64  # per namespace (controller.gate)
    metrics_port: int | None = None
    # Accounts (controller.accounts): where ClusterYottaAccounts' Secrets are, and the
    # namespaces that may fall back to the operator's own key (empty: every namespace).
    operator_namespace: str = ""
    default_account_namespaces: tuple[str, ...] = ()
    # Orphans (controller.orphans): this cluster's identity in remote names (None: the
    # kube-system namespace UID, read at startup), what to do with an orphan, and after how long.
    cluster_id: str | None = None
    orphans: str = "report"  # report | delete
    orphan_grace: float = 600.0
    # The namespaces the operator watches (empty: all), for the sweep's own GpuPod list.
    namespaces: tuple[str, ...] = ()
    # The operator's own Pod (the chart's downward API): where orphan Events go, and the
    # namespace of the released-pods ConfigMap. None when running outside a cluster.
    pod_name: str | None = None
    pod_namespace: str | None = None
    pod_uid: str | None = None

    @property
    def snapshot_ttl(self) -> float:
        """How long the poller's last list answers for a pod (provider.yotta): until the next
        round's list is in, with a round's time to spare. At one interval, every round left a
        gap of a few seconds at N=10000 (the list and its projection) in which a resume sent
        a GET per GpuPod (258 GETs in a restart, make bench)."""
        return 2 * self.sync_interval

    @staticmethod
    def api_key_from(env: Mapping[str, str]) -> SecretStr:
        """YOTTA_API_KEY, or the contents of YOTTA_API_KEY_FILE (a mounted Secret)."""
        key = env.get("YOTTA_API_KEY", "").strip()
        path = env.get("YOTTA_API_KEY_FILE", "").strip()
        if not key and path:
            try:
                with open(path, encoding="utf-8") as f:
                    key = f.read().strip()
            except OSError as e:
                raise ConfigError(f"cannot read YOTTA_API_KEY_FILE {path}: {e.strerror}") from None
        if not key:
            raise ConfigError(
                "no Yotta API key: set YOTTA_API_KEY or YOTTA_API_KEY_FILE "
                "(the Helm chart mounts it from a Secret)"
            )
        return SecretStr(key)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> OperatorConfig:
        env = os.environ if env is None else env
        values: dict[str, object] = {
            "api_url": env.get("YOTTA_API_URL", "").strip() or DEFAULT_API_URL,
            "api_key": cls.api_key_from(env),
            "pod_name": env.get("POD_NAME", "").strip() or None,
            "pod_namespace": env.get("POD_NAMESPACE", "").strip() or None,
            "pod_uid": env.get("POD_UID", "").strip() or None,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        config = cls(**values)  # type: ignore[arg-type]
        config.check()
        return config

    def check(self) -> None:
        if self.max_concurrent_reconciles < 1:
            raise ConfigError(
                "--max-concurrent-reconciles must be 1 or more, "
                f"not {self.max_concurrent_reconciles}"
            )
        if self.orphans not in ORPHAN_MODES:
            raise ConfigError(
                f"--orphans must be one of {', '.join(ORPHAN_MODES)}, not {self.orphans!r}"
            )
        if self.orphan_grace < 0:
            raise ConfigError(
                f"--orphan-grace must be 0 or more seconds, not {self.orphan_grace:g}"
            )
        if self.cluster_id is not None and not self.cluster_id.strip():
            raise ConfigError(
                "--cluster-id must not be blank: omit it to use the kube-system namespace UID"
            )
