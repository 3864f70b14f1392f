"""Kubernetes I/O beyond kopf's own, on the official client (`kubernetes.aio`).

One login for kopf and for us (`load_configuration`): the in-cluster service account first,
then KUBECONFIG with every auth method the official loader knows (exec credential plugins for
EKS/GKE/OIDC, tokens, client certificates), which kopf's own kubeconfig parser does not run.

Every call retries what client-go retries (429, 5xx, refused or reset connections) with the
official client's `retry.on_error`, logs in again in place on a 401 (bound tokens rotate; the
shared connection pool stays open for the requests in flight), and raises one of three errors:
`Conflict` (the precondition failed), `Gone` (no such object), `KubeError` (anything else).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import logging
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import kopf
from kubernetes.aio import client as k8s
from kubernetes.aio import config as k8s_config
from kubernetes.aio.config.config_exception import ConfigException

# The library's retry module re-exports Backoff without listing it in __all__.
from kubernetes.aio.utils.retry import Backoff, on_error  # type: ignore[attr-defined]

GROUP = "gpupod.dev"
VERSION = "v1alpha1"
PLURAL = "gpupods"
KIND = "GpuPod"
API_VERSION = f"{GROUP}/{VERSION}"
COMPONENT = "gpupod-operator"
MAX_CONNECTIONS = 20
# client-go's DefaultBackoff shape, a little longer: an apiserver restart takes seconds.
RETRY = Backoff(steps=5, duration=0.2, factor=2.5, jitter=0.2, cap=5.0)
_RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
MERGE_PATCH = "application/merge-patch+json"
PROXY_VARIABLES = (
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
)

log = logging.getLogger(__name__)


class KubeError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"Kubernetes API answered {status}: {message}" if status else message)
        self.status = status


class Conflict(KubeError):
    """The object changed since we read it (resourceVersion precondition)."""


class Gone(KubeError):
    """The object does not exist (any more)."""


# Kinds an Event may be about: ours, and the operator's own Pod (orphan reports).
_API_VERSIONS = {KIND: API_VERSION, "Pod": "v1"}


@dataclass(frozen=True)
class ObjectRef:
    namespace: str
    name: str
    uid: str
    resource_version: str | None = None
    kind: str = KIND  # for Events; one of _API_VERSIONS

    @classmethod
    def of(cls, body: Any) -> ObjectRef:
        meta = body["metadata"]
        return cls(meta["namespace"], meta["name"], meta["uid"], meta.get("resourceVersion"))

    def at(self, resource_version: str | None) -> ObjectRef:
        return ObjectRef(self.namespace, self.name, self.uid, resource_version, self.kind)


async def load_configuration() -> k8s.Configuration:
    """In-cluster service account first, then KUBECONFIG: the order kubectl uses."""
    cfg = k8s.Configuration()
    try:
        k8s_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        return cfg
    except ConfigException:
        pass
    path = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None
    try:
        await k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=path, client_configuration=cfg, persist_config=False
        )
    except (ConfigException, OSError) as e:
        raise kopf.LoginError(
            f"no service account token and no usable KUBECONFIG: cannot reach the cluster ({e})"
        ) from None
    if not (_authorization(cfg)[1] or cfg.cert_file):
        # The loader only logs a failing exec plugin; an operator must not go on anonymous.
        raise kopf.LoginError(
            f"KUBECONFIG {path or '~/.kube/config'} gave no credentials (no token, no client "
            "certificate): if its user runs an exec plugin, run `kubectl version` with the same "
            "KUBECONFIG to see the plugin's error"
        )
    return cfg


def _authorization(cfg: k8s.Configuration) -> tuple[str | None, str | None]:
    """(scheme, token) from the loaded credentials, if they are a token."""
    header = cfg.api_key.get("BearerToken") or cfg.api_key.get("authorization")
    if not header:
        return None, None
    scheme, _, token = str(header).partition(" ")
    return (scheme.capitalize(), token) if token else ("Bearer", scheme)


def connection_info(cfg: k8s.Configuration) -> kopf.ConnectionInfo:
    """The same identity for kopf's own watches and patches."""
    scheme, token = _authorization(cfg)
    username = password = None
    if scheme == "Basic" and token:
        username, _, password = base64.b64decode(token).decode().partition(":")
        scheme = token = None
    return kopf.ConnectionInfo(
        server=cfg.host,
        ca_path=cfg.ssl_ca_cert,
        insecure=not cfg.verify_ssl,
        scheme=scheme,
        token=token,
        username=username,
        password=password,
        certificate_path=cfg.cert_file,
        private_key_path=cfg.key_file,
        # kopf logs in again before this; an exec plugin is then run again.
        expiration=None,
    )


