"""The provider boundary on a fake Yotta API: errors leave it as one ProviderError kind each,
and a List answer is only trusted for pods and names nobody acted on after it was sent."""

from __future__ import annotations

import pytest

from gpupod_operator.domain.failures import FailureKind, ProviderError
from gpupod_operator.provider import YottaProvider
from gpupod_operator.provider.yotta import translate
from gpupod_operator.yotta import (
    ApiError,
    CreatePodRequest,
    InvalidRequest,
    InvalidState,
    NotFound,
    OutcomeUnknown,
    Transient,
    Unauthorized,
    YottaError,
)
from tests.unit.fakes import Clock, FakeYotta, remote


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (NotFound("x"), FailureKind.GONE),
        (InvalidRequest("x"), FailureKind.REJECTED),
        (InvalidState("x"), FailureKind.WRONG_STATE),
        (Unauthorized("x"), FailureKind.UNAUTHORIZED),
        (OutcomeUnknown("x"), FailureKind.OUTCOME_UNKNOWN),
        (Transient("x", retry_after=7), FailureKind.UNAVAILABLE),
        (ApiError("x"), FailureKind.UNEXPECTED),
    ],
)
def test_every_client_error_has_one_kind(error: YottaError, kind: FailureKind) -> None:
    translated = translate(error)
    assert translated.kind == kind and str(translated) == str(error)
    assert translated.retry_after == (7 if kind == FailureKind.UNAVAILABLE else None)


@pytest.fixture
def world() -> tuple[YottaProvider, FakeYotta, Clock]:
    yotta, clock = FakeYotta(), Clock()
    return YottaProvider(yotta, snapshot_ttl=30, clock=clock), yotta, clock


async def test_observe_uses_a_recent_list_unless_we_acted_since(world: tuple) -> None:
    provider, yotta, clock = world
    yotta.pods["1"] = remote("1", "n")
    await provider.list_all()
    assert (await provider.observe("1")) is not None and yotta.calls == ["list"]
    clock.advance(1)
    await provider.pause("1")
    await provider.observe("1")  # the list predates the pause: a GET
    assert yotta.calls == ["list", "pause 1", "get 1"]
    clock.advance(1)
    await provider.list_all()
    await provider.observe("1")
    assert yotta.calls[-1] == "list"
    clock.advance(31)
    await provider.observe("1")  # older than one TTL
    assert yotta.calls[-1] == "get 1"


async def test_absence_from_a_list_is_not_gone_only_a_get_says_so(world: tuple) -> None:
    provider, yotta, _ = world
    await provider.list_all()
    assert await provider.observe("7") is None
    assert yotta.calls == ["list", "get 7"]


async def test_a_lookup_never_trusts_a_list_sent_before_the_post_ended(world: tuple) -> None:
    """Survival suite regression: a list answered between the marker and the POST's end."""
    provider, yotta, clock = world
    since = clock()
    clock.advance(1)
    await provider.list_all()  # sent after the marker ...
    clock.advance(1)
    await provider.create(CreatePodRequest.model_validate({"name": "n", "image": "i"}))
    found = await provider.look_up("n", since)  # ... but before the POST: not trusted
    assert [p.name for p in found.pods] == ["n"] and yotta.calls[-1] == "list"
    clock.advance(1)
    await provider.list_all()
    calls = len(yotta.calls)
    assert [p.name for p in (await provider.look_up("n", since)).pods] == ["n"]
    assert len(yotta.calls) == calls  # a list sent after the POST serves the lookup


async def test_delete_of_a_pod_already_gone_is_success(world: tuple) -> None:
    provider, yotta, _ = world
    await provider.delete("404")
    assert yotta.calls == ["delete 404"]


async def test_pause_of_a_missing_pod_is_gone(world: tuple) -> None:
    provider, _, _ = world
    with pytest.raises(ProviderError) as caught:
        await provider.pause("404")
    assert caught.value.kind == FailureKind.GONE
