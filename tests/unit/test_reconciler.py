"""The reconciler on a real Runtime over fakes of its two boundaries, in Crossplane's manner:
tables of cases, each with the `reason` it exists for.

Each case runs `reconciler.reconcile` or `reconciler.finalize` once on a GpuPod body and
compares the ONE log of boundary crossings (status patches, reads of the GpuPod, provider
calls, in the order they were sent) with the expected one; that log is where the write
orderings crash safety rests on are asserted. Patches show the fields those rules are about:
`patch +createPending` sets the create marker, `patch -createPending podId=p1` clears it in the
same write that records the pod ID. A patch the API server refused is marked `(conflict)` or
`(error)`; a provider call is logged when sent, whatever it answered.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import kopf
import pytest

from gpupod_operator.config import OperatorConfig
from gpupod_operator.controller import reconciler
from gpupod_operator.controller.kube import Conflict, KubeError
from gpupod_operator.controller.runtime import Runtime
from gpupod_operator.domain.decisions import create_settle
from gpupod_operator.domain.failures import FailureKind

from ..e2e.gpupods import condition
from .reconciler_fakes import (
    REMOTE_NAME,
    SPEC,
    T0_ISO,
    Fns,
    World,
    Worlds,
    found,
    gpupod,
    hash_of,
    pod,
    raises,
    returns,
    then,
)

Handler = Callable[[Runtime, Any, int], Awaitable[None]]
TEMPORARY = kopf.TemporaryError
K = FailureKind

ABSENT = object()  # want.status: the field must not be there
PRESENT = object()  # ... must be there, whatever its value

MARKER = {"remoteName": REMOTE_NAME, "since": T0_ISO}
NEW = gpupod()
# An earlier attempt wrote the marker and never learned how its POST ended.
MARKED = gpupod({"createPending": MARKER, "remoteName": REMOTE_NAME, "phase": "Creating"})
CONFLICT = Conflict(409, "the object has been modified; please apply your changes again")
SECRET_ENV = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}]

# A lookup must be taken this long after a create marker to rule the create out: the POST may
# run for the whole request timeout (sent by another process before a handover), plus the
# provider's listing delay.
SETTLE = create_settle(OperatorConfig.request_timeout).total_seconds()


def owned(*, rv: str = "1", spec: Mapping[str, Any] | None = None, **status: Any) -> dict[str, Any]:
    """A GpuPod whose status records remote pod p1, built from SPEC (unless `specHash` says
    otherwise), last seen Running."""
    recorded = {"podId": "p1", "remoteName": REMOTE_NAME, "specHash": hash_of(SPEC)}
    return gpupod({**recorded, "phase": "Running", **status}, rv=rv, **(spec or {}))


@dataclass(frozen=True)
class Want:
    ops: list[str]
    raises: type[Exception] | None = None
    synced: tuple[str | None, str | None] | None = None  # (status, reason); None: not checked
    message_has: str = ""  # in the Synced condition's message
    status: Mapping[str, Any] = field(default_factory=dict)  # fields of the stored status
    events: tuple[str, ...] = ()  # `Type/Reason` of Events that must have been posted


@dataclass(frozen=True)
class Case:
    reason: str
    body: dict[str, Any]
    want: Want
    fns: Fns = field(default_factory=Fns)
    stored: dict[str, Any] | None = None  # the GpuPod as the API server has it; default: body
    deleted: bool = False  # the API server has no such GpuPod (any more)
    faults: tuple[KubeError | None, ...] = ()  # raised by the next status patches, in order
    secrets: Mapping[str, dict[str, str]] = field(default_factory=dict)


@pytest.fixture
async def worlds() -> AsyncIterator[Worlds]:
    made = Worlds()
    yield made
    await made.aclose()


async def run(w: World, handler: Handler, body: dict[str, Any]) -> Exception | None:
    """One handler call, as kopf makes it; returns what it raised."""
    try:
        await handler(w.rt, body, 0)
    except Exception as e:
        return e
    finally:
        await w.flush_events()
    return None


def assert_creates_fenced(log: list[str]) -> None:
    """Every POST directly follows a marker write the API server accepted."""
    for i, op in enumerate(log):
        if op == "create":
            before = log[i - 1] if i else ""
            assert before.startswith("patch +createPending"), f"create after {before!r}: {log}"
            assert not before.endswith(")"), f"create after a refused marker write: {log}"


async def check(worlds: Worlds, handler: Handler, case: Case) -> World:
    stored = None if case.deleted else case.stored or case.body
    w = worlds.new(stored, case.fns, faults=case.faults, secrets=dict(case.secrets))
    err = await run(w, handler, case.body)
    want = case.want
    assert w.log == want.ops, case.reason
    assert_creates_fenced(w.log)
    assert (None if err is None else type(err)) is want.raises, f"{case.reason}\ngot {err!r}"
    status = w.kube.status
    synced = condition(w.kube.obj, "Synced")
    if want.synced is not None:
        got = (synced.get("status"), synced.get("reason"))
        assert got == want.synced, f"{case.reason}\nSynced: {synced}"
    assert want.message_has in synced.get("message", ""), f"{case.reason}\nSynced: {synced}"
    for key, value in want.status.items():
        if value is ABSENT:
            assert key not in status, f"{case.reason}\nstatus.{key}: {status.get(key)!r}"
        elif value is PRESENT:
            assert key in status, f"{case.reason}\nstatus.{key} missing"
        else:
            assert status.get(key) == value, f"{case.reason}\nstatus.{key}: {status.get(key)!r}"
    for event in want.events:
        assert event in w.event_reasons(), f"{case.reason}\nEvents: {w.event_reasons()}"
    return w


# ---------------------------------------------------------------- create: the marker fence

CREATED = "patch -createPending podId=p1 -replacing"  # ID recorded, marker gone: ONE write

CREATE: dict[str, Case] = {
    "NewGpuPod": Case(
        reason="The marker is stored before the POST; the pod ID replaces it in one write.",
        body=NEW,
        fns=Fns(create=returns(pod("p1", "INITIALIZE"))),
        want=Want(
            ops=["patch +createPending", "create", CREATED],
            synced=("True", "Reconciled"),
            status={"podId": "p1", "createPending": ABSENT, "phase": "Initializing"},
        ),
    ),
    "MarkerWriteFails": Case(
        reason="When the marker cannot be stored, nothing is POSTed: kopf retries later.",
        body=NEW,
        faults=(KubeError(500, "etcdserver: request timed out"),),
        want=Want(ops=["patch +createPending (error)"], raises=TEMPORARY),
    ),
    "StaleBody": Case(
        reason="A marker write that loses the compare-and-swap re-reads the GpuPod and fences "
        "again at the fresh version before any POST.",
        body=NEW,
        stored=gpupod(rv="2"),
        fns=Fns(create=returns(pod("p1", "INITIALIZE"))),
        want=Want(
            ops=[
                "patch +createPending (conflict)",
                "get",
                "patch +createPending",
                "create",
                CREATED,
            ],
            synced=("True", "Reconciled"),
            status={"podId": "p1"},
        ),
    ),
    "ConflictFreshHasMarker": Case(
        reason="Another process stored a marker meanwhile: its POST may have happened, so the "
        "fresh decision is a lookup by name (adopting what it finds), never a create.",
        body=NEW,
        stored=gpupod({"createPending": MARKER, "remoteName": REMOTE_NAME}, rv="2"),
        fns=Fns(look_up=found(pod("p1"))),
        want=Want(
            ops=["patch +createPending (conflict)", "get", "look_up", CREATED],
            synced=("True", "Reconciled"),
            status={"podId": "p1", "createPending": ABSENT},
        ),
    ),
    "ConflictFreshHasPodId": Case(
        reason="Another process already created and recorded the pod: observe it, create none.",
        body=NEW,
        stored=owned(rv="2"),
        fns=Fns(observe=returns(pod("p1"))),
        want=Want(
            ops=["patch +createPending (conflict)", "get", "observe p1", "patch"],
            synced=("True", "Reconciled"),
            status={"podId": "p1"},
        ),
    ),
    "ConflictGpuPodGone": Case(
        reason="The GpuPod was deleted meanwhile: nothing to create, nothing to report.",
        body=NEW,
        deleted=True,
        faults=(CONFLICT,),
        want=Want(ops=["patch +createPending (conflict)", "get"]),
    ),
    "ConflictNameReused": Case(
        reason="The name now belongs to another GpuPod object (new uid): not ours to create for.",
        body=NEW,
        stored={
            **gpupod(rv="2"),
            "metadata": {**gpupod()["metadata"], "uid": "other", "resourceVersion": "2"},
        },
        want=Want(ops=["patch +createPending (conflict)", "get"]),
    ),
    "ConflictEveryTime": Case(
        reason="A GpuPod that keeps changing is retried later, never POSTed on a stale view.",
        body=NEW,
        faults=(CONFLICT, CONFLICT, CONFLICT),
        want=Want(ops=["patch +createPending (conflict)", "get"] * 3, raises=TEMPORARY),
    ),
    "OutcomeUnknown": Case(
        reason="A create whose outcome is unknown keeps its marker, so the next attempt looks "
        "the pod up instead of POSTing again.",
        body=NEW,
        fns=Fns(create=raises(K.OUTCOME_UNKNOWN)),
        want=Want(
            ops=["patch +createPending", "create", "patch"],
            raises=TEMPORARY,
            synced=("False", "CreateUnconfirmed"),
            status={"createPending": PRESENT, "podId": ABSENT},
        ),
    ),
    "SecretMissing": Case(
        reason="A required Secret that does not exist stops the create before the marker.",
        body=gpupod(env=SECRET_ENV),
        want=Want(
            ops=["secret creds", "patch"],
            raises=TEMPORARY,
            synced=("False", "SecretNotFound"),
            status={"phase": "Pending", "createPending": ABSENT},
        ),
    ),
    "SecretPresent": Case(
        reason="Secret values are read before the marker and sent with the create.",
        body=gpupod(env=SECRET_ENV),
        secrets={"creds": {"token": "s3cret"}},
        fns=Fns(create=returns(pod("p1", "INITIALIZE"))),
        want=Want(
            ops=["secret creds", "patch +createPending", "create", CREATED],
            synced=("True", "Reconciled"),
        ),
    ),
}


@pytest.mark.parametrize("case", CREATE.values(), ids=CREATE.keys())
async def test_create(worlds: Worlds, case: Case) -> None:
    await check(worlds, reconciler.reconcile, case)


async def test_the_create_request_carries_the_marker_name_and_secret_values(
    worlds: Worlds,
) -> None:
    w = await check(worlds, reconciler.reconcile, CREATE["SecretPresent"])
    (request,) = w.provider.requests
    # The name the marker stored is the one POSTed: a later lookup by it finds this pod.
    assert request.name == REMOTE_NAME == w.kube.patches[0]["createPending"]["remoteName"]
    env = request.model_dump(mode="json")["environmentVars"]
    assert env == [{"key": "TOKEN", "value": "s3cret"}]
    assert w.poller.pokes >= 1  # a new pod changes fast: the poller should look soon


async def test_an_unconfirmed_create_is_adopted_by_the_next_attempt(worlds: Worlds) -> None:
    """Two attempts on one API server: the lost answer, then the lookup that adopts the pod
    and deletes the duplicate a retried POST left; no second create."""
    dup = pod("p2", "INITIALIZE", createdAt=2_000)
    fns = Fns(
        create=raises(K.OUTCOME_UNKNOWN),
        look_up=found(pod("p1", createdAt=1_000), dup),
        delete=returns(None),
    )
    w = worlds.new(NEW, fns)
    assert isinstance(await run(w, reconciler.reconcile, NEW), kopf.TemporaryError)
    assert await run(w, reconciler.reconcile, w.stored()) is None
    assert w.log == [
        "patch +createPending",
        "create",
        "patch",  # Synced=False CreateUnconfirmed; the marker stays
        "look_up",
        "delete p2",
        CREATED,
    ]
    assert w.kube.status["podId"] == "p1" and "createPending" not in w.kube.status
    assert {"Normal/Adopted", "Warning/DuplicateDeleted"} <= set(w.event_reasons())


# ---------------------------------------------------------------- the marker of an earlier attempt

MARKED_CASES: dict[str, Case] = {
    "FoundOne": Case(
        reason="The pod an unconfirmed create made is adopted: its ID replaces the marker.",
        body=MARKED,
        fns=Fns(look_up=found(pod("p1"))),
        want=Want(
            ops=["look_up", CREATED],
            synced=("True", "Reconciled"),
            status={"podId": "p1", "createPending": ABSENT, "phase": "Running"},
            events=("Normal/Adopted",),
        ),
    ),
    "FoundSeveral": Case(
        reason="Several pods carry our name (retried POSTs): the oldest is adopted, the others "
        "deleted.",
        body=MARKED,
        fns=Fns(
            look_up=found(pod("p2", createdAt=2_000), pod("p1", createdAt=1_000)),
            delete=returns(None),
        ),
        want=Want(
            ops=["look_up", "delete p2", CREATED],
            synced=("True", "Reconciled"),
            status={"podId": "p1"},
            events=("Normal/Adopted", "Warning/DuplicateDeleted"),
        ),
    ),
    "DuplicateDeleteFails": Case(
        reason="Failing to delete a duplicate must not lose the adopted pod's ID.",
        body=MARKED,
        fns=Fns(
            look_up=found(pod("p1", createdAt=1_000), pod("p2", createdAt=2_000)),
            delete=raises(K.UNAVAILABLE),
        ),
        want=Want(
            ops=["look_up", "delete p2", CREATED],
            raises=TEMPORARY,
            synced=("False", "ProviderUnavailable"),
            status={"podId": "p1", "createPending": ABSENT},
        ),
    ),
    "FoundNone": Case(
        reason="No pod carries our name: the POST never happened, so create (marker first).",
        body=MARKED,
        fns=Fns(look_up=found(after=SETTLE), create=returns(pod("p1", "INITIALIZE"))),
        want=Want(
            ops=["look_up", "patch +createPending", "create", CREATED],
            synced=("True", "Reconciled"),
        ),
    ),
    "FoundNoneTooEarly": Case(
        reason="No pod carries our name YET: a POST sent just before the marker's owner died "
        "may still land, so no create before the settle time; Synced is Unknown meanwhile.",
        body=MARKED,
        fns=Fns(look_up=found(after=1.0)),
        want=Want(
            ops=["look_up", "patch"],
            raises=TEMPORARY,
            synced=("Unknown", "CheckingCreate"),
            status={"createPending": MARKER},
        ),
    ),
    "FoundOnlyTerminated": Case(
        reason="A terminated pod with our name is no candidate for adoption.",
        body=MARKED,
        fns=Fns(
            look_up=found(pod("p0", "TERMINATED"), after=SETTLE),
            create=returns(pod("p1", "INITIALIZE")),
        ),
        want=Want(ops=["look_up", "patch +createPending", "create", CREATED]),
    ),
    "LookUpFails": Case(
        reason="Without an answer to the lookup, nothing is created and the marker stays.",
        body=MARKED,
        fns=Fns(look_up=raises(K.UNAVAILABLE)),
        want=Want(
            ops=["look_up", "patch"],
            raises=TEMPORARY,
            synced=("False", "ProviderUnavailable"),
            status={"createPending": MARKER},
        ),
    ),
}


@pytest.mark.parametrize("case", MARKED_CASES.values(), ids=MARKED_CASES.keys())
async def test_marker_of_an_earlier_attempt(worlds: Worlds, case: Case) -> None:
    await check(worlds, reconciler.reconcile, case)


# ---------------------------------------------------------------- an existing pod

PAUSED_SPEC = {"paused": True}
RECREATE = {"updatePolicy": "Recreate"}

EXISTING: dict[str, Case] = {
    "InSync": Case(
        reason="A RUNNING pod that matches the spec is Synced, and its fields are shown.",
        body=owned(phase="Initializing"),
        fns=Fns(observe=returns(pod("p1", region="us-east-1"))),
        want=Want(
            ops=["observe p1", "patch"],
            synced=("True", "Reconciled"),
            status={"phase": "Running", "region": "us-east-1", "observedGeneration": 1},
        ),
    ),
    "Pause": Case(
        reason="A pause is sent to a RUNNING pod and recorded as applied.",
        body=owned(spec=PAUSED_SPEC),
        fns=Fns(observe=then(pod("p1"), pod("p1", "PAUSING")), pause=returns(None)),
        want=Want(
            ops=["observe p1", "pause p1", "observe p1", "patch pausedApplied=True"],
            synced=("True", "Reconciled"),
            status={"pausedApplied": True, "phase": "Pausing"},
        ),
    ),
    "PauseAnswerLost": Case(
        reason="A pause whose answer is lost may have worked: pausedApplied is recorded anyway.",
        body=owned(spec=PAUSED_SPEC),
        fns=Fns(observe=returns(pod("p1")), pause=raises(K.UNAVAILABLE)),
        want=Want(
            ops=["observe p1", "pause p1", "patch pausedApplied=True"],
            raises=TEMPORARY,
            synced=("False", "ProviderUnavailable"),
            status={"pausedApplied": True},
        ),
    ),
    "ResumeAnswerLost": Case(
        reason="As for a pause: a resume whose answer is lost is recorded as applied.",
        body=owned(phase="Paused", pausedApplied=True),
        fns=Fns(observe=returns(pod("p1", "PAUSED")), resume=raises(K.UNAVAILABLE)),
        want=Want(
            ops=["observe p1", "resume p1", "patch pausedApplied=False"],
            raises=TEMPORARY,
            synced=("False", "ProviderUnavailable"),
            status={"pausedApplied": False},
        ),
    ),
    "PauseGone": Case(
        reason="The API says the pod does not exist when paused: it is Lost, not retried.",
        body=owned(spec=PAUSED_SPEC),
        fns=Fns(observe=returns(pod("p1")), pause=raises(K.GONE)),
        want=Want(
            ops=["observe p1", "pause p1", "patch pausedApplied=True"],
            synced=("False", "RemotePodLost"),
            status={"phase": "Lost", "podId": "p1"},
        ),
    ),
    "Lost": Case(
        reason="A recorded pod the API does not know is Lost; no new pod is made behind the "
        "user's back.",
        body=owned(),
        fns=Fns(observe=returns(None)),
        want=Want(
            ops=["observe p1", "patch"],
            synced=("False", "RemotePodLost"),
            status={"phase": "Lost", "podId": "p1"},
        ),
    ),
    "UnknownStatusWord": Case(
        reason="A status word the operator does not know is never Synced=True; it is shown.",
        body=owned(),
        fns=Fns(observe=returns(pod("p1", "HIBERNATING"))),
        want=Want(
            ops=["observe p1", "patch"],
            raises=TEMPORARY,
            synced=("Unknown", "UnknownRemoteStatus"),
            message_has="'HIBERNATING'",
            status={"phase": "Running", "remoteStatus": "HIBERNATING"},
        ),
    ),
    "FailedWithReason": Case(
        reason="A FAILED pod shows the provider's failureReason; retrying cannot fix it.",
        body=owned(),
        fns=Fns(observe=returns(pod("p1", "FAILED", failureReason="CUDA error: out of memory"))),
        want=Want(
            ops=["observe p1", "patch"],
            synced=("False", "RemotePodFailed"),
            message_has="CUDA error: out of memory",
            status={"phase": "Failed"},
        ),
    ),
    "SpecChangedReject": Case(
        reason="With updatePolicy Reject a spec change is refused: nothing is deleted.",
        body=owned(specHash="old"),
        fns=Fns(observe=returns(pod("p1"))),
        want=Want(ops=["observe p1", "patch"], synced=("False", "UpdateRejected")),
    ),
    "RecreateStarts": Case(
        reason="With updatePolicy Recreate the old pod is deleted, and the replacement is "
        "recorded so it completes.",
        body=owned(specHash="old", spec=RECREATE),
        fns=Fns(
            observe=then(pod("p1"), pod("p1", "TERMINATING")),
            delete=returns(None),
        ),
        want=Want(
            ops=["observe p1", "patch replacing=True", "delete p1", "observe p1", "patch"],
            raises=TEMPORARY,
            synced=("False", "Recreating"),
            status={"replacing": True, "phase": "Terminating", "podId": "p1"},
        ),
    ),
    "RecreateDeleteAnswerLost": Case(
        reason="A Recreate delete whose answer is lost may have worked: replacing is recorded.",
        body=owned(specHash="old", spec=RECREATE),
        fns=Fns(observe=returns(pod("p1")), delete=raises(K.UNAVAILABLE)),
        want=Want(
            ops=["observe p1", "patch replacing=True", "delete p1", "patch"],
            raises=TEMPORARY,
            synced=("False", "ProviderUnavailable"),
            status={"replacing": True},
        ),
    ),
    "RecreateSurvivesARevert": Case(
        reason="A replacement once started completes even if the spec is reverted meanwhile.",
        body=owned(replacing=True, phase="Terminating"),
        fns=Fns(observe=returns(pod("p1", "TERMINATING"))),
        want=Want(ops=["observe p1", "patch"], raises=TEMPORARY, synced=("False", "Recreating")),
    ),
    "RecreateCompletes": Case(
        reason="The old pod gone, the new one is created: the write that drops the old ID is "
        "the one that stores the marker, and the new ID replaces the marker.",
        body=owned(specHash="old", replacing=True, phase="Terminating", spec=RECREATE),
        fns=Fns(observe=returns(pod("p1", "TERMINATED")), create=returns(pod("p2", "INITIALIZE"))),
        want=Want(
            ops=[
                "observe p1",
                "patch +createPending -podId",
                "create",
                "patch -createPending podId=p2 -replacing",
            ],
            synced=("True", "Reconciled"),
            status={"podId": "p2", "replacing": ABSENT, "specHash": hash_of(SPEC)},
            events=("Normal/Recreating",),
        ),
    ),
}


@pytest.mark.parametrize("case", EXISTING.values(), ids=EXISTING.keys())
async def test_existing_pod(worlds: Worlds, case: Case) -> None:
    await check(worlds, reconciler.reconcile, case)


async def test_a_failed_pod_shows_its_reason_in_the_status_message(worlds: Worlds) -> None:
    w = await check(worlds, reconciler.reconcile, EXISTING["FailedWithReason"])
    assert "CUDA error: out of memory" in w.kube.status["message"]


async def test_recreate_stores_replacing_before_the_delete(worlds: Worlds) -> None:
    """`replacing` is a decision input (a started replacement completes even if the spec is
    reverted, RecreateSurvivesARevert). If it reaches the API server only after the DELETE, a
    crash between the two leaves an old pod terminating with no record of the replacement,
    and a reverted spec then leaves the GpuPod Terminated with no pod."""
    w = await check(worlds, reconciler.reconcile, EXISTING["RecreateStarts"])
    stored = next((i for i, op in enumerate(w.log) if op == "patch replacing=True"), None)
    assert stored is not None and stored < w.log.index("delete p1"), w.log


# ---------------------------------------------------------------- failures -> Synced reasons

FAILURES: dict[str, Case] = {
    "CreateRejected": Case(
        reason="A refused create is terminal: Failed, no retry, and no pod to look up later.",
        body=NEW,
        fns=Fns(create=raises(K.REJECTED)),
        want=Want(
            ops=["patch +createPending", "create", "patch -createPending"],
            synced=("False", "CreateRejected"),
            status={"phase": "Failed", "createPending": ABSENT},
            events=("Warning/CreateRejected",),
        ),
    ),
    "CreateUnauthorized": Case(
        reason="A refused key is retried (it may be rotated); the marker stays.",
        body=NEW,
        fns=Fns(create=raises(K.UNAUTHORIZED)),
        want=Want(
            ops=["patch +createPending", "create", "patch"],
            raises=TEMPORARY,
            synced=("False", "Unauthorized"),
            status={"createPending": PRESENT},
        ),
    ),
    "CreateUnavailable": Case(
        reason="An unavailable API is retried; the marker stays.",
        body=NEW,
        fns=Fns(create=raises(K.UNAVAILABLE)),
        want=Want(
            ops=["patch +createPending", "create", "patch"],
            raises=TEMPORARY,
            synced=("False", "ProviderUnavailable"),
            status={"createPending": PRESENT},
        ),
    ),
    "CreateOutcomeUnknown": Case(
        reason="An unconfirmed create is retried by looking it up; the marker stays.",
        body=NEW,
        fns=Fns(create=raises(K.OUTCOME_UNKNOWN)),
        want=Want(
            ops=["patch +createPending", "create", "patch"],
            raises=TEMPORARY,
            synced=("False", "CreateUnconfirmed"),
            message_has="outcome is unknown",
            status={"createPending": PRESENT},
        ),
    ),
    "CreateUnexpected": Case(
        reason="An answer the client does not recognise is retried as a generic error.",
        body=NEW,
        fns=Fns(create=raises(K.UNEXPECTED)),
        want=Want(
            ops=["patch +createPending", "create", "patch"],
            raises=TEMPORARY,
            synced=("False", "ProviderError"),
        ),
    ),
    "ObserveUnauthorized": Case(
        reason="Any call refused for the key reads Unauthorized.",
        body=owned(),
        fns=Fns(observe=raises(K.UNAUTHORIZED)),
        want=Want(ops=["observe p1", "patch"], raises=TEMPORARY, synced=("False", "Unauthorized")),
    ),
    "PauseRejected": Case(
        reason="A refused pause is retried slowly, not terminal (only a create is).",
        body=owned(spec=PAUSED_SPEC),
        fns=Fns(observe=returns(pod("p1")), pause=raises(K.REJECTED)),
        want=Want(
            ops=["observe p1", "pause p1", "patch pausedApplied=True"],
            raises=TEMPORARY,
            synced=("False", "RequestRejected"),
        ),
    ),
    "PauseWrongState": Case(
        reason="A pause refused for the pod's state means our view was stale: retry soon and "
        "report nothing.",
        body=owned(spec=PAUSED_SPEC),
        fns=Fns(observe=returns(pod("p1")), pause=raises(K.WRONG_STATE)),
        want=Want(
            ops=["observe p1", "pause p1", "patch pausedApplied=True"],
            raises=TEMPORARY,
            synced=(None, None),
        ),
    ),
}


@pytest.mark.parametrize("case", FAILURES.values(), ids=FAILURES.keys())
async def test_provider_failures(worlds: Worlds, case: Case) -> None:
    await check(worlds, reconciler.reconcile, case)


async def test_a_reconcile_that_loses_to_a_spec_change_does_not_claim_the_new_generation(
    worlds: Worlds,
) -> None:
    """The attempt reconciled generation 1; the user changed the spec (generation 2) before
    its status write, which therefore conflicts and is recomputed on the fresh object. Synced
    must still speak of generation 1, or observedGeneration says generation 2 is done when
    nothing has acted on it yet (e.g. a pause not sent)."""
    body = owned()
    newer = owned(rv="2", spec=PAUSED_SPEC)
    newer["metadata"]["generation"] = 2
    w = worlds.new(newer, Fns(observe=returns(pod("p1"))))
    assert await run(w, reconciler.reconcile, body) is None
    assert w.log == ["observe p1", "patch (conflict)", "get", "patch"]
    synced = condition(w.kube.obj, "Synced")
    assert synced["status"] == "True"
    assert synced.get("observedGeneration") == 1, synced
    assert w.kube.status.get("observedGeneration") != 2, w.kube.status


async def test_a_reconcile_during_an_outage_leaves_ready_unknown(worlds: Worlds) -> None:
    """The poller reported the outage (Ready=Unknown ProviderUnreachable, written once, when
    OUTAGE_AFTER polls have failed). A reconcile whose own call fails for the same outage
    learns nothing about the pod: it adds Synced=False and must not turn Ready back to True."""
    unreachable = {
        "type": "Ready",
        "status": "Unknown",
        "reason": "ProviderUnreachable",
        "message": "the Yotta API cannot be reached: connection refused",
        "lastTransitionTime": T0_ISO,
    }
    body = owned(conditions=[unreachable])
    w = worlds.new(body, Fns(observe=raises(K.UNAVAILABLE)))
    assert isinstance(await run(w, reconciler.reconcile, body), kopf.TemporaryError)
    assert w.log == ["observe p1", "patch"]
    assert condition(w.kube.obj, "Synced")["reason"] == "ProviderUnavailable"
    ready = condition(w.kube.obj, "Ready")
    assert (ready["status"], ready["reason"]) == ("Unknown", "ProviderUnreachable"), ready


async def test_a_failed_pod_is_reported_by_one_warning_event(worlds: Worlds) -> None:
    """The reconciler's Stop and the status writer's phase transition each post an Event;
    for the same news (RemotePodFailed, same message) one is enough."""
    w = await check(worlds, reconciler.reconcile, EXISTING["FailedWithReason"])
    assert w.event_reasons().count("Warning/RemotePodFailed") == 1, w.events


# ---------------------------------------------------------------- finalize


def settled(after: float) -> Fns:
    """A lookup by name that finds nothing, from a list taken `after` s after the marker."""
    return Fns(look_up=found(after=after))


DELETING = "patch"  # phase Terminating and why: the finalizer stays

FINALIZE: dict[str, Case] = {
    "PodRunning": Case(
        reason="The delete is sent, and the finalizer stays while the pod terminates.",
        body=owned(),
        fns=Fns(observe=then(pod("p1"), pod("p1", "TERMINATING")), delete=returns(None)),
        want=Want(
            ops=["observe p1", "delete p1", "observe p1", DELETING],
            raises=TEMPORARY,
            status={"phase": "Terminating"},
        ),
    ),
    "PodTerminating": Case(
        reason="A pod still terminating keeps the finalizer and is not deleted again.",
        body=owned(phase="Terminating"),
        fns=Fns(observe=returns(pod("p1", "TERMINATING"))),
        want=Want(ops=["observe p1", DELETING], raises=TEMPORARY),
    ),
    "PodStaysRunning": Case(
        reason="A pod that does not go away keeps the finalizer however often it is deleted.",
        body=owned(),
        fns=Fns(observe=returns(pod("p1")), delete=returns(None)),
        want=Want(
            ops=["observe p1", "delete p1"] * (reconciler.MAX_STEPS // 2) + [DELETING],
            raises=TEMPORARY,
        ),
    ),
    "PodTerminated": Case(
        reason="A TERMINATED pod releases the finalizer; the GpuPod goes, so no status write.",
        body=owned(phase="Terminating"),
        fns=Fns(observe=returns(pod("p1", "TERMINATED"))),
        want=Want(ops=["observe p1"], events=("Normal/Deleted",)),
    ),
    "PodNotFound": Case(
        reason="A pod the API does not know releases the finalizer.",
        body=owned(phase="Terminating"),
        fns=Fns(observe=returns(None)),
        want=Want(ops=["observe p1"], events=("Normal/Deleted",)),
    ),
    "ObserveGone": Case(
        reason="A GONE error from the provider is as good as 'not found'.",
        body=owned(phase="Terminating"),
        fns=Fns(observe=raises(K.GONE)),
        want=Want(ops=["observe p1"]),
    ),
    "ObserveFails": Case(
        reason="Without an answer the pod may still run: the finalizer stays.",
        body=owned(),
        fns=Fns(observe=raises(K.UNAVAILABLE)),
        want=Want(ops=["observe p1", "patch"], raises=TEMPORARY, synced=("False", "DeleteFailed")),
    ),
    "DeleteFails": Case(
        reason="A failed delete keeps the finalizer and says how to give up (Orphan).",
        body=owned(),
        fns=Fns(observe=returns(pod("p1")), delete=raises(K.UNAVAILABLE)),
        want=Want(
            ops=["observe p1", "delete p1", "patch"],
            raises=TEMPORARY,
            synced=("False", "DeleteFailed"),
            message_has="deletionPolicy: Orphan",
            events=("Warning/DeleteFailed",),
        ),
    ),
    "Orphan": Case(
        reason="deletionPolicy Orphan releases at once and deletes nothing.",
        body=owned(spec={"deletionPolicy": "Orphan"}),
        want=Want(ops=[], events=("Warning/Orphaned",)),
    ),
    "OrphanCreateInDoubt": Case(
        reason="Orphan also releases a GpuPod whose create is in doubt, without a lookup.",
        body=gpupod(MARKED["status"], deletionPolicy="Orphan"),
        want=Want(ops=[], events=("Warning/Orphaned",)),
    ),
    "NeverCreated": Case(
        reason="No pod ID and no marker: no pod can exist.",
        body=NEW,
        want=Want(ops=[], events=("Normal/NeverCreated",)),
    ),
    "CreateInDoubtTooEarly": Case(
        reason="A lookup taken before the settle time after the marker cannot rule a pod out.",
        body=MARKED,
        fns=settled(SETTLE - 1),
        want=Want(
            ops=["look_up", DELETING],
            raises=TEMPORARY,
            status={"phase": "Terminating", "createPending": MARKER},
        ),
    ),
    "CreateInDoubtSettled": Case(
        reason="A lookup taken the settle time after the marker that finds nothing releases.",
        body=MARKED,
        fns=settled(SETTLE),
        want=Want(ops=["look_up"], events=("Normal/NeverCreated",)),
    ),
    "CreateInDoubtFound": Case(
        reason="The pod an unconfirmed create made is adopted (ID recorded with the marker "
        "cleared) and deleted before the finalizer goes.",
        body=MARKED,
        fns=Fns(
            look_up=found(pod("p1")),
            delete=returns(None),
            observe=returns(pod("p1", "TERMINATING")),
        ),
        want=Want(
            ops=["look_up", "delete p1", "observe p1", CREATED],
            raises=TEMPORARY,
            status={"podId": "p1", "createPending": ABSENT, "phase": "Terminating"},
        ),
    ),
    "CreateInDoubtDuplicates": Case(
        reason="Every pod carrying the name is deleted, the duplicates first.",
        body=MARKED,
        fns=Fns(
            look_up=found(pod("p1", createdAt=1_000), pod("p2", createdAt=2_000)),
            delete=returns(None),
            observe=returns(pod("p1", "TERMINATED")),
        ),
        want=Want(ops=["look_up", "delete p2", "delete p1", "observe p1"]),
    ),
}


@pytest.fixture
def no_delete_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every wait goes to kopf's retries at once (the table above is about those)."""
    monkeypatch.setattr(reconciler, "DELETE_WAIT", 0.0)


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The in-handler waits of a deletion, taken without waiting."""
    taken: list[float] = []

    async def pause(seconds: float) -> None:
        taken.append(seconds)

    monkeypatch.setattr(reconciler, "pause", pause)
    return taken


@pytest.mark.parametrize("case", FINALIZE.values(), ids=FINALIZE.keys())
async def test_finalize(worlds: Worlds, case: Case, no_delete_wait: None) -> None:
    await check(worlds, reconciler.finalize, case)


async def test_a_create_posts_no_event_the_status_tells_it(worlds: Worlds) -> None:
    """The pod ID and phase are in the status from the write after the POST; the move into
    Running is the create's one Event (posted by the status writer)."""
    w = await check(worlds, reconciler.reconcile, CREATE["NewGpuPod"])
    assert w.event_reasons() == [], w.events


