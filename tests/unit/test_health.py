"""controller.health: /healthz and /readyz on one port, over real HTTP."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from kopf._core.reactor import orchestration

from gpupod_operator.controller import health as health_module
from gpupod_operator.controller.health import Health, watching_gpupods
from gpupod_operator.controller.leader import LeaderElector
from gpupod_operator.devenv.process import free_port


class Watch:
    running = False

    def __call__(self) -> bool:
        return self.running


@pytest.fixture
async def served() -> AsyncIterator[tuple[Health, Watch, httpx.AsyncClient]]:
    watch = Watch()
    health = Health(
        f"http://127.0.0.1:{free_port()}/healthz",
        report=lambda memo: {"remote": dict(memo)},
        watching=watch,
    )
    await health.start()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{health.port}") as client:
        yield health, watch, client
    await health.stop()


async def test_ready_only_after_startup_and_with_the_watch(
    served: tuple[Health, Watch, httpx.AsyncClient],
) -> None:
    health, watch, client = served
    assert (await client.get("/healthz")).status_code == 200  # live from the first moment
    answer = await client.get("/readyz")
    assert answer.status_code == 503 and "startup" in answer.json()["reason"]
    health.started.set()  # kopf's ready_flag
    answer = await client.get("/readyz")
    assert answer.status_code == 503 and "watch" in answer.json()["reason"]
    watch.running = True
    assert (await client.get("/readyz")).status_code == 200
    health.memo = {"failedPolls": 3}
    assert (await client.get("/healthz")).json() == {"remote": {"failedPolls": 3}}
    watch.running = False  # the watch task ended: not ready any more
    assert (await client.get("/readyz")).status_code == 503


async def test_a_standby_is_ready_once_it_takes_part_in_the_election() -> None:
    elector = LeaderElector("ns", "lease", identity="me")
    health = Health(f"http://127.0.0.1:{free_port()}/healthz", elector, watching=lambda: False)
    await health.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{health.port}") as client:
            assert (await client.get("/readyz")).status_code == 503
            live = await client.get("/healthz")
            assert live.status_code == 200 and live.json()["leader"] is False
            elector.participating = True
            answer = await client.get("/readyz")
            assert answer.status_code == 200 and "standby" in answer.json()["reason"]
            elector.last_renew = 1.0  # it leads now: the leader's rule applies
            assert (await client.get("/readyz")).status_code == 503
    finally:
        await health.stop()


def test_readiness_path_cannot_be_the_liveness_path() -> None:
    with pytest.raises(ValueError, match="readyz"):
        Health("http://127.0.0.1:1/readyz")


async def test_the_watcher_task_name_matches_kopf() -> None:
    """The readiness check finds kopf's watch by its task name: pin it to the installed kopf."""
    assert 'name=f"watcher for {what}"' in inspect.getsource(orchestration)
    assert not watching_gpupods()

    async def forever() -> Any:
        await asyncio.Event().wait()

    what = "gpupods.v1alpha1.gpupod.dev@None"
    task = asyncio.create_task(forever(), name=f"watcher for {what}")
    await asyncio.sleep(0)
    assert watching_gpupods()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert not watching_gpupods()
    assert health_module.WATCHER_PREFIX == "watcher for gpupods.v1alpha1.gpupod.dev@"
