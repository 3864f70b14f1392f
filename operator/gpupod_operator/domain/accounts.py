"""Which Yotta account a GpuPod uses, decided from what the cluster holds and nothing else.

Contract (DESIGN §2.4): `spec.accountRef` names a `YottaAccount` (same namespace) or a
`ClusterYottaAccount` (platform-owned, `allowedNamespaces`). Omitted: `YottaAccount/default` in
the namespace if it exists, else `ClusterYottaAccount/default` if it allows the namespace, else
the operator's own key, which `--default-account-namespaces` may limit.

The account is resolved ONCE, at create time, and pinned in `status.account` with the marker;
every later call uses the pinned one (`AccountId.pinned`). A key whose fingerprint differs
from the pinned one may belong to another account, so "not found" under it proves nothing
(`absence_unproven`): ASO's subscription pin, applied to us.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gpupod_operator.domain import decisions as d
from gpupod_operator.domain.spec import AccountRef
from gpupod_operator.domain.status import Observed

YOTTA_ACCOUNT = "YottaAccount"
CLUSTER_YOTTA_ACCOUNT = "ClusterYottaAccount"
OPERATOR = "Operator"  # the operator's own key (YOTTA_API_KEY)
DEFAULT = "default"
# On a YottaAccount / ClusterYottaAccount and its Secret while a GpuPod needs them, so that
# deleting a namespace cannot remove the key before the remote pods are deleted with it.
IN_USE_FINALIZER = "gpupod.dev/in-use"

ACCOUNT_NOT_FOUND = "AccountNotFound"
ACCOUNT_NOT_ALLOWED = "AccountNotAllowed"
ACCOUNT_CHANGED = "AccountChanged"
ACCOUNT_CHANGED_RETRY = 30.0  # seconds: the key may be put back


class AccountUnavailable(Exception):
    """No API call may be made: `reason` is the Synced reason, the message says what to do."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, order=True)
class AccountId:
    kind: str
    namespace: str  # "" for cluster-scoped accounts and the operator's key
    name: str

    @classmethod
    def operator(cls) -> AccountId:
        return cls(OPERATOR, "", "")

    @classmethod
    def of_ref(cls, ref: AccountRef, namespace: str) -> AccountId:
        kind = str(ref.kind)
        return cls(kind, namespace if kind == YOTTA_ACCOUNT else "", ref.name)

    @classmethod
    def pinned(cls, account: Mapping[str, Any] | None, namespace: str) -> AccountId | None:
        """The account in a GpuPod's `status.account`, or None when none is pinned."""
        if not account or not account.get("kind"):
            return None
        kind = str(account["kind"])
        if kind == OPERATOR:
            return cls.operator()
        return cls(kind, namespace if kind == YOTTA_ACCOUNT else "", str(account.get("name", "")))

    def pin(self, fingerprint: str) -> dict[str, str]:
        """What `status.account` records."""
        return {"kind": self.kind, "name": self.name, "keyFingerprint": fingerprint}

    def __str__(self) -> str:
        if self.kind == OPERATOR:
            return "the operator's own key"
        return f"{self.kind} {self.namespace + '/' if self.namespace else ''}{self.name}"


@dataclass(frozen=True)
class Source:
    """Where an account's key is and how to call the API with it."""

    account: AccountId
    secret_namespace: str
    secret_name: str
    secret_key: str
    api_url: str | None = None  # None: the operator's YOTTA_API_URL
    qps: float | None = None  # None: the operator's --qps / --burst
    burst: int | None = None


def fingerprint(key: str) -> str:
    """A short one-way fingerprint of an API key, safe to show (never the key)."""
    digest = hashlib.sha256(b"gpupod.dev/api-key\0" + key.encode()).hexdigest()
    return f"sha256:{digest[:12]}"


# ---------------------------------------------------------------- namespaces


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A Kubernetes LabelSelector (`{}` matches everything)."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return False  # unknown operator: match nothing rather than everything
    return True


def namespace_allowed(
    allowed: Mapping[str, Any] | None, namespace: str, labels: Mapping[str, str]
) -> bool:
    """CAPA's semantics: omitted allows no namespace; named or matching the selector allows."""
    if allowed is None:
        return False
    if namespace in (allowed.get("names") or []):
        return True
    selector = allowed.get("selector")
    return selector is not None and selector_matches(selector, labels)


def needs_labels(cluster_account: Mapping[str, Any] | None) -> bool:
    """Whether deciding on this ClusterYottaAccount needs the namespace's labels."""
    allowed = ((cluster_account or {}).get("spec") or {}).get("allowedNamespaces") or {}
    return allowed.get("selector") is not None


# ---------------------------------------------------------------- resolution


def candidates(ref: AccountRef | None, namespace: str) -> list[AccountId]:
    """The account objects resolution may need, in the order it considers them."""
    if ref is not None:
        return [AccountId.of_ref(ref, namespace)]
    return [
        AccountId(YOTTA_ACCOUNT, namespace, DEFAULT),
        AccountId(CLUSTER_YOTTA_ACCOUNT, "", DEFAULT),
    ]


def _deleting(obj: Mapping[str, Any]) -> bool:
    """A deleted account still serves the GpuPods pinned to it, but takes no new ones."""
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def _allows(obj: Mapping[str, Any], namespace: str, labels: Mapping[str, str]) -> bool:
    return namespace_allowed((obj.get("spec") or {}).get("allowedNamespaces"), namespace, labels)


def operator_allows(namespaces: Sequence[str], namespace: str) -> bool:
    """`--default-account-namespaces`: empty means every namespace may use the operator's key."""
    return not namespaces or namespace in namespaces


