"""``python -m gpupod_operator.devenv {up,down,status,run}`` (``make dev-up`` etc.)."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from .dev_environment import DevEnvironment, Terminated
from .paths import BinariesMissingError, repo_root
from .process import ProcessError


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated(signal.Signals(signum).name)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gpupod_operator.devenv",
        description="Local kube-apiserver + etcd + Yotta simulator under .dev/ (see make dev-up).",
    )
    parser.add_argument(
        "--root", type=Path, default=None, help="repository root (default: found from the cwd)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the environment in the background (idempotent)")
    up.add_argument(
        "--without-simulator",
        action="store_true",
        help="only etcd + kube-apiserver (+ CRDs); no YOTTA_API_URL/KEY in .dev/env",
    )
    up.add_argument(
        "--node",
        action="store_true",
        help="also a local node: containerd, kubelet, kube-scheduler, CNI bridge (NODE=1)",
    )
    commands.add_parser("down", help="stop everything `up` started, by PID (idempotent)")
    commands.add_parser("status", help="show what runs; exit 1 unless everything does")
    run = commands.add_parser(
        "run",
        help="the demo: environment + operator + examples/gpupod.yaml until Running; Ctrl-C stops",
    )
    run.add_argument("--node", action="store_true", help="also the local node (NODE=1)")
    run.add_argument(
        "--timeout", type=float, default=180.0, help="seconds to wait for Running (default 180)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if sys.platform != "linux":
        print("the development environment needs Linux (/proc, process groups)", file=sys.stderr)
        return 2
    env = DevEnvironment(args.root.resolve() if args.root else repo_root())
    # SIGTERM / SIGHUP unwind like Ctrl-C, so `finally` blocks stop the children by PID.
    signal.signal(signal.SIGTERM, _raise_terminated)
    signal.signal(signal.SIGHUP, _raise_terminated)
    try:
        if args.command == "up":
            return env.up(with_simulator=not args.without_simulator, with_node=args.node)
        if args.command == "down":
            return env.down()
        if args.command == "status":
            return env.status()
        return env.run(timeout=args.timeout, with_node=args.node)
    except BinariesMissingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ProcessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Terminated):
        print("interrupted; everything started was stopped.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
