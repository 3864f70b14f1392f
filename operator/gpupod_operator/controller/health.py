"""Liveness (`--liveness` URL, e.g. /healthz) and readiness (/readyz) on one port, for the
whole life of the process: standby, leader and shutdown alike.

Not kopf's liveness endpoint: kopf serves one path only, and only once it runs (after the
Lease is won), so there was no place for /readyz and a gap between the standby's and kopf's.

- Liveness answers 200 while the event loop runs. It never calls the provider: an outage of
  the Yotta API must not restart-loop the operator. The leader's answer shows the poller.
- Readiness is 200 for a standby once it takes part in the election (it has read the Lease),
  and for the leader (or without election) once kopf's startup finished (logged in to
  Kubernetes with the pod's credentials) and kopf's watch on gpupods runs. Never tied to the
  provider either.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from aiohttp import web

from gpupod_operator.controller.kube import GROUP, PLURAL, VERSION
from gpupod_operator.controller.leader import LeaderElector

READINESS_PATH = "/readyz"
# kopf names the task of each watch "watcher for <plural>.<version>.<group>@<namespace>"
# (kopf/_core/reactor/orchestration.py); a unit test pins this against the installed kopf.
WATCHER_PREFIX = f"watcher for {PLURAL}.{VERSION}.{GROUP}@"


def watching_gpupods() -> bool:
    """Whether a kopf watch on gpupods is running in this event loop."""
    return any(
        t.get_name().startswith(WATCHER_PREFIX) and not t.done() for t in asyncio.all_tasks()
    )


class Health:
    def __init__(
        self,
        url: str,
        elector: LeaderElector | None = None,
        *,
        report: Callable[[Any], dict[str, Any]] | None = None,
        watching: Callable[[], bool] = watching_gpupods,
    ) -> None:
        parsed = urlparse(url)
        self.host = parsed.hostname or "0.0.0.0"
        self.port = parsed.port or 80
        self.path = parsed.path or "/healthz"
        if self.path == READINESS_PATH:
            raise ValueError(f"--liveness must not use {READINESS_PATH}: readiness is served there")
        self.elector = elector
        self.started = asyncio.Event()  # kopf's ready_flag: raised after the startup handlers
        self.memo: Any = None  # kopf's memo, for the leader's liveness report
        self._report = report or (lambda memo: {})
        self._watching = watching
        self._runner: web.AppRunner | None = None

    def _standby(self) -> bool:
        return self.elector is not None and not self.elector.leading

    def readiness(self) -> tuple[bool, str]:
        if self.elector is not None and self._standby():
            if self.elector.participating:
                return True, "standby: taking part in the election"
            return False, "standby: the Lease could not be read yet"
        if not self.started.is_set():
            return False, "starting: kopf's startup (Kubernetes login) has not finished"
        if not self._watching():
            return False, "the watch on gpupods is not running"
        return True, "logged in and watching gpupods"

    async def _live(self, _: web.Request) -> web.Response:
        if self._standby():
            assert self.elector is not None
            return web.json_response(
                {"leader": False, "identity": self.elector.identity, "lease": self.elector.name}
            )
        return web.json_response(self._report(self.memo) if self.memo is not None else {})

    async def _ready(self, _: web.Request) -> web.Response:
        ready, reason = self.readiness()
        return web.json_response({"ready": ready, "reason": reason}, status=200 if ready else 503)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(self.path, self._live)
        app.router.add_get(READINESS_PATH, self._ready)
        # No access log: the kubelet probes every few seconds.
        self._runner = web.AppRunner(
            app, handle_signals=False, shutdown_timeout=1.0, access_log=None
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port, reuse_address=True).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
