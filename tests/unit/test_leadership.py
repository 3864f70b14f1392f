"""Leader election rules (domain.leadership) and the elector's fence, without a cluster."""

from __future__ import annotations

import datetime as dt

import pytest

from gpupod_operator.controller.leader import LeaderElector
from gpupod_operator.domain import leadership as ld

WALL = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
T = ld.Timings(lease=60, renew_deadline=40, retry=2, create_margin=5)


def seen(holder: str | None, at: float, lease: int = 60, transitions: int = 3) -> ld.Observation:
    return ld.Observation(ld.Record(holder, lease, transitions, WALL, WALL), at)


def test_default_timings_are_usable_with_the_default_create_timeout() -> None:
    assert ld.Timings().problems(15.0) == []
    assert ld.create_window(ld.Timings(), 15.0) == 20.0


@pytest.mark.parametrize(
    ("timings", "create_timeout", "fragment"),
    [
        (ld.Timings(lease=40, renew_deadline=40, retry=2), 15, "longer than the renew"),
        (ld.Timings(lease=60, renew_deadline=2, retry=2, create_margin=0), 0.1, "1.2 x"),
        (ld.Timings(lease=60, renew_deadline=40, retry=10), 30, "create timeout"),
    ],
)
def test_unusable_timings_are_named(
    timings: ld.Timings, create_timeout: float, fragment: str
) -> None:
    assert any(fragment in p for p in timings.problems(create_timeout))


def test_no_lease_yet_is_created_with_us_as_holder() -> None:
    record = ld.claim(None, "me", T, 0.0, WALL)
    assert record == ld.Record("me", 60, 0, WALL, WALL)


def test_a_lease_held_by_another_is_left_alone_until_it_expires_locally() -> None:
    other = seen("other", at=100.0)
    assert ld.claim(other, "me", T, 159.9, WALL) is None
    taken = ld.claim(other, "me", T, 160.0, WALL)
    assert taken is not None and taken.holder == "me" and taken.transitions == 4


def test_expiry_counts_from_when_this_process_saw_the_record_change() -> None:
    first = ld.observe(None, seen("other", 0).record, now=10.0)
    same = ld.observe(first, seen("other", 0).record, now=50.0)
    assert same.changed_at == 10.0  # unchanged record: the clock keeps running
    assert ld.is_expired(same, 70.0)
    renewed = ld.Record("other", 60, 3, WALL, WALL + dt.timedelta(seconds=2))
    fresh = ld.observe(same, renewed, now=69.0)
    assert fresh.changed_at == 69.0 and not ld.is_expired(fresh, 70.0)


def test_a_released_lease_is_taken_at_once() -> None:
    free = ld.Observation(ld.released(seen("other", 0).record, WALL), 100.0)
    assert free.record.holder is None and ld.is_free(free.record)
    taken = ld.claim(free, "me", T, 100.0, WALL)
    assert taken is not None and taken.holder == "me" and taken.transitions == 4


def test_our_own_lease_is_renewed_without_a_transition() -> None:
    later = WALL + dt.timedelta(seconds=2)
    renewed = ld.claim(seen("me", at=0.0), "me", T, 1.0, later)
    assert renewed == ld.Record("me", 60, 3, WALL, later)


def test_the_holder_must_exit_at_the_renew_deadline() -> None:
    assert not ld.must_exit(139.9, 100.0, T)
    assert ld.must_exit(140.0, 100.0, T)


def test_a_create_starts_only_if_it_ends_before_the_renew_deadline() -> None:
    # window = 40 - 15 - 5 = 20 s after the last renew
    assert ld.may_start_create(119.9, 100.0, T, create_timeout=15)
    assert not ld.may_start_create(120.0, 100.0, T, create_timeout=15)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_fence_exits_once_the_deadline_passed_and_defers_late_creates() -> None:
    clock, exits = Clock(), []
    elector = LeaderElector(
        "ns", "lease", timings=T, create_timeout=15, clock=clock, exit_lost=exits.append
    )
    elector.check()
    assert exits == ["not the holder"]  # a standby never calls the Yotta API
    exits.clear()
    elector.last_renew = clock.now
    assert elector.may_create() and exits == []
    clock.now += 25  # past the create window, before the deadline
    assert not elector.may_create() and exits == []
    clock.now += 15  # a SIGSTOPped leader wakes up past its renew deadline
    elector.check()
    assert exits and "not renewed within 40s" in exits[0]


class Lost(Exception):
    pass


async def test_the_fenced_transport_checks_again_right_before_the_bytes_leave() -> None:
    import asyncio

    import httpx

    from gpupod_operator.controller.leader import FencedTransport

    received: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.read(1000))
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    calls = []

    def check() -> None:
        # passes when the request is handed over, fails after the connect (a process frozen
        # there woke up past its Lease)
        calls.append(len(calls))
        if len(calls) > 1:
            raise Lost()

    async with httpx.AsyncClient(transport=FencedTransport(check)) as client:
        with pytest.raises(Lost):
            await client.post(f"http://127.0.0.1:{port}/v2/pods", json={"name": "x"})
    server.close()
    await server.wait_closed()
    assert len(calls) == 2
    assert received in ([], [b""])  # connected, but not one byte of the request was sent


def test_the_cli_refuses_unusable_timings_and_a_missing_namespace(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from gpupod_operator import cli
    from gpupod_operator.controller import leader

    monkeypatch.setenv("YOTTA_API_KEY", "sk-test")
    monkeypatch.setattr(leader, "SERVICE_ACCOUNT_NAMESPACE", "/nonexistent/namespace")
    run = ["run", "-n", "ns", "--leader-election"]
    assert cli.main(run) == 2
    assert "--leader-election-namespace" in capsys.readouterr().err
    bad = [*run, "--leader-election-namespace", "ns", "--leader-election-lease-seconds", "30"]
    assert cli.main(bad) == 2
    assert "longer than the renew deadline" in capsys.readouterr().err
