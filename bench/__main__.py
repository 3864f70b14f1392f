"""``python -m bench [--n N] [--scaling 100,300,1000] ...`` (``make bench``, ``make bench N=1000``).

Each run starts its own kube-apiserver + etcd, simulators and operator, and stops them by PID
when it ends, also on failure or Ctrl-C. Results go to ``bench-results/``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from .experiments.sitecustomize import KNOWN as KNOWN_EXPERIMENTS
from .report import scaling_table
from .run import REPO, RunConfig, log, run_once


class Terminated(BaseException):
    pass


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated(signal.Signals(signum).name)


def parse_sizes(text: str) -> list[int]:
    sizes = [int(part) for part in text.split(",") if part.strip()]
    if not sizes or any(n <= 0 for n in sizes):
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive integers, e.g. 100,300,1000")
    return sizes


def _experiment(name: str) -> str:
    """One of sitecustomize's KNOWN names; NAME-N / NAME-S stand for NAME-<a number>."""
    for known in KNOWN_EXPERIMENTS:
        stem, _, param = known.rpartition("-")
        if name == known and param not in ("N", "S"):
            return name
        if param in ("N", "S") and name.startswith(f"{stem}-"):
            try:
                float(name.removeprefix(f"{stem}-"))
            except ValueError:
                break
            return name
    raise argparse.ArgumentTypeError(
        f"{name!r}: not an experiment of bench/experiments/sitecustomize.py "
        f"({', '.join(KNOWN_EXPERIMENTS)})"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Apply N GpuPods at once, measure apply->Running, steady state and delete "
        "against the local control plane and the Yotta simulator, and compare with the floor.",
    )
    parser.add_argument("--n", type=int, default=200, help="GpuPods in one run (default 200)")
    parser.add_argument(
        "--scaling",
        type=parse_sizes,
        default=None,
        metavar="N1,N2,...",
        help="run each N and write a markdown table (e.g. 100,300,1000)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=32,
        help="client-side concurrency of apply, delete and the floor (default 32)",
    )
    parser.add_argument(
        "--steady-seconds",
        type=float,
        default=None,
        help="idle window for steady-state remote calls (default 90; 60 with --scaling)",
    )
    parser.add_argument(
        "--settle-seconds",
        type=float,
        default=5.0,
        help="pause after all Running / all gone before counting (default 5)",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["INFO", "WARNING", "ERROR"],
        help="operator log level (default INFO, the product default)",
    )
    parser.add_argument(
        "--operator-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra operator flag, repeatable: --operator-arg=--qps --operator-arg=200",
    )
    parser.add_argument(
        "--product-rate-limit",
        action="store_true",
        help="keep the operator's own rate limit (--qps 20 --burst 40); by default the bench "
        "passes --qps 1000 --burst 1000 unless --operator-arg gives --qps or --burst",
    )
    parser.add_argument(
        "--experiment",
        action="append",
        default=[],
        type=_experiment,
        help="patch the operator process to try a proposed change (bench/experiments/"
        f"sitecustomize.py), repeatable: {', '.join(KNOWN_EXPERIMENTS)} (N, S: a number)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the operator during the create and delete phases (perturbs timings)",
    )
    parser.add_argument("--no-floor", action="store_true", help="skip the floor")
    parser.add_argument(
        "--no-finalizer-policy",
        action="store_true",
        help="without the chart's MutatingAdmissionPolicy: the operator adds its finalizer",
    )
    parser.add_argument(
        "--no-restart",
        action="store_true",
        help="skip the restart phase (the operator restarted with N GpuPods Running)",
    )
    parser.add_argument("--no-plot", action="store_true", help="no PNG")
    parser.add_argument(
        "--phase-timeout",
        type=float,
        default=None,
        help="seconds allowed per phase (default 120 + 0.6 per GpuPod)",
    )
    parser.add_argument(
        "--stall-seconds",
        type=float,
        default=180.0,
        help="fail a wait for Running / gone when no GpuPod got there for this long (180)",
    )
    parser.add_argument(
        "--out-dir", type=Path, default=REPO / "bench-results", help="default bench-results/"
    )
    return parser


def config_for(args: argparse.Namespace, n: int, steady: float) -> RunConfig:
    return RunConfig(
        n=n,
        concurrency=args.concurrency,
        steady_seconds=steady,
        settle_seconds=args.settle_seconds,
        operator_args=list(args.operator_arg),
        experiments=list(args.experiment),
        log_level=args.log_level,
        out_dir=args.out_dir,
        profile=args.profile,
        floor=not args.no_floor,
        finalizer_policy=not args.no_finalizer_policy,
        restart=not args.no_restart,
        plot=not args.no_plot,
        phase_timeout=args.phase_timeout,
        stall_seconds=args.stall_seconds,
        product_rate_limit=args.product_rate_limit,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if sys.platform != "linux":
        print("the bench needs Linux (/proc)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    try:
        if args.scaling:
            return _scaling(args)
        steady = 90.0 if args.steady_seconds is None else args.steady_seconds
        result = run_once(config_for(args, args.n, steady))
        return 0 if (result.get("checks") or {}).get("ok") else 1
    except (KeyboardInterrupt, Terminated):
        print("interrupted; every process the bench started was stopped.", file=sys.stderr)
        return 130


def _scaling(args: argparse.Namespace) -> int:
    steady = 60.0 if args.steady_seconds is None else args.steady_seconds
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    results: list[dict[str, Any]] = []
    failed = False
    for n in args.scaling:
        log(f"=== scaling: N={n}")
        try:
            result = run_once(config_for(args, n, steady))
        except (KeyboardInterrupt, Terminated):
            raise
        except Exception as exc:  # record it and go on with the next N
            log(f"N={n} failed: {exc!r}")
            failed = True
            continue
        failed = failed or not (result.get("checks") or {}).get("ok")
        results.append(result)
    table = scaling_table(results)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    md = args.out_dir / f"{stamp}-scaling.md"
    flags = " ".join(config_for(args, 0, steady).effective_operator_args) or "defaults"
    load = [r.get("machine", {}).get("loadavg_at_start") for r in results]
    md.write_text(
        f"# gpupod-operator scaling ({stamp})\n\n"
        f"Operator flags: {flags}; log level {args.log_level}; client concurrency "
        f"{args.concurrency}; steady window {steady:g}s; machine nproc "
        f"{results[0]['machine']['nproc'] if results else '?'}; load average at each start "
        f"{load}.\n\n{table}\n"
    )
    summary = args.out_dir / f"{stamp}-scaling.json"
    summary.write_text(
        json.dumps([{k: v for k, v in r.items() if k != "series"} for r in results], indent=2)
        + "\n"
    )
    print(table)
    log(f"wrote {md} and {summary}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
