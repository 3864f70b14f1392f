"""The standby phase of `--leader-election`: wait for the Lease before kopf starts.

Liveness and readiness are served meanwhile by `controller.health` (a standby is live, and
ready once it takes part in the election). SIGTERM/SIGINT while waiting end the wait (exit 0),
and kopf installs its own handlers after.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from gpupod_operator.controller.leader import LeaderElector

log = logging.getLogger(__name__)


async def wait_for_lease(elector: LeaderElector) -> bool:
    """Block until this process holds the Lease (True) or is told to stop (False)."""
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
    if stop.is_set():
        log.info("standby: stopping")
        await elector.release()  # in case the Lease was won in the same moment
        return False
    return elector.leading