def resolve(
    ref: AccountRef | None,
    namespace: str,
    found: Mapping[AccountId, Mapping[str, Any] | None],
    labels: Mapping[str, str],
    operator_namespaces: Sequence[str],
) -> AccountId:
    """The account a new GpuPod in `namespace` is created in (raises AccountUnavailable).

    `found` holds the objects of `candidates(ref, namespace)` (None: does not exist); one
    being deleted counts as absent."""
    found = {a: o for a, o in found.items() if o is not None and not _deleting(o)}
    if ref is not None:
        account = AccountId.of_ref(ref, namespace)
        obj = found.get(account)
        if obj is None:
            where = f"in namespace {namespace}" if account.namespace else "in the cluster"
            raise AccountUnavailable(
                ACCOUNT_NOT_FOUND,
                f"spec.accountRef: {account.kind} {account.name} does not exist {where} (or "
                "is being deleted): create it, or change spec.accountRef (delete and re-apply "
                "the GpuPod)",
            )
        if account.kind == CLUSTER_YOTTA_ACCOUNT and not _allows(obj, namespace, labels):
            raise AccountUnavailable(
                ACCOUNT_NOT_ALLOWED,
                f"spec.accountRef: ClusterYottaAccount {account.name} does not allow namespace "
                f"{namespace}: ask the platform team to add it to the account's "
                "spec.allowedNamespaces, or use a YottaAccount of this namespace",
            )
        return account
    namespaced, cluster = candidates(None, namespace)
    if found.get(namespaced) is not None:
        return namespaced
    cluster_obj = found.get(cluster)
    if cluster_obj is not None and _allows(cluster_obj, namespace, labels):
        return cluster
    if operator_allows(operator_namespaces, namespace):
        return AccountId.operator()
    raise AccountUnavailable(
        ACCOUNT_NOT_ALLOWED,
        f"no Yotta account for namespace {namespace}: create a YottaAccount named default "
        "here (with the Secret of your API key), set spec.accountRef, or ask the platform team "
        "to allow this namespace (ClusterYottaAccount default or "
        "defaultAccount.allowedNamespaces)",
    )


def source_of(account: AccountId, obj: Mapping[str, Any] | None, operator_namespace: str) -> Source:
    """How to call the API for a (pinned) account, from its object (None: it is gone)."""
    if obj is None:
        raise AccountUnavailable(
            ACCOUNT_NOT_FOUND,
            f"{account} does not exist (any more): create it again with the same API key "
            "Secret, or set spec.deletionPolicy: Orphan to give up on the remote pod",
        )
    spec = obj.get("spec") or {}
    secret = spec.get("apiKeySecretRef") or {}
    rate = spec.get("rateLimit") or {}
    namespace = account.namespace if account.kind == YOTTA_ACCOUNT else operator_namespace
    return Source(
        account,
        namespace,
        str(secret.get("name", "")),
        str(secret.get("key", "")),
        api_url=spec.get("apiUrl") if account.kind == CLUSTER_YOTTA_ACCOUNT else None,
        qps=float(rate["qps"]) if rate.get("qps") is not None else None,
        burst=int(rate["burst"]) if rate.get("burst") is not None else None,
    )


def key_of(source: Source, data: Mapping[str, str] | None) -> str:
    """The API key from the Secret's data (None: the Secret does not exist)."""
    key = (data or {}).get(source.secret_key, "").strip()
    if not key:
        what = "does not exist" if data is None else f"has no (non-empty) key {source.secret_key}"
        raise AccountUnavailable(
            ACCOUNT_NOT_FOUND,
            f"Secret {source.secret_namespace}/{source.secret_name} of {source.account} {what}: "
            f"create it (kubectl -n {source.secret_namespace} create secret generic "
            f"{source.secret_name} --from-literal={source.secret_key}=YOUR_KEY)",
        )
    return key


# ---------------------------------------------------------------- the pin


def key_changed(pinned_fingerprint: str | None, current: str) -> bool:
    """The key now differs from the one the pod was created with (unknown pin: no)."""
    return bool(pinned_fingerprint) and pinned_fingerprint != current


def _relies_on_absence(
    action: d.Action, observed: Observed | None, lookup: d.NameLookup | None
) -> bool:
    gone = observed is not None and observed.pod is None
    none_named = lookup is not None and not lookup.live()
    match action:
        case d.Stop(reason="RemotePodLost") | d.Forget():
            return gone
        case d.Create():
            return none_named
        case d.Release(reason="Deleted"):
            return gone
        case d.Release(reason="NeverCreated"):
            return none_named
    return False


def absence_unproven(
    action: d.Action,
    observed: Observed | None,
    lookup: d.NameLookup | None,
    *,
    account: AccountId,
    changed: bool,
) -> d.Wait | None:
    """A Wait instead of `action` when it rests on a pod being absent and the key is not the
    one the pod was created with: another account's key sees none of our pods, so nothing may
    be recreated, released or called lost on its word."""
    if not changed or not _relies_on_absence(action, observed, lookup):
        return None
    return d.Wait(
        ACCOUNT_CHANGED,
        f"the remote pod is not visible with the current key of {account}, which is not the "
        "key it was created with (status.account.keyFingerprint): the pod may still exist and "
        "bill. Put the original API key back in the account's Secret; the finalizer stays "
        "until the pod is confirmed gone (spec.deletionPolicy: Orphan gives up on it)",
        ACCOUNT_CHANGED_RETRY,
    )
