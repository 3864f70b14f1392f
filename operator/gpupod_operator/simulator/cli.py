"""`gpupod-operator simulator ...`: argument parsing and the serve loop.

`gpupod_operator/cli.py` calls `add_arguments(parser)` on its subcommand parser and then
`main(args)`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from gpupod_operator.simulator.config import Dialect, FaultRule, SimulatorConfig
from gpupod_operator.simulator.server import SimulatorServer

logger = logging.getLogger(__name__)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def _rate(text: str) -> float:
    value = _seconds(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be within 0..1")
    return value


def _fault(text: str) -> FaultRule:
    try:
        return FaultRule.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a non-negative integer")
    return int(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    add("--port", type=int, default=8090, help="port to listen on; 0 picks one (default 8090)")
    add(
        "--api-key",
        action="append",
        default=None,
        metavar="K",
        help="an accepted X-Api-Key; repeat for several accounts (account N is the Nth key), "
        "each seeing only its own pods (default: any non-empty key, one account)",
    )
    add(
        "--provision-seconds",
        type=_seconds,
        default=3.0,
        metavar="S",
        help="INITIALIZE -> RUNNING (default 3)",
    )
    add(
        "--pause-seconds",
        type=_seconds,
        default=1.0,
        metavar="S",
        help="PAUSING -> PAUSED (default 1)",
    )
    add(
        "--resume-seconds",
        type=_seconds,
        default=None,
        metavar="S",
        help="resume: INITIALIZE -> RUNNING (default: --provision-seconds)",
    )
    add(
        "--terminate-seconds",
        type=_seconds,
        default=1.0,
        metavar="S",
        help="TERMINATING -> TERMINATED (default 1)",
    )
    add(
        "--fault",
        type=_fault,
        action="append",
        default=[],
        metavar="OP:KIND:RATE",
        help="inject a fault (repeatable): OP in create,get,list,delete,pause,resume,types,*; "
        "KIND in 500,429,10002,timeout,lost; RATE in 0..1",
    )
    add("--seed", type=int, default=None, metavar="N", help="seed for faults, ids, failures")
    add(
        "--fail-rate",
        type=_rate,
        default=0.0,
        metavar="R",
        help="probability that provisioning ends FAILED (default 0)",
    )
    add(
        "--capacity",
        type=_positive_int,
        default=None,
        metavar="N",
        help="max GPUs held at once; pods beyond it end FAILED (default unlimited)",
    )
    add(
        "--retention-seconds",
        type=_seconds,
        default=86400.0,
        metavar="S",
        help="how long TERMINATED pods stay visible (default 86400)",
    )
    add(
        "--timeout-fault-seconds",
        type=_seconds,
        default=30.0,
        metavar="S",
        help="how long a `timeout` fault delays the answer (default 30)",
    )
    add(
        "--dialect",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="emit a response variant, e.g. id_type=string, price_type=number, "
        "status_names=guide|console|int, list_shape=items, create_data=id, "
        "action_data=null|pod, error_style=http (repeatable)",
    )
    add(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="log level (default info); debug logs one line per request",
    )


def _keys(keys: list[str] | None) -> str | tuple[str, ...] | None:
    """One key stays a string (the single-account simulator); several are accounts 0, 1, ..."""
    if not keys:
        return None
    return keys[0] if len(keys) == 1 else tuple(keys)


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    try:
        dialect = Dialect.parse(args.dialect)
    except ValueError as exc:
        raise SystemExit(f"simulator: {exc}") from None
    return SimulatorConfig(
        host=args.host,
        port=args.port,
        api_key=_keys(args.api_key),
        provision_seconds=args.provision_seconds,
        pause_seconds=args.pause_seconds,
        resume_seconds=args.resume_seconds,
        terminate_seconds=args.terminate_seconds,
        faults=list(args.fault),
        seed=args.seed,
        fail_rate=args.fail_rate,
        capacity=args.capacity,
        retention_seconds=args.retention_seconds,
        timeout_fault_seconds=args.timeout_fault_seconds,
        dialect=dialect,
    )


async def serve(config: SimulatorConfig) -> None:
    """Serve until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with SimulatorServer(config) as server:
        logger.info(
            "yotta simulator listening on %s (provision %gs, faults: %s)",
            server.url,
            config.provision_seconds,
            ", ".join(str(f) for f in config.faults) or "none",
        )
        await stop.wait()
    logger.info("yotta simulator stopped")


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    config = config_from_args(args)
    asyncio.run(serve(config))
    return 0
