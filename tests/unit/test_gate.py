"""The per-namespace bound on concurrent reconciles (controller.gate), alone and in the
reconciler: creates wait their turn, other namespaces and deletes never wait."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from gpupod_operator.config import ConfigError, OperatorConfig
from gpupod_operator.controller import reconciler
from gpupod_operator.controller.gate import ReconcileGate

from .reconciler_fakes import NS, REMOTE_NAME, SPEC, Fns, Worlds, gpupod, hash_of, pod, returns


@pytest.fixture
async def worlds() -> AsyncIterator[Worlds]:
    made = Worlds()
    yield made
    await made.aclose()


async def settle() -> None:
    """Let every runnable task run until it blocks."""
    for _ in range(20):
        await asyncio.sleep(0)


async def busy(gate: ReconcileGate, namespace: str, hold: asyncio.Event) -> None:
    """A reconcile of `namespace` that runs until `hold` is set."""
    async with gate.slot(namespace):
        await hold.wait()


async def test_at_most_the_limit_run_at_once_in_a_namespace_and_they_start_in_order() -> None:
    gate = ReconcileGate(2)
    release = asyncio.Event()
    running: list[int] = []
    started: list[int] = []
    peak = 0

    async def work(i: int) -> None:
        nonlocal peak
        async with gate.slot("a"):
            started.append(i)
            running.append(i)
            peak = max(peak, len(running))
            await release.wait()
            running.remove(i)

    tasks = [asyncio.create_task(work(i)) for i in range(5)]
    await settle()
    assert started == [0, 1] and gate.waiting == 3
    release.set()
    await asyncio.gather(*tasks)
    assert started == [0, 1, 2, 3, 4] and peak == 2
    assert gate.waiting == 0 and gate.namespaces() == 0  # nothing kept once all are done


async def test_a_full_namespace_does_not_hold_back_another() -> None:
    gate = ReconcileGate(1)
    hold = asyncio.Event()
    blocker = asyncio.create_task(busy(gate, "a", hold))
    await settle()
    async with asyncio.timeout(1):
        async with gate.slot("b"):  # would wait forever if the bound were global
            pass
    assert gate.namespaces() == 1
    hold.set()
    await blocker


async def test_a_cancelled_waiter_gives_up_its_place_and_leaves_nothing_behind() -> None:
    gate = ReconcileGate(1)
    hold = asyncio.Event()

    async def waiter() -> None:
        async with gate.slot("a"):
            raise AssertionError("a cancelled waiter must not run")

    blocker, waiting = asyncio.create_task(busy(gate, "a", hold)), asyncio.create_task(waiter())
    await settle()
    assert gate.waiting == 1
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert gate.waiting == 0
    hold.set()
    await blocker
    assert gate.namespaces() == 0
    async with asyncio.timeout(1):
        async with gate.slot("a"):  # the slot came back
            pass


def test_the_limit_is_at_least_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ReconcileGate(0)
    with pytest.raises(ConfigError, match="--max-concurrent-reconciles must be 1 or more"):
        OperatorConfig(
            api_url="http://yotta.invalid", api_key=SecretStr("k"), max_concurrent_reconciles=0
        ).check()


async def test_a_reconcile_waits_for_its_turn_and_a_delete_does_not(worlds: Worlds) -> None:
    recorded = {"podId": "p1", "remoteName": REMOTE_NAME, "specHash": hash_of(SPEC)}
    running = gpupod({**recorded, "phase": "Running"})
    w = worlds.new(running, Fns(observe=returns(pod("p1", "TERMINATED"))))
    assert w.rt.gate.limit == OperatorConfig.max_concurrent_reconciles  # the config's bound
    w.rt.gate = ReconcileGate(1)
    async with w.rt.gate.slot(NS):  # another GpuPod of the namespace is being reconciled
        queued = asyncio.create_task(reconciler.reconcile(w.rt, running, 0))
        await settle()
        assert w.log == [] and w.rt.gate.waiting == 1  # not one call before its turn
        deleting = gpupod({**recorded, "phase": "Terminating"})
        deleting["metadata"]["deletionTimestamp"] = "2026-12-02T00:00:00Z"
        async with asyncio.timeout(5):
            await reconciler.finalize(w.rt, deleting, 0)  # released although the gate is full
        assert w.log == ["observe p1"]
    async with asyncio.timeout(5):
        await queued
    assert w.log[:2] == ["observe p1", "observe p1"]  # the queued reconcile ran after
    assert w.rt.gate.namespaces() == 0
