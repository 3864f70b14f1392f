"""Pod lifecycle of the simulator, driven by a manual clock (no sleeping)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gpupod_operator.simulator import Dialect, ManualClock, SimulatorConfig, SimulatorServer
from gpupod_operator.simulator.errors import SimError
from gpupod_operator.simulator.render import render_pod
from gpupod_operator.simulator.state import Store
from gpupod_operator.simulator.statuses import SimStatus
from gpupod_operator.simulator.validation import CreateSpec, validate_create

S = SimStatus


def make_store(**overrides: Any) -> tuple[Store, ManualClock]:
    clock = ManualClock()
    base: dict[str, Any] = dict(
        provision_seconds=10, pause_seconds=2, terminate_seconds=3, seed=5, clock=clock
    )
    return Store(SimulatorConfig(**(base | overrides))), clock


def spec(gpu_type: str = "NVIDIA_RTX_4090_24G", count: int = 1, **fields: Any) -> CreateSpec:
    body = {"name": "p", "image": "img", "gpuType": gpu_type, "gpuCount": count, **fields}
    return validate_create(body, credentials=set(), volumes=set())


def status(store: Store, pod_id: int) -> SimStatus:
    return store.get_pod(pod_id).status_at(store.clock())


def code_of(call: Any, *args: Any) -> int:
    with pytest.raises(SimError) as err:
        call(*args)
    return err.value.code


def test_create_initializes_then_runs_with_endpoints() -> None:
    store, clock = make_store()
    pod = store.create_pod(spec(expose=[{"port": 8888, "protocol": "HTTP"}, {"port": 22}]))
    created_ms = int(clock() * 1000)
    shape = render_pod(pod, clock(), Dialect())
    assert shape["status"] == "INITIALIZE" and shape["createdAt"] == created_ms
    assert shape["expose"] == [{"port": 8888, "protocol": "HTTP"}, {"port": 22, "protocol": "TCP"}]
    assert shape["sshCmd"] is None and shape["internalIp"] is None
    clock.advance(9.9)
    assert status(store, pod.id) is S.INITIALIZE
    clock.advance(0.1)
    shape = render_pod(pod, clock(), Dialect())
    assert shape["status"] == "RUNNING"
    assert shape["updatedAt"] == created_ms + 10_000  # the moment it became RUNNING
    http, ssh = shape["expose"]
    assert http["host"] and http["proxyPort"] and http["healthy"] is True
    assert http["ingressUrl"].startswith("https://") and "ingressUrl" not in ssh
    assert shape["sshCmd"] == f"ssh root@{ssh['host']} -p {ssh['proxyPort']}"
    assert shape["singleCardPrice"] == "0.45" and shape["gpuDisplayName"] == "RTX 4090"


def test_pause_and_resume_only_from_the_right_states() -> None:
    store, clock = make_store(resume_seconds=4)
    pod = store.create_pod(spec())
    assert code_of(store.pause_pod, pod.id) == 12001  # still INITIALIZE
    assert code_of(store.resume_pod, pod.id) == 12001
    clock.advance(10)
    assert code_of(store.resume_pod, pod.id) == 12001  # RUNNING
    store.pause_pod(pod.id)
    assert status(store, pod.id) is S.PAUSING
    assert code_of(store.pause_pod, pod.id) == 12001
    assert code_of(store.resume_pod, pod.id) == 12001  # PAUSING is not PAUSED yet
    clock.advance(2)
    assert status(store, pod.id) is S.PAUSED
    assert code_of(store.pause_pod, pod.id) == 12001
    store.resume_pod(pod.id)
    assert status(store, pod.id) is S.INITIALIZE  # resume passes through INITIALIZE
    clock.advance(3.9)
    assert status(store, pod.id) is S.INITIALIZE
    clock.advance(0.1)
    assert status(store, pod.id) is S.RUNNING


def test_resume_defaults_to_provision_seconds() -> None:
    store, clock = make_store(pause_seconds=0)
    pod = store.create_pod(spec())
    clock.advance(10)
    store.pause_pod(pod.id)
    store.resume_pod(pod.id)
    clock.advance(9)
    assert status(store, pod.id) is S.INITIALIZE
    clock.advance(1)
    assert status(store, pod.id) is S.RUNNING


@pytest.mark.parametrize("advance_first", [0, 10, 11])  # INITIALIZE, RUNNING, PAUSING
def test_delete_from_any_state_terminates_and_is_idempotent(advance_first: float) -> None:
    store, clock = make_store()
    pod = store.create_pod(spec())
    clock.advance(advance_first)
    if advance_first == 11:
        store.pause_pod(pod.id)
    store.delete_pod(pod.id)
    assert status(store, pod.id) is S.TERMINATING
    assert code_of(store.pause_pod, pod.id) == 12001
    store.delete_pod(pod.id)  # again, while TERMINATING: success, no change
    clock.advance(3)
    assert status(store, pod.id) is S.TERMINATED
    store.delete_pod(pod.id)  # and once TERMINATED
    assert status(store, pod.id) is S.TERMINATED
    assert store.held_gpus == 0


def test_terminated_pods_stay_visible_for_the_retention_period() -> None:
    store, clock = make_store(retention_seconds=100, terminate_seconds=0)
    gone = store.create_pod(spec())
    kept = store.create_pod(spec())
    store.delete_pod(gone.id)
    clock.advance(99)
    assert {p.id for p in store.list_pods(None, {S.TERMINATED})} == {gone.id}
    clock.advance(1)
    assert code_of(store.get_pod, gone.id) == 13000
    assert code_of(store.delete_pod, gone.id) == 13000
    assert [p.id for p in store.list_pods(None, None)] == [kept.id]


def test_fail_rate_ends_failed_and_only_delete_is_allowed() -> None:
    store, clock = make_store(fail_rate=1.0)
    pod = store.create_pod(spec())
    assert status(store, pod.id) is S.INITIALIZE
    clock.advance(10)
    assert status(store, pod.id) is S.FAILED
    shape = render_pod(pod, clock(), Dialect())
    assert shape["failureReason"] == "simulated provisioning failure (fail-rate)"
    assert code_of(store.pause_pod, pod.id) == 12001
    assert code_of(store.resume_pod, pod.id) == 12001
    assert store.held_gpus == 0
    store.delete_pod(pod.id)
    clock.advance(3)
    assert status(store, pod.id) is S.TERMINATED


def test_fail_rate_is_seeded_and_roughly_right() -> None:
    def outcomes() -> list[SimStatus]:
        store, clock = make_store(fail_rate=0.3, provision_seconds=0, seed=42)
        return [store.create_pod(spec()).status_at(clock()) for _ in range(400)]

    first = outcomes()
    assert first == outcomes()
    assert 80 <= first.count(S.FAILED) <= 160


def test_capacity_counts_held_gpus() -> None:
    store, _ = make_store(capacity=4, provision_seconds=0, pause_seconds=0)
    a = store.create_pod(spec(count=2))
    b = store.create_pod(spec(count=2))
    over = store.create_pod(spec(count=1))
    assert [status(store, p.id) for p in (a, b, over)] == [S.RUNNING, S.RUNNING, S.FAILED]
    assert "insufficient resources" in (over.failure_reason or "")
    assert store.held_gpus == 4
    store.pause_pod(a.id)  # pausing releases compute
    c = store.create_pod(spec(count=2))
    assert status(store, c.id) is S.RUNNING
    store.resume_pod(a.id)  # no room left: the resume ends FAILED
    assert status(store, a.id) is S.FAILED
    store.delete_pod(b.id)
    assert store.held_gpus == 2
    assert status(store, store.create_pod(spec(count=2)).id) is S.RUNNING


def test_region_choice_and_sold_out_regions() -> None:
    store, _ = make_store(provision_seconds=0)
    assert store.create_pod(spec(regions=["ap-southeast-1", "us-west-1"])).region == (
        "ap-southeast-1"
    )
    assert store.create_pod(spec()).region == "us-east-1"  # no preference: first offered
    # Offered only where it is sold out: accepted, then FAILED for lack of resources.
    sold_out = store.create_pod(spec("NVIDIA_B300_262G", regions=["ap-southeast-1"]))
    assert status(store, sold_out.id) is S.FAILED
    assert "sold out" in (sold_out.failure_reason or "")
    assert store.create_pod(spec("NVIDIA_B300_262G")).region == "us-east-1"


def test_zero_durations_are_instant() -> None:
    store, _ = make_store(provision_seconds=0, pause_seconds=0, terminate_seconds=0)
    pod = store.create_pod(spec())
    assert status(store, pod.id) is S.RUNNING
    store.pause_pod(pod.id)
    assert status(store, pod.id) is S.PAUSED
    store.resume_pod(pod.id)
    assert status(store, pod.id) is S.RUNNING
    store.delete_pod(pod.id)
    assert status(store, pod.id) is S.TERMINATED


def test_ids_are_unique_big_and_seeded() -> None:
    first, _ = make_store()
    second, _ = make_store()
    ids = [first.create_pod(spec()).id for _ in range(50)]
    assert ids == [second.create_pod(spec()).id for _ in range(50)]
    assert len(set(ids)) == 50 and ids == sorted(ids)
    assert all(2**53 < i < 2**63 for i in ids)
    first.reset_pods()
    assert first.create_pod(spec()).id not in ids  # never reused after a reset


def test_force_status_and_vanish() -> None:
    store, clock = make_store(provision_seconds=0)
    pod = store.create_pod(spec(count=2))
    store.force_status(pod.id, S.FAILED)
    clock.advance(1000)
    assert status(store, pod.id) is S.FAILED and store.held_gpus == 0
    store.force_status(pod.id, S.RUNNING)
    assert store.held_gpus == 2
    store.vanish(pod.id)
    assert code_of(store.get_pod, pod.id) == 13000 and store.held_gpus == 0


# --- the same lifecycle over HTTP ------------------------------------------------------


@pytest.fixture
async def served() -> AsyncIterator[tuple[httpx.AsyncClient, ManualClock]]:
    clock = ManualClock()
    config = SimulatorConfig(port=0, provision_seconds=5, pause_seconds=1, clock=clock)
    async with (
        SimulatorServer(config) as server,
        httpx.AsyncClient(base_url=server.url, headers={"X-Api-Key": "k"}) as http,
    ):
        yield http, clock


async def test_http_lifecycle_and_list_filters(
    served: tuple[httpx.AsyncClient, ManualClock],
) -> None:
    http, clock = served

    async def data(method: str, path: str, **kw: Any) -> Any:
        payload = (await http.request(method, path, **kw)).json()
        assert payload["code"] == 10000, payload
        return payload["data"]

    base = {"image": "i", "gpuType": "NVIDIA_H100_80G", "gpuCount": 1}
    east = await data("POST", "/v2/pods", json={"name": "east", **base})
    west = await data("POST", "/v2/pods", json={"name": "west", "regions": ["us-west-1"], **base})
    assert east["status"] == "INITIALIZE" and east["region"] == "us-east-1"
    clock.advance(5)
    assert await data("POST", f"/v2/pods/{west['id']}/pause") is True
    assert (await data("GET", f"/v2/pods/{west['id']}"))["status"] == "PAUSING"

    async def names(**params: Any) -> list[str]:
        return [p["name"] for p in await data("GET", "/v2/pods", params=params)]

    assert await names() == ["west", "east"]  # newest first
    assert await names(statusList="1") == ["east"]
    assert await names(statusList="RUNNING,PAUSING") == ["west", "east"]
    assert await names(statusList=["2", "Stopping"]) == ["west"]
    assert await names(statusList="STOPPED") == []
    clock.advance(1)
    assert await names(statusList="STOPPED") == ["west"]
    assert await names(regionList="us-west-1,ap-southeast-1") == ["west"]
    assert await names(regionList=["us-east-1", "us-west-1"], statusList="3") == ["west"]
    assert await data("DELETE", f"/v2/pods/{east['id']}") is True
