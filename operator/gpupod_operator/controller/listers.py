"""Reads of the tenancy kinds (accounts, quotas, policies) without a request each.

A GpuPod's create used to read its namespace's YottaAccount `default`, the ClusterYottaAccount
`default` (both 404 when unused) and its GpuQuotas (about three LISTs), and the policies: five
reads per GpuPod that load the kube-apiserver in a burst (issue 14: 5,300 reads at N=1000).

`IndexLister` serves them from kopf's indexes (`@kopf.index` in controller.handlers): kopf lists
and watches each kind and fills its index before any GpuPod handler runs, so a GpuPod is never
admitted on an index that has not seen the quotas yet; afterwards the index lags the API by the
watch's latency (milliseconds), as the informers of Kubernetes' own ResourceQuota admission do.

Every decision that writes still holds against a concurrent writer: writes are
compare-and-swaps on the resourceVersion, and a lost swap reads the object fresh (`KubeApi`).
The lister keeps the object each write returned until the watch shows that version
(`wrote`): a burst of admissions in one namespace then builds on its own last write instead of
losing a swap on the index's older copy each time.

`LiveLister` reads through the API each time (no kopf: unit tests and tools).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Protocol

from gpupod_operator.controller.kube import KubeApi

Key = tuple[str, str]  # (namespace, "" for a cluster-scoped kind; name)
Index = Mapping[Key, Collection[dict[str, Any]]]  # what kopf's index of one kind is

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def slim(body: Mapping[str, Any]) -> dict[str, Any]:
    """What an index keeps of an object: no managedFields or kubectl's copy of the manifest,
    which are most of its size and read by nothing here."""
    meta = dict(body.get("metadata") or {})
    meta.pop("managedFields", None)
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != LAST_APPLIED}
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    return {**{k: v for k, v in body.items() if k != "metadata"}, "metadata": meta}


def key_of(body: Mapping[str, Any]) -> Key:
    meta = body.get("metadata") or {}
    return (meta.get("namespace") or "", meta["name"])


class Lister(Protocol):
    async def find(self, namespace: str, name: str) -> dict[str, Any] | None:
        """One object (namespace "" for a cluster-scoped kind), None if there is none."""

    async def list(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """The objects of one namespace, or (None) of all, sorted by namespace and name."""

    def wrote(self, body: Mapping[str, Any]) -> None:
        """The object as a write of ours returned it: the newest there is, for now."""

    def conflicted(self, namespace: str, name: str) -> None:
        """A write on what this lister served lost its swap: serve the watch's copy again."""


class LiveLister:
    def __init__(self, kube: KubeApi, plural: str) -> None:
        self._kube, self._plural = kube, plural

    async def find(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._kube.find_object(self._plural, namespace, name)

    async def list(self, namespace: str | None = None) -> list[dict[str, Any]]:
        found = await self._kube.list_objects(self._plural, namespace)
        return sorted(found, key=key_of)

    def wrote(self, body: Mapping[str, Any]) -> None:
        return None

    def conflicted(self, namespace: str, name: str) -> None:
        return None


class IndexLister:
    def __init__(self, index: Index) -> None:
        self._index = index
        self._written: dict[Key, dict[str, Any]] = {}

    def _current(self, key: Key) -> dict[str, Any] | None:
        seen = next(iter(self._index.get(key) or ()), None)
        ours = self._written.get(key)
        if seen is None:
            self._written.pop(key, None)  # deleted (we never create these kinds)
            return None
        if ours is None:
            return seen
        if _version(ours) == _version(seen):
            del self._written[key]  # the watch caught up with our write
            return seen
        return ours

    async def find(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._current((namespace, name))

    async def list(self, namespace: str | None = None) -> list[dict[str, Any]]:
        keys = sorted(k for k in self._index if namespace is None or k[0] == namespace)
        return [body for body in map(self._current, keys) if body is not None]

    def wrote(self, body: Mapping[str, Any]) -> None:
        self._written[key_of(body)] = slim(body)

    def conflicted(self, namespace: str, name: str) -> None:
        self._written.pop((namespace, name), None)


def _version(body: Mapping[str, Any]) -> str | None:
    version: str | None = (body.get("metadata") or {}).get("resourceVersion")
    return version