async def test_a_deletion_waits_in_the_handler_and_writes_only_the_release(
    worlds: Worlds, waits: list[float]
) -> None:
    """DELETE, the pod terminating, then gone: one handler call, no status write (no kopf
    retry either: it would write its progress), and ONE Event, at the end."""
    fns = Fns(
        observe=then(pod("p1"), pod("p1", "TERMINATING"), pod("p1", "TERMINATING"), None),
        delete=returns(None),
    )
    w = worlds.new(owned(), fns)
    assert await run(w, reconciler.finalize, w.stored()) is None
    assert w.log == ["observe p1", "delete p1", "observe p1", "observe p1", "observe p1"]
    assert waits == [1.0, 1.0]
    assert w.event_reasons() == ["Normal/Deleted"], w.events


async def test_a_slow_termination_is_handed_to_kopf_with_the_phase_written(
    worlds: Worlds, waits: list[float]
) -> None:
    """Past DELETE_WAIT the status says Terminating, and kopf retries; the pod is deleted once."""
    fns = Fns(observe=then(pod("p1"), pod("p1", "TERMINATING")), delete=returns(None))
    w = worlds.new(owned(), fns)
    err = await run(w, reconciler.finalize, w.stored())
    assert isinstance(err, kopf.TemporaryError)
    assert sum(waits) == reconciler.DELETE_WAIT and w.log.count("delete p1") == 1
    assert w.log[-1] == DELETING and w.kube.status["phase"] == "Terminating"


