"""Fakes of the controller's boundaries, for tests of the reconciler and the status writer.

In the manner of Crossplane's `ExternalClientFns`: the provider is a set of function fields,
one per `Provider` method, that each case fills with what that call should answer. Every call
that crosses a boundary (a status patch, a read of the GpuPod, a provider call) is appended to
ONE shared log as a short line, so a test can assert the order of writes and remote calls that
crash safety rests on, e.g. `["patch +createPending", "create", "patch -createPending podId=p1"]`.

`KubeApi` and `Poller` are concrete classes in `Runtime`'s signature, so their fakes subclass
them (overriding every method the controller calls, skipping the real constructors) and the
Runtime type-checks without a `type: ignore`. The provider fake satisfies the `Provider`
Protocol structurally.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from gpupod_operator.config import OperatorConfig
from gpupod_operator.controller.events import EventRecorder
from gpupod_operator.controller.kube import Conflict, Gone, KubeApi, KubeError, ObjectRef
from gpupod_operator.controller.metrics import Metrics
from gpupod_operator.controller.poller import Poller
from gpupod_operator.controller.registry import Registry
from gpupod_operator.controller.runtime import Runtime
from gpupod_operator.controller.status_writer import StatusWriter
from gpupod_operator.domain.decisions import NameLookup
from gpupod_operator.domain.failures import FailureKind, ProviderError
from gpupod_operator.domain.spec import GpuPodSpec, remote_name, spec_hash
from gpupod_operator.provider import Snapshot
from gpupod_operator.yotta import CreatePodRequest, Pod

from .fakes import merge_patch

T = TypeVar("T")
Log = list[str]

NS, NAME, UID = "ns", "gp", "0f3c9a2e-1111-2222-3333-444455556666"
CLUSTER_ID = "9d3c1f6a-aaaa-bbbb-cccc-ddddeeeeffff"
REMOTE_NAME = remote_name(NS, NAME, UID, CLUSTER_ID)
SPEC: dict[str, Any] = {"image": "nginx:1.27", "gpuType": "NVIDIA_RTX_4090_24G", "gpuCount": 1}
T0 = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
T0_ISO = "2026-11-27T12:00:00Z"


def hash_of(spec: dict[str, Any]) -> str:
    return spec_hash(GpuPodSpec.parse(spec))


def gpupod(
    status: dict[str, Any] | None = None,
    *,
    rv: str = "1",
    generation: int = 1,
    **spec: Any,
) -> dict[str, Any]:
    """A GpuPod body as kopf hands it over; `spec` overrides fields of SPEC."""
    return {
        "apiVersion": "gpupod.dev/v1alpha1",
        "kind": "GpuPod",
        "metadata": {
            "namespace": NS,
            "name": NAME,
            "uid": UID,
            "resourceVersion": rv,
            "generation": generation,
        },
        "spec": {**SPEC, **spec},
        "status": dict(status or {}),
    }


def pod(id_: str, status: str = "RUNNING", **extra: Any) -> Pod:
    return Pod.model_validate({"id": id_, "name": REMOTE_NAME, "status": status, **extra})


# ---------------------------------------------------------------- provider


def returns(value: T) -> Callable[..., T]:
    return lambda *_: value


def raises(kind: FailureKind) -> Callable[..., Any]:
    def fn(*_: Any) -> Any:
        raise ProviderError(kind, f"{kind.value} (from the test)")

    return fn


class Then:
    """Successive answers, one per call (the last repeats); a FailureKind is raised. The
    provider fake deep-copies its Fns, so a case can be run by several tests."""

    def __init__(self, answers: tuple[Any, ...]) -> None:
        self.answers, self.calls = answers, 0

    def __call__(self, *_: Any) -> Any:
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        if isinstance(answer, FailureKind):
            raise ProviderError(answer, f"{answer.value} (from the test)")
        return answer


def then(*answers: Any) -> Then:
    return Then(answers)


def found(*pods: Pod, after: float = 1.0) -> Callable[[str, dt.datetime], NameLookup]:
    """A lookup by name that finds `pods`, from a list taken `after` seconds after `since`."""
    return lambda _name, since: NameLookup(list(pods), since + dt.timedelta(seconds=after))


def _unexpected(call: str) -> Callable[..., Any]:
    def fn(*_: Any) -> Any:
        raise AssertionError(f"unexpected provider call: {call}")

    return fn


@dataclass(frozen=True)
class Fns:
    """What each provider call answers; a call a case does not expect fails the test."""

    observe: Callable[[str], Pod | None] = field(default_factory=lambda: _unexpected("observe"))
    get: Callable[[str], Pod | None] = field(default_factory=lambda: _unexpected("get"))
    look_up: Callable[[str, dt.datetime], NameLookup] = field(
        default_factory=lambda: _unexpected("look_up")
    )
    create: Callable[[CreatePodRequest], Pod] = field(default_factory=lambda: _unexpected("create"))
    pause: Callable[[str], None] = field(default_factory=lambda: _unexpected("pause"))
    resume: Callable[[str], None] = field(default_factory=lambda: _unexpected("resume"))
    delete: Callable[[str], None] = field(default_factory=lambda: _unexpected("delete"))
    list_all: Callable[[], Snapshot] = field(default_factory=lambda: _unexpected("list_all"))


class FakeProvider:
    """A `Provider` that logs each call as it is SENT (before its answer, which may be an
    error) and answers from `fns`."""

    def __init__(self, log: Log, fns: Fns) -> None:
        self.log, self.fns = log, copy.deepcopy(fns)  # fresh `then` state per world
        self.requests: list[CreatePodRequest] = []

    async def observe(self, pod_id: str) -> Pod | None:
        self.log.append(f"observe {pod_id}")
        return self.fns.observe(pod_id)

    async def get(self, pod_id: str) -> Pod | None:
        self.log.append(f"get-pod {pod_id}")
        return self.fns.get(pod_id)

    async def look_up(self, name: str, since: dt.datetime) -> NameLookup:
        self.log.append("look_up")
        return self.fns.look_up(name, since)

    async def create(self, request: CreatePodRequest) -> Pod:
        self.log.append("create")
        self.requests.append(request)
        return self.fns.create(request)

    async def pause(self, pod_id: str) -> None:
        self.log.append(f"pause {pod_id}")
        self.fns.pause(pod_id)

    async def resume(self, pod_id: str) -> None:
        self.log.append(f"resume {pod_id}")
        self.fns.resume(pod_id)

    async def delete(self, pod_id: str) -> None:
        self.log.append(f"delete {pod_id}")
        self.fns.delete(pod_id)

    async def list_all(self) -> Snapshot:
        self.log.append("list_all")
        return self.fns.list_all()

    async def aclose(self) -> None:
        pass


# ---------------------------------------------------------------- Kubernetes

# Status fields the crash-safety rules are about: shown in the log line of each patch.
_SHOWN = ("createPending", "podId", "replacing", "pausedApplied")


def describe_patch(patch: dict[str, Any]) -> str:
    """`patch +createPending` (set), `-createPending` (cleared), `podId=p1` (a value)."""
    marks = []
    for key in _SHOWN:
        if key in patch:
            value = patch[key]
            if value is None:
                marks.append(f"-{key}")
            elif isinstance(value, dict):
                marks.append(f"+{key}")
            else:
                marks.append(f"{key}={value}")
    return " ".join(["patch", *marks])


class FakeKube(KubeApi):
    """One stored GpuPod (or none) and its Secrets. `patch_status` honours the resourceVersion
    precondition like the API server: Conflict when `ref` is at another version, else merge,
    bump the version and return the whole object. `faults` are raised by the next patches, in
    order (None: that patch goes through)."""

    def __init__(
        self,
        log: Log,
        stored: dict[str, Any] | None,
        *,
        faults: Iterable[KubeError | None] = (),
        secrets: dict[str, dict[str, str]] | None = None,
    ) -> None:  # no super().__init__: there is no cluster to connect to
        self.log = log
        self.obj = copy.deepcopy(stored)
        self.faults = list(faults)
        self.secrets = secrets or {}
        self.patches: list[dict[str, Any]] = []  # the patches that were applied

    def __repr__(self) -> str:
        return "FakeKube()"

    @property
    def status(self) -> dict[str, Any]:
        """The stored status ({} when there is no GpuPod)."""
        status: dict[str, Any] = (self.obj or {}).get("status") or {}
        return status

    async def get(self, ref: ObjectRef) -> dict[str, Any]:
        self.log.append("get")
        if self.obj is None:
            raise Gone(404, f"gpupods {ref.name} not found")
        return copy.deepcopy(self.obj)

    async def patch_status(self, ref: ObjectRef, status: dict[str, Any]) -> dict[str, Any]:
        line = describe_patch(status)
        if self.faults and (fault := self.faults.pop(0)) is not None:
            what = "conflict" if isinstance(fault, Conflict) else "error"
            self.log.append(f"{line} ({what})")
            raise fault
        if self.obj is None:
            self.log.append(f"{line} (gone)")
            raise Gone(404, f"gpupods {ref.name} not found")
        meta = self.obj["metadata"]
        if ref.resource_version and ref.resource_version != meta["resourceVersion"]:
            self.log.append(f"{line} (conflict)")
            raise Conflict(409, "the object has been modified")
        self.log.append(line)
        self.patches.append(copy.deepcopy(status))
        self.obj["status"] = merge_patch(self.obj.get("status") or {}, copy.deepcopy(status))
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)
        return copy.deepcopy(self.obj)

    async def get_secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        self.log.append(f"secret {name}")
        return self.secrets.get(name)


class FakePoller(Poller):
    """Only `poke` is used by the reconciler."""

    def __init__(self) -> None:  # no super().__init__: nothing to poll
        self.pokes = 0

    def poke(self) -> None:
        self.pokes += 1


# ---------------------------------------------------------------- the whole runtime


@dataclass
class World:
    log: Log
    kube: FakeKube
    provider: FakeProvider
    poller: FakePoller
    recorder: EventRecorder
    registry: Registry
    metrics: Metrics
    rt: Runtime
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)

    def stored(self) -> dict[str, Any]:
        """The GpuPod as kopf would hand it to the next handler call: a copy of what is stored."""
        assert self.kube.obj is not None, "the GpuPod is gone"
        return copy.deepcopy(self.kube.obj)

    def event_reasons(self) -> list[str]:
        """`Type/Reason` of every Event posted, in order."""
        return [f"{type_}/{reason}" for type_, reason, _ in self.events]

    async def flush_events(self) -> None:
        """Let the recorder's workers post everything queued (they run as tasks)."""
        await self.recorder.drain(within=1.0)


