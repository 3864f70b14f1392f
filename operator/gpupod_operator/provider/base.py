"""The interface the reconciler and the poller program against (fakes implement it in tests)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

from gpupod_operator.domain.decisions import NameLookup
from gpupod_operator.yotta import CreatePodRequest, Pod


@dataclass(frozen=True)
class Snapshot:
    """One List answer; `taken_at` is when the request was SENT, so anything done to a pod
    after that time may be missing from it."""

    pods: dict[str, Pod]
    taken_at: dt.datetime


class Provider(Protocol):
    async def observe(self, pod_id: str) -> Pod | None:
        """The pod by ID (from a recent enough list, else a GET); None: the API says gone."""

    async def get(self, pod_id: str) -> Pod | None:
        """The pod by ID from a GET, never from a list; None: the API says gone."""

    async def look_up(self, name: str, since: dt.datetime) -> NameLookup:
        """Every pod carrying `name`, from a list sent after `since` and after our last
        create with that name ended: an earlier list cannot rule a pod out."""

    async def create(self, request: CreatePodRequest) -> Pod:
        """POST the pod. OUTCOME_UNKNOWN: it may exist; look it up before creating again."""

    async def pause(self, pod_id: str) -> None: ...

    async def resume(self, pod_id: str) -> None: ...

    async def delete(self, pod_id: str) -> None:
        """Start deleting the pod; a pod already gone is success."""

    async def list_all(self) -> Snapshot:
        """Every pod of the account, in one List; the snapshot then serves `observe`."""

    async def aclose(self) -> None: ...