async def test_finalize_releases_only_after_the_pod_is_confirmed_gone(
    worlds: Worlds, no_delete_wait: None
) -> None:
    """Three handler calls, as kopf retries them: delete, still terminating, gone."""
    fns = Fns(
        observe=then(pod("p1"), pod("p1", "TERMINATING"), pod("p1", "TERMINATING"), None),
        delete=returns(None),
    )
    w = worlds.new(owned(), fns)
    outcomes = []
    for _ in range(3):
        outcomes.append(type(await run(w, reconciler.finalize, w.stored())))
    assert outcomes == [kopf.TemporaryError, kopf.TemporaryError, type(None)]
    assert w.log.count("delete p1") == 1  # a terminating pod is not deleted again
    assert w.log[-1] == "observe p1"  # released on that answer, nothing after it


async def test_the_write_that_records_a_new_pod_starts_its_cost_count(worlds: Worlds) -> None:
    """The count of running time starts in the pod ID's write, so that the poller's first
    look at the pod is no write of its own (make bench: a third status write per GpuPod)."""
    case = replace(CREATE["NewGpuPod"], fns=Fns(create=returns(pod("p1", "RUNNING"))))
    w = worlds.new(case.body, case.fns)
    assert await run(w, reconciler.reconcile, case.body) is None
    counted = w.kube.status["cost"]
    assert counted["running"] is True and counted["countedUntil"], counted
    assert counted["runningSeconds"] == 0
