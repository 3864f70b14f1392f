"""One Yotta client, rate limiter and `YottaProvider` per account, and the I/O of accounts.

- `resolve` reads what `domain.accounts.resolve` decides on (a new GpuPod only: afterwards the
  account pinned in its status is used). Account objects are read through a lister (kopf's
  watch, controller.listers): resolving a GpuPod in a namespace without accounts costs no
  request.
- `bind` reads the (pinned) account's object and its Secret (by name, never cached) on every
  use and returns the account's provider, created lazily and cached; a changed key (rotation)
  is swapped into the same client, so the next call uses it, without a restart and without
  losing the limiter.
- `hold` / `release`: while a GpuPod needs an account, its object and Secret carry the
  `gpupod.dev/in-use` finalizer, so deleting the namespace keeps the key until the last remote
  pod is deleted with it (Crossplane #7801, ASO #4679); the last GpuPod's release removes it.

The operator's own key (`YOTTA_API_KEY`) is the account `Operator`, whose provider is built at
startup; without a KubeApi (`Accounts.static`) it is the only account there is.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gpupod_operator.config import OperatorConfig
from gpupod_operator.controller.kube import Conflict, KubeApi, KubeError, secret_data
from gpupod_operator.controller.listers import Lister, LiveLister
from gpupod_operator.domain import accounts as acc
from gpupod_operator.domain.accounts import AccountId, AccountUnavailable, Source
from gpupod_operator.domain.spec import AccountRef
from gpupod_operator.provider import Provider, YottaProvider
from gpupod_operator.yotta import YottaClient

log = logging.getLogger(__name__)

PLURALS = {acc.YOTTA_ACCOUNT: "yottaaccounts", acc.CLUSTER_YOTTA_ACCOUNT: "clusteryottaaccounts"}
ClientFactory = Callable[[str, str, float, int], YottaClient]  # url, key, qps, burst


@dataclass(frozen=True)
class Binding:
    """An account ready for calls: its provider and the fingerprint of the key it sends."""

    account: AccountId
    fingerprint: str
    provider: Provider
    # What was read to bind it (None for the operator's key): for hold / release / status.
    source: Source | None = None
    account_obj: dict[str, Any] | None = field(default=None, repr=False)
    secret_meta: dict[str, Any] | None = field(default=None, repr=False)


@dataclass
class _Cached:
    client: YottaClient
    provider: YottaProvider
    fingerprint: str
    shape: tuple[str, float, int]  # url, qps, burst: a change builds a new client


def _deleting(meta: dict[str, Any] | None) -> bool:
    return bool((meta or {}).get("deletionTimestamp"))


def _finalizers(meta: dict[str, Any] | None) -> list[str]:
    return list((meta or {}).get("finalizers") or [])


class Accounts:
    def __init__(
        self,
        config: OperatorConfig | None,
        kube: KubeApi | None,
        operator: Provider,
        *,
        operator_namespace: str = "",
        default_namespaces: Sequence[str] = (),
        new_client: ClientFactory | None = None,
        in_use: Callable[[AccountId], int] = lambda _account: 0,
        listers: Mapping[str, Lister] | None = None,
    ) -> None:
        self._config, self._kube = config, kube
        # By account kind; without: read through the API on each use.
        self._listers = dict(listers or {})
        if kube is not None:
            for kind, plural in PLURALS.items():
                self._listers.setdefault(kind, LiveLister(kube, plural))
        key = config.api_key.get_secret_value() if config is not None else ""
        self._operator = Binding(AccountId.operator(), acc.fingerprint(key), operator)
        self.operator_namespace = operator_namespace
        self.default_namespaces = list(default_namespaces)
        self._new_client = new_client or self._default_client
        self._cache: dict[AccountId, _Cached] = {}
        self._retired: list[YottaClient] = []
        self.in_use = in_use  # GpuPods pinned to an account (the runtime's registry)

    @classmethod
    def static(cls, operator: Provider, config: OperatorConfig | None = None) -> Accounts:
        """Only the operator's own key (no Kubernetes reads): tests and tools."""
        return cls(config, None, operator)

    @property
    def config(self) -> OperatorConfig:
        assert self._config is not None, "tenant accounts need the operator's config"
        return self._config

    def _default_client(self, url: str, key: str, qps: float, burst: int) -> YottaClient:
        return YottaClient(url, key, timeout=self.config.request_timeout, qps=qps, burst=burst)

    @property
    def operator(self) -> Provider:
        return self._operator.provider

    def cached(self) -> list[AccountId]:
        """The tenant accounts a provider was built for so far."""
        return sorted(self._cache)

    async def aclose(self) -> None:
        await self._operator.provider.aclose()
        for cached in self._cache.values():
            await cached.provider.aclose()
        for client in self._retired:
            await client.aclose()

    def _need_kube(self, what: str) -> KubeApi:
        if self._kube is None:
            raise AccountUnavailable(acc.ACCOUNT_NOT_FOUND, f"{what}: no Kubernetes access")
        return self._kube

    # ------------------------------------------------------------ resolution (create time)

    async def resolve(self, namespace: str, ref: AccountRef | None) -> AccountId:
        """The account a new GpuPod is created in (AccountUnavailable: no API call)."""
        if ref is None and self._kube is None:
            found: dict[AccountId, dict[str, Any] | None] = {}
        else:
            self._need_kube("spec.accountRef")
            found = {
                a: await self._listers[a.kind].find(a.namespace, a.name)
                for a in acc.candidates(ref, namespace)
            }
        labels: dict[str, str] = {}
        if self._kube is not None and any(acc.needs_labels(o) for o in found.values()):
            labels = await self._kube.get_namespace_labels(namespace) or {}
        return acc.resolve(ref, namespace, found, labels, self.default_namespaces)

    # ------------------------------------------------------------ binding (every use)

    async def bind(self, account: AccountId) -> Binding:
        """The account's provider with its current key, read now (AccountUnavailable: the
        account, its Secret or its key is missing; no API call may be made)."""
        if account.kind == acc.OPERATOR:
            return self._operator
        kube = self._need_kube(str(account))
        if not self.operator_namespace and account.kind == acc.CLUSTER_YOTTA_ACCOUNT:
            raise AccountUnavailable(
                acc.ACCOUNT_NOT_FOUND,
                f"{account}: the operator does not know its own namespace, where the Secrets of "
                "ClusterYottaAccounts are: run it with --operator-namespace",
            )
        obj = await self._listers[account.kind].find(account.namespace, account.name)
        source = acc.source_of(account, obj, self.operator_namespace)
        secret = await kube.get_secret(source.secret_namespace, source.secret_name)
        try:
            key = acc.key_of(source, None if secret is None else secret_data(secret))
        except AccountUnavailable as e:
            await self._report(account, obj, fingerprint=None, problem=str(e))
            raise
        fingerprint = acc.fingerprint(key)
        provider = self._provider(account, source, key, fingerprint)
        await self._report(account, obj, fingerprint=fingerprint, problem=None)
        assert secret is not None and obj is not None
        return Binding(account, fingerprint, provider, source, obj, secret.get("metadata"))

    def _provider(self, account: AccountId, source: Source, key: str, fp: str) -> Provider:
        config = self.config
        shape = (
            source.api_url or config.api_url,
            source.qps if source.qps is not None else config.qps,
            source.burst if source.burst is not None else config.burst,
        )
        cached = self._cache.get(account)
        if cached is not None and cached.shape != shape:
            # A new URL or rate limit: a new client; the old one may still have calls in flight.
            self._retired.append(cached.client)
            cached = None
        if cached is None:
            client = self._new_client(shape[0], key, shape[1], shape[2])
            cached = _Cached(
                client, YottaProvider(client, snapshot_ttl=config.snapshot_ttl), fp, shape
            )
            self._cache[account] = cached
            log.info("account %s: client created (key %s)", account, fp)
        elif cached.fingerprint != fp:
            cached.client.use_key(key)
            log.info("account %s: key changed (%s -> %s)", account, cached.fingerprint, fp)
            cached.fingerprint = fp
        return cached.provider

    # ------------------------------------------------------------ in-use finalizers

    async def hold(self, binding: Binding) -> None:
        """Keep the account and its Secret while a GpuPod needs them (idempotent)."""
        if binding.source is None or self._kube is None:
            return
        for first, read, patch in self._objects(binding.account, binding.source):
            if not await self._set_finalizer(read, patch, present=True, first=first(binding)):
                # Going away without our finalizer (a namespace being deleted): a pod created
                # now could lose its key before it is deleted. None is created.
                raise AccountUnavailable(
                    acc.ACCOUNT_NOT_FOUND,
                    f"{binding.account} or its Secret is being deleted: no remote pod is "
                    "created with it",
                )

    async def release(self, account: AccountId | None, *, users_left: int) -> None:
        """After a GpuPod let go of `account`: with no other user left, remove the in-use
        finalizers from the account and its Secret. Raises KubeError if that failed (the
        GpuPod then keeps its own finalizer and tries again)."""
        if account is None or account.kind == acc.OPERATOR or self._kube is None:
            return
        obj = await self._listers[account.kind].find(account.namespace, account.name)
        await self._report_count(account, obj, users_left)
        if users_left > 0 or obj is None:
            return
        source = acc.source_of(account, obj, self.operator_namespace)
        for _first, read, patch in self._objects(account, source):
            await self._set_finalizer(read, patch, present=False)
        log.info("account %s: no GpuPod uses it any more; in-use finalizers removed", account)

    def _objects(self, account: AccountId, source: Source) -> list[tuple[Any, Any, Any]]:
        """(what the binding read, read it again, merge-patch its metadata) for the account
        object and for its Secret."""
        kube, plural = self._need_kube(str(account)), PLURALS[account.kind]
        ns, name = account.namespace, account.name
        secret_ns, secret_name = source.secret_namespace, source.secret_name
        return [
            (
                lambda b: b.account_obj,
                lambda: kube.find_object(plural, ns, name),  # fresh: after a lost swap
                lambda meta: self._patch(account, {"metadata": meta}),
            ),
            (
                lambda b: b.secret_meta and {"metadata": b.secret_meta},
                lambda: kube.get_secret(secret_ns, secret_name),
                lambda meta: kube.patch_secret_metadata(secret_ns, secret_name, meta),
            ),
        ]

    async def _set_finalizer(
        self, read: Any, patch: Any, *, present: bool, first: dict[str, Any] | None = None
    ) -> bool:
        """Add (present) or remove the in-use finalizer, as a compare-and-swap on the
        resourceVersion (other finalizers are kept); a lost swap reads the object again.
        False: it could not be added (the object is gone, or being deleted without it)."""
        obj = first if first is not None else await read()
        for _ in range(5):
            meta = (obj or {}).get("metadata") or {}
            has = acc.IN_USE_FINALIZER in _finalizers(meta)
            if obj is None:
                return not present
            if has == present:
                return True
            if present and _deleting(meta):
                return False  # no finalizer may be added to an object being deleted
            kept = [f for f in _finalizers(meta) if f != acc.IN_USE_FINALIZER]
            wanted = [*kept, acc.IN_USE_FINALIZER] if present else kept
            try:
                await patch({"resourceVersion": meta.get("resourceVersion"), "finalizers": wanted})
                return True
            except Conflict:
                obj = await read()  # changed meanwhile (another GpuPod held it, say)
        raise KubeError(409, "the finalizers keep changing; trying again")

    # ------------------------------------------------------------ the account's status

    async def _report(
        self,
        account: AccountId,
        obj: dict[str, Any] | None,
        *,
        fingerprint: str | None,
        problem: str | None,
    ) -> None:
        ready = {
            "type": "Ready",
            "status": "False" if problem else "True",
            "reason": acc.ACCOUNT_NOT_FOUND if problem else "SecretFound",
            "message": problem or "the API key Secret is there",
        }
        await self._write_status(
            account,
            obj,
            {"conditions": [ready], "keyFingerprint": fingerprint, "gpuPods": self.in_use(account)},
        )

    async def _report_count(
        self, account: AccountId, obj: dict[str, Any] | None, users: int
    ) -> None:
        await self._write_status(account, obj, {"gpuPods": users})

    async def _write_status(
        self, account: AccountId, obj: dict[str, Any] | None, status: dict[str, Any]
    ) -> None:
        """Best effort, and only what would change: it is there for `kubectl get`."""
        if obj is None or self._kube is None:
            return
        current = obj.get("status") or {}
        patch = {k: v for k, v in status.items() if k != "conditions" and current.get(k) != v}
        for new in status.get("conditions") or []:
            old: dict[str, Any] = next(
                (c for c in current.get("conditions") or [] if c.get("type") == new["type"]), {}
            )
            if any(old.get(k) != v for k, v in new.items()):
                since = (
                    old.get("lastTransitionTime") if old.get("status") == new["status"] else None
                )
                patch["conditions"] = [{**new, "lastTransitionTime": since or _now_iso()}]
        if not patch:
            return
        try:
            await self._patch(account, {"status": patch}, status=True)
        except KubeError as e:
            log.warning("status of %s not written: %s", account, e)

    async def _patch(
        self, account: AccountId, body: dict[str, Any], *, status: bool = False
    ) -> dict[str, Any]:
        kube = self._need_kube(str(account))
        plural = PLURALS[account.kind]
        try:
            written = await kube.patch_object(
                plural, account.namespace, account.name, body, status=status
            )
        except Conflict:
            self._listers[account.kind].conflicted(account.namespace, account.name)
            raise
        self._listers[account.kind].wrote(written)
        return written


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
