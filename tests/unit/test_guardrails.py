"""The lifetime and the price cap through the one reconcile path (decisions, then the
reconciler on fakes), and the poller's part: counting running time, the warning before
expiry, marking the guard that kicks the reconciler, and the cost metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import kopf
import pytest
from prometheus_client import CollectorRegistry

from gpupod_operator.controller import reconciler
from gpupod_operator.controller.events import EventRecorder
from gpupod_operator.controller.metrics import Metrics
from gpupod_operator.controller.poller import Poller
from gpupod_operator.controller.registry import Registry
from gpupod_operator.controller.status_writer import StatusWriter
from gpupod_operator.domain import cost
from gpupod_operator.domain import decisions as d
from gpupod_operator.domain.spec import LifetimeAction
from gpupod_operator.domain.status import Observed
from gpupod_operator.provider import YottaProvider
from gpupod_operator.yotta import Pod

from ..e2e.gpupods import condition
from . import fakes
from .reconciler_fakes import REMOTE_NAME, SPEC, Fns, Worlds, gpupod, hash_of, pod, returns, then

PAUSE = cost.Limits(max_run=20)
DELETE = cost.Limits(max_run=20, action=LifetimeAction.DELETE)
CAP = cost.Limits(max_price=Decimal("0.30"))


def remote(status: str, price: str | None = "0.45") -> Observed:
    return Observed(Pod.model_validate({"id": "p1", "status": status, "singleCardPrice": price}))


def decide(
    observed: Observed, limits: cost.Limits, running_seconds: int = 0, **kw: Any
) -> d.Action:
    desired = d.Desired(spec_hash="h1", limits=limits, paused=kw.pop("paused", False))
    recorded = d.Recorded(
        remote_name="r", pod_id="p1", spec_hash="h1", running_seconds=running_seconds, **kw
    )
    return d.reconcile(desired, recorded, observed)


# ---------------------------------------------------------------- decisions


def test_spent_lifetime_pauses_then_stops_and_never_resumes() -> None:
    assert decide(remote("RUNNING"), PAUSE, 20) == d.Pause("p1")
    assert isinstance(decide(remote("PAUSING"), PAUSE, 21), d.Wait)
    stop = decide(remote("PAUSED"), PAUSE, 21)
    assert isinstance(stop, d.Stop) and (stop.reason, stop.phase) == (cost.LIFETIME, "Paused")
    # spec.paused true -> false does not extend it; raising maxRunDuration does.
    assert isinstance(decide(remote("PAUSED"), PAUSE, 21, paused=False), d.Stop)
    assert decide(remote("PAUSED"), cost.Limits(max_run=60), 21) == d.Resume("p1")
    assert decide(remote("RUNNING"), PAUSE, 19) == d.Done(remote("RUNNING").pod)  # type: ignore[arg-type]


def test_spent_lifetime_with_delete_deletes_verifies_and_keeps_terminated() -> None:
    action = decide(remote("RUNNING"), DELETE, 20)
    assert isinstance(action, d.Delete) and "maxRunDuration 20s" in action.reason
    assert isinstance(decide(remote("TERMINATING"), DELETE, 20), d.Wait)
    for gone in (remote("TERMINATED"), Observed(None)):
        stop = decide(gone, DELETE, 20)
        assert isinstance(stop, d.Stop) and (stop.reason, stop.phase) == (
            cost.LIFETIME,
            "Terminated",
        )


def test_price_above_the_cap_deletes_before_running_and_fails() -> None:
    action = decide(remote("INITIALIZE"), CAP)
    assert isinstance(action, d.Delete) and "$0.45/h" in action.reason
    assert isinstance(decide(remote("TERMINATING"), CAP), d.Wait)
    # Gone: the price recorded in the status still tells why.
    stop = decide(Observed(None), CAP, price="0.45")
    assert isinstance(stop, d.Stop) and (stop.reason, stop.phase) == (cost.PRICE, "Failed")
    # A raised cap never brings a pod deleted for its price back.
    raised = cost.Limits(max_price=Decimal("1"))
    stop = decide(remote("TERMINATED"), raised, guard=cost.PRICE)
    assert isinstance(stop, d.Stop) and stop.reason == cost.PRICE


def test_a_price_the_create_answer_lacks_is_checked_at_the_first_observation() -> None:
    assert decide(remote("INITIALIZE", price=None), CAP) == d.Done(
        remote("INITIALIZE", price=None).pod
    )  # type: ignore[arg-type]
    assert isinstance(decide(remote("INITIALIZE"), CAP), d.Delete)


# ---------------------------------------------------------------- the reconciler


@pytest.fixture
async def worlds() -> AsyncIterator[Worlds]:
    made = Worlds()
    yield made
    await made.aclose()


async def test_a_create_above_the_cap_is_deleted_from_its_answer(worlds: Worlds) -> None:
    body = gpupod(maxPricePerHour="0.30")
    w = worlds.new(
        body,
        Fns(
            create=returns(pod("p1", "INITIALIZE", singleCardPrice="0.45")),
            delete=returns(None),
            observe=returns(pod("p1", "TERMINATING", singleCardPrice="0.45")),
        ),
    )
    with pytest.raises(kopf.TemporaryError):
        await reconciler.reconcile(w.rt, body, 0)
    assert w.log[:4] == ["patch +createPending", "create", "delete p1", "observe p1"]
    # The next try sees it gone: Failed, PriceExceeded, and no create.
    w.provider.fns = Fns(observe=returns(pod("p1", "TERMINATED", singleCardPrice="0.45")))
    await reconciler.reconcile(w.rt, w.stored(), 0)
    await w.flush_events()
    assert w.log.count("create") == 1
    status = w.kube.status
    assert status["phase"] == "Failed" and status["cost"]["guard"] == cost.PRICE
    synced = condition(w.kube.obj, "Synced")
    assert (synced["status"], synced["reason"]) == ("False", cost.PRICE)
    assert "$0.45/h" in synced["message"] and "$0.30/h" in synced["message"]
    assert w.event_reasons().count("Warning/PriceExceeded") == 1


async def test_a_spent_lifetime_pauses_and_reports_once_paused(worlds: Worlds) -> None:
    recorded = {"podId": "p1", "remoteName": REMOTE_NAME, "specHash": hash_of(SPEC)}
    spent = {"runningSeconds": 20, "accrued": "0.0025", "guard": cost.LIFETIME}
    body = gpupod(
        {**recorded, "phase": "Running", "cost": spent}, lifetime={"maxRunDuration": "20s"}
    )
    w = worlds.new(
        body,
        Fns(
            observe=then(pod("p1", "RUNNING"), pod("p1", "PAUSED")),
            pause=returns(None),
        ),
    )
    await reconciler.reconcile(w.rt, body, 0)
    await w.flush_events()
    assert [op for op in w.log if not op.startswith("patch")] == [
        "observe p1",
        "pause p1",
        "observe p1",
    ]
    assert w.kube.status["phase"] == "Paused"
    assert "raise spec.lifetime.maxRunDuration" in w.kube.status["message"]
    assert condition(w.kube.obj, "Synced")["reason"] == cost.LIFETIME
    assert w.event_reasons().count("Warning/MaxRunDurationReached") == 1
    assert "Normal/Paused" not in w.event_reasons()


# ---------------------------------------------------------------- the poller


class PollWorld:
    def __init__(self, interval: float = 5) -> None:
        self.registry, self.clock = Registry(), fakes.Clock()
        self.yotta, self.kube, self.posted = fakes.FakeYotta(), fakes.FakeKube(), fakes.Posted()
        self.metrics = Metrics(CollectorRegistry())
        self.events = EventRecorder(self.posted)
        self.writer = StatusWriter(self.kube, self.registry, self.events, self.metrics)
        self.poller = Poller(
            YottaProvider(self.yotta, snapshot_ttl=30, clock=self.clock),
            self.writer,
            self.events,
            self.registry,
            self.metrics,
            interval=interval,
            fast_interval=1,
            clock=self.clock,
        )

    def add(self, name: str, status: dict[str, Any], **spec: Any) -> None:
        self.registry.upsert(self.kube.add(fakes.gpupod(name, status, **spec)))

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.kube.objects[name]["status"])

    async def poll(self, after: float = 0) -> fakes.Posted:
        self.clock.advance(after)
        await self.poller.poll_once()
        await self.events.flush()
        return self.posted

    def sample(self, name: str, labels: dict[str, str]) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels)


async def test_poller_counts_warns_then_marks_the_lifetime_spent() -> None:
    w = PollWorld(interval=5)
    w.yotta.pods["1"] = fakes.remote("1", "r1")  # 2 GPUs at 0.5: $1/h
    w.add(
        "gp",
        {"podId": "1", "remoteName": "r1", "phase": "Running"},
        lifetime={"maxRunDuration": "20s"},
    )
    await w.poll()
    assert w.status("gp")["expiresAt"] == "2026-11-27T12:00:20Z"
    await w.poll(10)
    assert w.status("gp")["cost"]["runningSeconds"] == 10
    posted = await w.poll(6)
    assert posted.reasons() == ["MaxRunDurationExpiring"]
    assert "guard" not in w.status("gp")["cost"]
    await w.poll(5)
    spent = w.status("gp")["cost"]
    assert spent["guard"] == cost.LIFETIME and spent["runningSeconds"] == 21
    # The poller never acts itself: only a list per round, the reconciler pauses.
    assert w.yotta.calls == ["list"] * 4
    # Spend: the counter follows every accrued write, the price gauge the live pod.
    labels = {"namespace": "ns"}
    assert w.sample("gpupod_cost_dollars_total", labels) == pytest.approx(float(spent["accrued"]))
    # Each write rounds to a millionth of a dollar: at most that much per write (4 here).
    assert abs(Decimal(spent["accrued"]) - Decimal(1) * 21 / 3600) <= Decimal("0.000004")
    assert w.sample("gpupod_price_per_hour", {"namespace": "ns", "name": "gp"}) == 1.0
    w.registry.remove("ns", "gp")
    await w.poll(1)
    assert w.sample("gpupod_price_per_hour", {"namespace": "ns", "name": "gp"}) is None


async def test_a_lost_write_is_counted_by_the_next_round_not_twice() -> None:
    w = PollWorld()
    w.yotta.pods["1"] = fakes.remote("1", "r1")
    w.add(
        "gp",
        {"podId": "1", "remoteName": "r1", "phase": "Running"},
        lifetime={"maxRunDuration": "1h"},
    )
    await w.poll()
    w.kube.objects["gp"]["metadata"]["resourceVersion"] = "99"  # someone wrote meanwhile
    await w.poll(10)  # 409: nothing written, nothing counted
    assert w.status("gp")["cost"]["runningSeconds"] == 0
    w.registry.upsert(w.kube.objects["gp"])  # the watch delivers the fresh object
    await w.poll(10)
    assert w.status("gp")["cost"]["runningSeconds"] == 20
    total = w.sample("gpupod_cost_dollars_total", {"namespace": "ns"})
    assert total == pytest.approx(float(w.status("gp")["cost"]["accrued"]))


def test_next_poll_comes_at_the_warning_and_at_the_expiry() -> None:
    status = {"expiresAt": "2026-11-27T12:01:00Z", "cost": {"running": True}}
    assert cost.next_deadline([status], fakes.Clock()(), 30) == 31


def test_a_spent_lifetime_creates_no_new_pod() -> None:
    desired = d.Desired(spec_hash="h2", limits=DELETE)
    stop = d.reconcile(desired, d.Recorded(remote_name="r", running_seconds=20))
    assert isinstance(stop, d.Stop) and stop.reason == cost.LIFETIME
    assert d.reconcile(desired, d.Recorded(remote_name="r", running_seconds=19)) == d.Create()


async def test_raising_the_lifetime_clears_the_guard_so_the_next_expiry_acts_again() -> None:
    w = PollWorld()
    w.yotta.pods["1"] = fakes.remote("1", "r1", status="PAUSED")
    spent = {"runningSeconds": 20, "accrued": "0.01", "guard": cost.LIFETIME}
    w.add(
        "gp", {"podId": "1", "phase": "Paused", "cost": spent}, lifetime={"maxRunDuration": "20s"}
    )
    await w.poll()
    assert w.status("gp")["cost"]["guard"] == cost.LIFETIME
    w.add(
        "gp",
        {"podId": "1", "phase": "Paused", "cost": w.status("gp")["cost"]},
        lifetime={"maxRunDuration": "30s"},
    )
    await w.poll(1)
    assert "guard" not in w.status("gp")["cost"]  # removed by an explicit null
    w.yotta.pods["1"]["status"] = "RUNNING"
    await w.poll(1)
    await w.poll(11)
    assert w.status("gp")["cost"]["guard"] == cost.LIFETIME
    assert w.status("gp")["cost"]["runningSeconds"] == 31


async def test_a_re_projected_write_adds_only_its_own_spend_to_the_counter() -> None:
    """The writer's 409 path: the patch is computed again from the fresh status, and the
    counter takes the difference to THAT status, so nothing is counted twice."""
    w = PollWorld()
    w.add("gp", {"podId": "1", "cost": {"runningSeconds": 0, "accrued": "0.00"}})
    stale = w.registry.get("ns", "gp")
    assert stale is not None
    w.kube.objects["gp"]["status"]["cost"] = {"runningSeconds": 360, "accrued": "0.10"}
    w.kube.bump("gp")  # another writer counted 0.10 meanwhile

    def plus_five_cents(current: Any, _gen: int) -> dict[str, Any]:
        accrued = Decimal((current.get("cost") or {}).get("accrued") or 0) + Decimal("0.05")
        return {"cost": {"accrued": cost.dollars(accrued)}}

    await w.writer.write(stale.ref, stale.status, 1, plus_five_cents)
    assert w.status("gp")["cost"]["accrued"] == "0.15"
    assert w.sample("gpupod_cost_dollars_total", {"namespace": "ns"}) == pytest.approx(0.05)
