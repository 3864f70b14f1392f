"""Async client of the Yotta Pods API v2.

One httpx pool per client, a shared token bucket, typed errors, retries with jittered
exponential backoff. Create is the only non-idempotent call: it is retried only when the
request certainly did not take effect (connection never made, HTTP 429); any other doubt
raises `OutcomeUnknown` so the caller looks the pod up by name instead of creating twice.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Self, TypeVar

import httpx
from pydantic import SecretStr, ValidationError

from gpupod_operator import __version__
from gpupod_operator.yotta.errors import (
    ApiError,
    InvalidRequest,
    OutcomeUnknown,
    Transient,
    YottaError,
    classify,
)
from gpupod_operator.yotta.models import (
    CreatePodRequest,
    Envelope,
    GpuType,
    Pod,
    PodStatus,
)
from gpupod_operator.yotta.ratelimit import Clock, Sleep, TokenBucket

logger = logging.getLogger(__name__)

Observer = Callable[[str, str], None]
_M = TypeVar("_M", Pod, GpuType)

_POD_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MAX_MESSAGE = 300
# Raised before any byte of the request left this process: safe to retry even a create.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Our own bugs or configuration errors: retrying cannot help.
_PERMANENT = (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.InvalidURL)


class _Redactor:
    """Removes secret values (API key, env values we sent) from text the API gave us."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text[:_MAX_MESSAGE] + ("..." if len(text) > _MAX_MESSAGE else "")


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _validation_summary(exc: ValidationError) -> str:
    # Never include the input: it may hold echoed env values.
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
        for err in exc.errors(include_url=False, include_input=False, include_context=False)
    )[:_MAX_MESSAGE]


def _items(data: Any) -> list[Any] | None:
    """List payloads: a bare array (documented), `{items: [...]}` (paginated style), or null."""
    if data is None:
        return []
    if isinstance(data, list):
        return data
    if isinstance(data, dict) and isinstance(data.get("items"), list):
        return list(data["items"])
    return None