class Worlds:
    """Makes Worlds and stops their Event workers at the end of a test (see `worlds`)."""

    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []

    def new(
        self,
        stored: dict[str, Any] | None,
        fns: Fns | None = None,
        *,
        faults: Iterable[KubeError | None] = (),
        secrets: dict[str, dict[str, str]] | None = None,
    ) -> World:
        """A real Runtime (real StatusWriter, Registry, Metrics, EventRecorder) on the fakes,
        with `stored` as the GpuPod the API server holds."""
        log: Log = []
        kube = FakeKube(log, stored, faults=faults, secrets=secrets)
        provider = FakeProvider(log, fns or Fns())
        poller = FakePoller()
        registry = Registry()
        metrics = Metrics(CollectorRegistry())
        events: list[tuple[str, str, str]] = []

        async def post(ref: ObjectRef, type_: str, reason: str, message: str) -> None:
            events.append((type_, reason, message))

        recorder = EventRecorder(post)
        self._tasks.append(asyncio.create_task(recorder.run()))
        writer = StatusWriter(kube, registry, recorder, metrics)
        config = OperatorConfig(
            api_url="http://yotta.invalid", api_key=SecretStr("test-key"), cluster_id=CLUSTER_ID
        )
        rt = Runtime(config, provider, kube, writer, recorder, registry, poller, metrics)
        return World(log, kube, provider, poller, recorder, registry, metrics, rt, events)

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
