"""`Provider` on the Yotta Pods API v2: error translation and the snapshot bookkeeping.

The bookkeeping is what makes a bulk List safe to decide on. A List answer describes the pods
as they were when the request was SENT; for any pod we acted on after that moment (or any name
we POSTed), the list is no proof either way. So each action `touch`es its key before and after
the call, and a list is used for a key only when it was sent after the last touch.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from gpupod_operator.domain.decisions import NameLookup
from gpupod_operator.domain.failures import FailureKind, ProviderError
from gpupod_operator.provider.base import Snapshot
from gpupod_operator.yotta import (
    CreatePodRequest,
    InvalidRequest,
    InvalidState,
    NotFound,
    OutcomeUnknown,
    Pod,
    Transient,
    Unauthorized,
    YottaError,
)

T = TypeVar("T")

_KINDS: list[tuple[type[YottaError], FailureKind]] = [
    (NotFound, FailureKind.GONE),
    (InvalidRequest, FailureKind.REJECTED),
    (InvalidState, FailureKind.WRONG_STATE),
    (Unauthorized, FailureKind.UNAUTHORIZED),
    (OutcomeUnknown, FailureKind.OUTCOME_UNKNOWN),  # before Transient: it is one
    (Transient, FailureKind.UNAVAILABLE),
]


def translate(error: YottaError) -> ProviderError:
    kind = next((k for cls, k in _KINDS if isinstance(error, cls)), FailureKind.UNEXPECTED)
    retry_after = error.retry_after if isinstance(error, Transient) else None
    return ProviderError(kind, str(error), retry_after)


class PodsApi(Protocol):
    """The part of `yotta.YottaClient` this provider uses."""

    async def get_pod(self, pod_id: str) -> Pod: ...
    async def list_pods(self) -> list[Pod]: ...
    async def create_pod(self, req: CreatePodRequest) -> Pod: ...
    async def pause_pod(self, pod_id: str) -> None: ...
    async def resume_pod(self, pod_id: str) -> None: ...
    async def delete_pod(self, pod_id: str) -> None: ...
    async def aclose(self) -> None: ...


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class YottaProvider:
    def __init__(
        self,
        client: PodsApi,
        *,
        snapshot_ttl: float,
        clock: Callable[[], dt.datetime] = _utcnow,
    ) -> None:
        self._client = client
        self._ttl = dt.timedelta(seconds=snapshot_ttl)
        self._clock = clock
        self.snapshot: Snapshot | None = None
        self._touched: dict[str, dt.datetime] = {}  # pod ID or remote name -> last action

    async def aclose(self) -> None:
        await self._client.aclose()

    # ------------------------------------------------------------ the snapshot rules

    def _touch(self, key: str) -> None:
        self._touched[key] = self._clock()

    def _usable(self, key: str, snap: Snapshot) -> bool:
        touched = self._touched.get(key)
        return touched is None or touched < snap.taken_at

    def cached(self, pod_id: str) -> Pod | None:
        """The pod as the latest list showed it, if that list is recent (one TTL) and was
        sent after our last action on it. Absence from a list is never an answer: only a GET
        says a pod is gone. A view a few seconds old is safe to decide on: the API refuses a
        pause/resume of a pod in another state (WRONG_STATE: read it again), and TERMINATED
        is final."""
        snap = self.snapshot
        if snap is None or self._clock() - snap.taken_at > self._ttl:
            return None
        return snap.pods.get(pod_id) if self._usable(pod_id, snap) else None

    # ------------------------------------------------------------ Provider

    async def _do(self, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        except YottaError as e:
            raise translate(e) from None

    async def get(self, pod_id: str) -> Pod | None:
        try:
            return await self._client.get_pod(pod_id)
        except NotFound:
            return None
        except YottaError as e:
            raise translate(e) from None

    async def observe(self, pod_id: str) -> Pod | None:
        cached = self.cached(pod_id)
        return cached if cached is not None else await self.get(pod_id)

    async def look_up(self, name: str, since: dt.datetime) -> NameLookup:
        snap = self.snapshot
        if snap is not None and snap.taken_at > since and self._usable(name, snap):
            pods, taken_at = list(snap.pods.values()), snap.taken_at
        else:
            taken_at = self._clock()
            pods = await self._do(self._client.list_pods)
        return NameLookup([p for p in pods if p.name == name], taken_at)

    async def create(self, request: CreatePodRequest) -> Pod:
        self._touch(request.name)
        try:
            return await self._do(lambda: self._client.create_pod(request))
        finally:
            # Survival suite fix: a list answered between the marker and the POST's end may
            # predate the pod; from now on only a later list can rule it out.
            self._touch(request.name)

    async def _act(self, pod_id: str, call: Callable[[str], Awaitable[None]]) -> None:
        self._touch(pod_id)  # lists sent before or during the call may show the pod as it was
        try:
            await self._do(lambda: call(pod_id))
        finally:
            self._touch(pod_id)

    async def pause(self, pod_id: str) -> None:
        await self._act(pod_id, self._client.pause_pod)

    async def resume(self, pod_id: str) -> None:
        await self._act(pod_id, self._client.resume_pod)

    async def delete(self, pod_id: str) -> None:
        try:
            await self._act(pod_id, self._client.delete_pod)
        except ProviderError as e:
            if e.kind != FailureKind.GONE:
                raise

    async def list_all(self) -> Snapshot:
        sent = self._clock()
        pods = await self._do(self._client.list_pods)
        snap = Snapshot({p.id: p.kept() for p in pods}, sent)
        self.snapshot = snap
        self._touched = {k: v for k, v in self._touched.items() if v >= sent}
        return snap