class YottaClient:
    """Typed async client. Use as `async with YottaClient(url, key) as client: ...`."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 15.0,
        max_retries: int = 4,
        backoff_base: float = 0.5,
        backoff_max: float = 20.0,
        qps: float = 20.0,
        burst: int = 40,
        observer: Observer | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 32,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("api_key must not be empty")
        url = httpx.URL(base_url.rstrip("/"))
        # Credentials in the URL would end up in logs and reprs; the key goes in a header.
        self._base_url = str(url.copy_with(username=None, password=None))
        self._api_key = SecretStr(api_key)
        self._max_retries = max(0, max_retries)
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._observer = observer
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._bucket = TokenBucket(qps, burst, clock=clock, sleep=sleep)
        self._http = httpx.AsyncClient(
            base_url=self._base_url,
            timeout=httpx.Timeout(timeout),
            transport=transport,
            follow_redirects=False,
            # httpcore scans every pooled connection per request: a bounded pool stays fast
            # under bursts, and the token bucket keeps us far below this anyway.
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            headers={"Accept": "application/json", "User-Agent": f"gpupod-operator/{__version__}"},
        )

    def __repr__(self) -> str:
        return f"YottaClient(base_url={self._base_url!r})"

    @property
    def base_url(self) -> str:
        return self._base_url

    def use_key(self, api_key: str) -> None:
        """Send `api_key` from the next request on (a rotated key): the connection pool and
        the rate limiter stay, and so does what the provider knows of recent calls."""
        if not api_key:
            raise ValueError("api_key must not be empty")
        self._api_key = SecretStr(api_key)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- public API -------------------------------------------------------------------------

    async def create_pod(self, req: CreatePodRequest) -> Pod:
        """Create a pod. Raises OutcomeUnknown when it may or may not exist now."""
        data = await self._call(
            "create",
            "POST",
            "/v2/pods",
            body=req.to_body(),
            idempotent=False,
            secrets=req.secret_values(),
        )
        if isinstance(data, dict):
            try:
                return Pod.model_validate(data)
            except ValidationError as exc:
                problem = _validation_summary(exc)
            # Raised outside the except block: the ValidationError (which quotes the input,
            # env values included) must not ride along as __context__.
            raise OutcomeUnknown(
                f"pod created but the response was unreadable: {problem}", operation="create"
            )
        if isinstance(data, int | str) and not isinstance(data, bool) and str(data).strip():
            # v1 style: data is the bare id. Fill in what we know from the request.
            return Pod(
                id=str(data),
                name=req.name,
                status=PodStatus.INITIALIZE,
                image=req.image,
                resourceType=req.resourceType,
                gpuType=req.gpuType,
                gpuCount=req.gpuCount,
            )
        raise OutcomeUnknown("create answered success without a pod id", operation="create")

    async def get_pod(self, pod_id: str) -> Pod:
        data = await self._call("get", "GET", f"/v2/pods/{self._check_id(pod_id, 'get')}")
        if not isinstance(data, dict):
            raise ApiError("get answered without a pod object", operation="get")
        return self._parse(Pod, data, "get")

    async def list_pods(
        self,
        *,
        regions: Sequence[str] | None = None,
        statuses: Sequence[PodStatus] | None = None,
    ) -> list[Pod]:
        """List pods; an empty or None filter means no filter. The filters are also applied
        client-side, in case a server ignores them; pods whose region or status it cannot
        tell (None / UNKNOWN) are kept rather than silently hidden."""
        params: dict[str, str] = {}
        if regions:
            params["regionList"] = ",".join(regions)
        if statuses:
            if PodStatus.UNKNOWN in statuses:
                raise ValueError("cannot filter on PodStatus.UNKNOWN")
            params["statusList"] = ",".join(str(s.code) for s in statuses)
        data = await self._call("list", "GET", "/v2/pods", params=params or None)
        items = _items(data)
        if items is None:
            raise ApiError("list answered with an unexpected shape", operation="list")
        pods = [self._parse(Pod, item, "list") for item in items]
        if regions:
            pods = [p for p in pods if p.region is None or p.region in regions]
        if statuses:
            pods = [p for p in pods if p.status in statuses or p.status is PodStatus.UNKNOWN]
        return pods

    async def delete_pod(self, pod_id: str) -> None:
        await self._action("delete", "DELETE", f"/v2/pods/{self._check_id(pod_id, 'delete')}")

    async def pause_pod(self, pod_id: str) -> None:
        await self._action("pause", "POST", f"/v2/pods/{self._check_id(pod_id, 'pause')}/pause")

    async def resume_pod(self, pod_id: str) -> None:
        path = f"/v2/pods/{self._check_id(pod_id, 'resume')}/resume"
        await self._action("resume", "POST", path)

    async def list_gpu_types(self) -> list[GpuType]:
        data = await self._call("types", "GET", "/v2/vms/types")
        items = _items(data)
        if items is None:
            raise ApiError("types answered with an unexpected shape", operation="types")
        return [self._parse(GpuType, item, "types") for item in items]

    # --- internals --------------------------------------------------------------------------

    @staticmethod
    def _check_id(pod_id: str, operation: str) -> str:
        # IDs go into the URL path: refuse anything that could change the path.
        if not isinstance(pod_id, str) or not _POD_ID.fullmatch(pod_id):
            raise InvalidRequest(f"invalid pod id {str(pod_id)[:70]!r}", operation=operation)
        return pod_id

    @staticmethod
    def _parse(model: type[_M], data: Any, operation: str) -> _M:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            problem = _validation_summary(exc)
        # Outside the except block, so the input-quoting ValidationError is not __context__.
        raise ApiError(f"unexpected {model.__name__} in response: {problem}", operation=operation)

    async def _action(self, operation: str, method: str, path: str) -> None:
        # Documented answers are data true; null and the pod object are tolerated too.
        data = await self._call(operation, method, path)
        if data is False:
            raise ApiError(f"{operation} answered success with data=false", operation=operation)

    def _notify(self, operation: str, result: str) -> None:
        if self._observer is None:
            return
        try:
            self._observer(operation, result)
        except Exception:  # a metrics bug must not break API calls
            logger.warning("yotta client observer failed", exc_info=True)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        ceiling = min(self._backoff_max, self._backoff_base * 2.0 ** (attempt - 1))
        delay = ceiling * (0.5 + self._rng.random() / 2)  # "equal jitter"
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, self._backoff_max)

    async def _call(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        idempotent: bool = True,
        secrets: Sequence[str] = (),
    ) -> Any:
        """One logical call: attempts, retries, typed errors. Returns the envelope's data."""
        redact = _Redactor([self._api_key.get_secret_value(), *secrets])
        attempt = 0
        while True:
            attempt += 1
            await self._bucket.acquire()
            try:
                return await self._attempt(
                    operation, method, path, params, body, idempotent, redact, attempt
                )
            except Transient as exc:
                # OutcomeUnknown is never retried: that is the caller's decision.
                if isinstance(exc, OutcomeUnknown) or attempt > self._max_retries:
                    raise
                delay = self._backoff(attempt, exc.retry_after)
                logger.info("%s; retrying in %.2fs", exc, delay)
                await self._sleep(delay)

    async def _attempt(
        self,
        operation: str,
        method: str,
        path: str,
        params: dict[str, str] | None,
        body: dict[str, Any] | None,
        idempotent: bool,
        redact: _Redactor,
        attempt: int,
    ) -> Any:
        started = time.monotonic()
        meta: dict[str, Any] = {"operation": operation, "attempts": attempt}
        # A lost answer to a create leaves us not knowing whether the pod exists.
        unsure: type[Transient] = Transient if idempotent else OutcomeUnknown
        try:
            response = await self._http.request(
                method,
                path,
                params=params,
                json=body,
                headers={"X-Api-Key": self._api_key.get_secret_value()},
            )
        except _PERMANENT as exc:
            self._notify(operation, "error")
            raise ApiError(redact(f"{type(exc).__name__}: {exc}"), **meta) from exc
        except _NOT_SENT as exc:
            result = "transient" if isinstance(exc, httpx.ConnectError) else "timeout"
            self._notify(operation, result)
            logger.debug("yotta %s %s %s -> %s", operation, method, path, type(exc).__name__)
            raise Transient(redact(f"{type(exc).__name__}: {exc}"), **meta) from exc
        except httpx.TransportError as exc:
            result = "timeout" if isinstance(exc, httpx.TimeoutException) else "transient"
            self._notify(operation, result)
            logger.debug("yotta %s %s %s -> %s", operation, method, path, type(exc).__name__)
            raise unsure(redact(f"{type(exc).__name__}: {exc}".rstrip(": ")), **meta) from exc

        status = response.status_code
        try:
            payload = response.json()
        except ValueError:
            payload = None
        has_envelope = isinstance(payload, dict) and "code" in payload
        envelope = Envelope.model_validate(payload) if has_envelope else Envelope()
        error_cls = classify(envelope.code, status, has_envelope=has_envelope)
        logger.debug(
            "yotta %s %s %s -> http=%s code=%s in %.3fs",
            operation,
            method,
            path,
            status,
            envelope.code,
            time.monotonic() - started,
        )
        if error_cls is None:
            self._notify(operation, "ok")
            return envelope.data

        message = redact(envelope.message or f"HTTP {status} {response.reason_phrase}".strip())
        meta.update(code=envelope.code, http_status=status)
        if issubclass(error_cls, Transient):
            self._notify(operation, "transient")
            retry_after = _parse_retry_after(response.headers.get("Retry-After"))
            # 429 means the server refused before doing anything: safe even for create.
            cls = Transient if status == 429 else unsure
            raise cls(message, retry_after=retry_after, **meta)
        error = error_cls(message, **meta)
        self._notify(operation, error.kind)
        raise error


__all__ = ["Observer", "YottaClient", "YottaError"]
