"""The standby phase of `--leader-election`: wait for the Lease before kopf starts.

kopf's liveness endpoint only runs inside kopf, so while waiting this serves the same
`--liveness` URL itself (a standby is live, just not leading); it is closed before kopf binds it.
SIGTERM/SIGINT while waiting end the wait (exit 0), and kopf installs its own handlers after.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from urllib.parse import urlparse

from aiohttp import web

from gpupod_operator.controller.leader import LeaderElector

log = logging.getLogger(__name__)


class StandbyHealth:
    def __init__(self, url: str, elector: LeaderElector) -> None:
        parsed = urlparse(url)
        self.host = parsed.hostname or "0.0.0.0"
        self.port = parsed.port or 80
        self.path = parsed.path or "/"
        self._elector = elector
        self._runner: web.AppRunner | None = None

    async def _health(self, _: web.Request) -> web.Response:
        return web.json_response(
            {"leader": False, "identity": self._elector.identity, "lease": self._elector.name}
        )

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(self.path, self._health)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port, reuse_address=True).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


async def wait_for_lease(elector: LeaderElector, liveness: str | None) -> bool:
    """Block until this process holds the Lease (True) or is told to stop (False)."""
    health = StandbyHealth(liveness, elector) if liveness else None
    if health is not None:
        await health.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    acquiring = asyncio.create_task(elector.acquire(), name="gpupod-lease-acquire")
    stopping = asyncio.create_task(stop.wait(), name="gpupod-standby-stop")
    try:
        await asyncio.wait({acquiring, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        for task in (acquiring, stopping):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(acquiring, stopping, return_exceptions=True)
        if health is not None:
            await health.stop()
    if stop.is_set():
        log.info("standby: stopping")
        await elector.release()  # in case the Lease was won in the same moment
        return False
    return elector.leading
