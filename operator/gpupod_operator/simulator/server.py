"""Serve the simulator in-process (tests, dev environment, the CLI)."""

from __future__ import annotations

from typing import Self

from aiohttp import web

from gpupod_operator.simulator.app import SIMULATOR, Simulator, build_app
from gpupod_operator.simulator.config import SimulatorConfig


class SimulatorServer:
    """`async with SimulatorServer(config) as server: server.url ...`.

    Port 0 picks a free port. Handlers are cancelled when their client disconnects, so a
    `timeout` fault's long wait ends with the client and never holds up shutdown.
    """

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.app = build_app(config)
        self._runner = web.AppRunner(
            self.app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        self.host = config.host
        self.port = config.port

    @property
    def simulator(self) -> Simulator:
        return self.app[SIMULATOR]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        await site.start()
        self.host, self.port = self._runner.addresses[0][:2]

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