def secret_data(secret: dict[str, Any]) -> dict[str, str]:
    """A Secret's data, decoded."""
    data = secret.get("data") or {}
    return {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in data.items()}


def _retriable(error: Exception) -> bool:
    if isinstance(error, k8s.ApiException):
        return error.status in _RETRIED_STATUSES
    return isinstance(error, TimeoutError | aiohttp.ClientError | OSError)


def _message(error: k8s.ApiException) -> str:
    try:
        return str(json.loads(error.body or "{}").get("message") or error.reason)
    except (ValueError, AttributeError):
        return str(error.reason)


class KubeApi:
    def __init__(self, cfg: k8s.Configuration) -> None:
        cfg.connection_pool_maxsize = MAX_CONNECTIONS
        # aiohttp's trust_env (the library's default) looks up the proxy variables and ~/.netrc
        # for every request: 5-7% of the operator's CPU in a burst (make bench). Only behind a
        # proxy, then.
        cfg.client_session_kwargs = {
            **(cfg.client_session_kwargs or {}),
            "trust_env": any(os.environ.get(v) for v in PROXY_VARIABLES),
        }
        self._cfg = cfg
        self._api = k8s.ApiClient(cfg)
        self._api.user_agent = COMPONENT
        self._custom = k8s.CustomObjectsApi(self._api)
        self._relogin = asyncio.Lock()
        # A call waits for one of the pool's connections here, before the client builds its
        # request: in a burst, hundreds of calls otherwise wait deep in the client, each with
        # its request built (make bench N=1000: ~480 at once, most of the burst's memory).
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)

    @classmethod
    async def connect(cls) -> KubeApi:
        return cls(await load_configuration())

    def __repr__(self) -> str:
        return f"KubeApi({self._cfg.host})"

    async def aclose(self) -> None:
        await self._api.close()  # type: ignore[no-untyped-call]

    async def _refresh_credentials(self) -> None:
        """Load the credentials again into the live Configuration: requests in flight keep
        their connections (closing the client under them was the old bug)."""
        async with self._relogin:
            fresh = await load_configuration()
            self._cfg.api_key = dict(fresh.api_key)
            self._cfg.refresh_api_key_hook = fresh.refresh_api_key_hook

    async def _call(self, call: Callable[[], Awaitable[Any]]) -> Any:
        async def attempt() -> Any:
            async with self._slots:
                try:
                    return await call()
                except k8s.ApiException as e:
                    if e.status != 401:
                        raise
                    await self._refresh_credentials()
                    return await call()

        try:
            return await on_error(RETRY, _retriable, attempt)
        except k8s.ApiException as e:
            status = int(e.status or 0)
            error = {404: Gone, 409: Conflict}.get(status, KubeError)
            raise error(status, _message(e)) from None
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            raise KubeError(0, f"cannot reach the Kubernetes API: {e!r}") from None

    async def get(self, ref: ObjectRef) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            lambda: self._custom.get_namespaced_custom_object(
                GROUP, VERSION, ref.namespace, PLURAL, ref.name
            )
        )
        return result

    async def patch_status(self, ref: ObjectRef, status: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch the status subresource, only if the object is still at
        `ref.resource_version` (else Conflict): a stale writer never undoes a newer one."""
        body: dict[str, Any] = {"status": status}
        if ref.resource_version:
            body["metadata"] = {"resourceVersion": ref.resource_version}
        result: dict[str, Any] = await self._call(
            lambda: self._custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                ref.namespace,
                PLURAL,
                ref.name,
                body,
                _content_type="application/merge-patch+json",
            )
        )
        return result

    async def list_gpupods(self, namespaces: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """Every GpuPod in `namespaces` (empty: all), fresh from the API server."""
        items: list[dict[str, Any]] = []
        for namespace in namespaces or (None,):
            result = await self._call(
                lambda ns=namespace: (  # type: ignore[misc]
                    self._custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
                    if ns is None
                    else self._custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)
                )
            )
            items.extend(result.get("items") or [])
        return items

    async def namespace_uid(self, name: str) -> str:
        """The UID of a namespace (kube-system's is the cluster's identity)."""
        ns = await self._core_v1("GET", f"/api/v1/namespaces/{name}")
        return str(ns["metadata"]["uid"])

    async def get_configmap_data(self, namespace: str, name: str) -> dict[str, str] | None:
        """The data of a ConfigMap, or None when it does not exist."""
        try:
            cm = await self._core_v1("GET", f"/api/v1/namespaces/{namespace}/configmaps/{name}")
        except Gone:
            return None
        return dict(cm.get("data") or {})

    async def put_configmap_entry(self, namespace: str, name: str, key: str, value: str) -> None:
        """Set one key of a ConfigMap, creating the ConfigMap if needed. A merge patch of one
        key: concurrent writers of other keys never undo each other."""
        path = f"/api/v1/namespaces/{namespace}/configmaps"
        patch = {"data": {key: value}}
        for _ in range(3):
            try:
                await self._core_v1("PATCH", f"{path}/{name}", patch, MERGE_PATCH)
                return
            except Gone:
                pass
            try:
                body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}
                await self._core_v1("POST", path, {**body, **patch})
                return
            except Conflict:  # created meanwhile by another writer: patch it
                continue
        raise KubeError(0, f"could not write ConfigMap {namespace}/{name}")

    async def remove_configmap_entries(self, namespace: str, name: str, keys: list[str]) -> None:
        """Remove keys of a ConfigMap (a merge patch: other keys are untouched)."""
        path = f"/api/v1/namespaces/{namespace}/configmaps/{name}"
        with contextlib.suppress(Gone):  # no record, nothing to remove
            await self._core_v1("PATCH", path, {"data": dict.fromkeys(keys)}, MERGE_PATCH)

    async def _core_v1(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> Any:
        """One core/v1 call through the official ApiClient (its auth, TLS, serialization and
        error classes). Not `CoreV1Api`: importing that one generated module costs 25.6 MiB
        of RSS and 2.4 s of startup (measured), for the two calls made here."""

        async def call() -> Any:
            request = await self._api.param_serialize(
                method=method,
                resource_path=path,
                header_params={"Accept": "application/json", "Content-Type": content_type},
                body=body,
                auth_settings=["BearerToken"],
            )
            response = await self._api.call_api(*request)
            await response.read()  # type: ignore[no-untyped-call]
            types = {"200": "object", "201": "object"}
            return self._api.response_deserialize(response, types).data

        return await self._call(call)

    async def get_secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        """The decoded data of a Secret, or None when it does not exist."""
        secret = await self.get_secret(namespace, name)
        return None if secret is None else secret_data(secret)

    async def post_event(self, ref: ObjectRef, type_: str, reason: str, message: str) -> None:
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{ref.name[:200]}.{uuid.uuid4().hex[:12]}",
                "namespace": ref.namespace,
            },
            "involvedObject": {
                "apiVersion": _API_VERSIONS[ref.kind],
                "kind": ref.kind,
                "namespace": ref.namespace,
                "name": ref.name,
                "uid": ref.uid,
            },
            "type": type_,
            "reason": reason,
            "message": message,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        await self._core_v1("POST", f"/api/v1/namespaces/{ref.namespace}/events", event)

    # ------------------------------------------------------------ tenancy (policy, quota)

    async def list_objects(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Every object of one of our kinds, in `namespace` or (None) in all of them; a kind
        whose CRD is not installed has none."""
        try:
            if namespace is None:
                result = await self._call(
                    lambda: self._custom.list_cluster_custom_object(GROUP, VERSION, plural)
                )
            else:
                result = await self._call(
                    lambda: self._custom.list_namespaced_custom_object(
                        GROUP, VERSION, namespace, plural
                    )
                )
        except Gone:
            return []
        return list(result.get("items") or [])

    async def patch_object_status(
        self, plural: str, namespace: str, name: str, resource_version: str, status: Any
    ) -> dict[str, Any]:
        """Merge-patch the status of one of our namespaced kinds, only at `resource_version`
        (else Conflict): a compare-and-swap."""
        body = {"metadata": {"resourceVersion": resource_version}, "status": status}
        result: dict[str, Any] = await self._call(
            lambda: self._custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                plural,
                name,
                body,
                _content_type="application/merge-patch+json",
            )
        )
        return result

    async def get_namespace_labels(self, name: str) -> dict[str, str] | None:
        """The labels of a namespace, or None when it does not exist."""
        try:
            namespace = await self._core_v1("GET", f"/api/v1/namespaces/{name}")
        except Gone:
            return None
        return dict((namespace.get("metadata") or {}).get("labels") or {})

    async def get_object(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        """One object of one of our namespaced kinds, read fresh (Gone if there is none)."""
        result: dict[str, Any] = await self._call(
            lambda: self._custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, name
            )
        )
        return result

    # ------------------------------------------------------------ accounts (controller.accounts)

    async def find_object(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """One gpupod.dev object (namespace "" for cluster-scoped kinds); None if absent."""
        try:
            if namespace:
                result: dict[str, Any] = await self._call(
                    lambda: self._custom.get_namespaced_custom_object(
                        GROUP, VERSION, namespace, plural, name
                    )
                )
            else:
                result = await self._call(
                    lambda: self._custom.get_cluster_custom_object(GROUP, VERSION, plural, name)
                )
        except Gone:
            return None
        return result

    async def patch_object(
        self, plural: str, namespace: str, name: str, body: dict[str, Any], *, status: bool = False
    ) -> dict[str, Any]:
        """Merge-patch a gpupod.dev object (or its status subresource)."""
        custom = self._custom
        if namespace:
            call = (
                custom.patch_namespaced_custom_object_status
                if status
                else custom.patch_namespaced_custom_object
            )
            result: dict[str, Any] = await self._call(
                lambda: call(
                    GROUP,
                    VERSION,
                    namespace,
                    plural,
                    name,
                    body,
                    _content_type=MERGE_PATCH,
                )
            )
        else:
            cluster_call = (
                custom.patch_cluster_custom_object_status
                if status
                else custom.patch_cluster_custom_object
            )
            result = await self._call(
                lambda: cluster_call(GROUP, VERSION, plural, name, body, _content_type=MERGE_PATCH)
            )
        return result

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A Secret as stored (data base64-encoded), or None when it does not exist."""
        try:
            secret: dict[str, Any] = await self._core_v1(
                "GET", f"/api/v1/namespaces/{namespace}/secrets/{name}"
            )
        except Gone:
            return None
        return secret

    async def patch_secret_metadata(
        self, namespace: str, name: str, metadata: dict[str, Any]
    ) -> dict[str, Any]:
        """Merge-patch a Secret's metadata (finalizers, with a resourceVersion precondition)."""
        result: dict[str, Any] = await self._core_v1(
            "PATCH",
            f"/api/v1/namespaces/{namespace}/secrets/{name}",
            {"metadata": metadata},
            content_type=MERGE_PATCH,
        )
        return result
