"""`gpupod-operator run` (the controller) and `gpupod-operator simulator` (a local Yotta API)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from gpupod_operator import __version__
from gpupod_operator.config import ConfigError, OperatorConfig

if TYPE_CHECKING:
    from gpupod_operator.controller.leader import LeaderElector


def _run(args: argparse.Namespace) -> int:
    import kopf

    from gpupod_operator.controller import handlers, watch_transform
    from gpupod_operator.controller.metrics import Metrics

    if not args.all_namespaces and not args.namespace:
        print("gpupod-operator run: give -A (all namespaces) or -n NAMESPACE", file=sys.stderr)
        return 2
    try:
        config = OperatorConfig.from_env(
            sync_interval=args.sync_interval,
            fast_sync_interval=args.fast_sync_interval,
            qps=args.qps,
            burst=args.burst,
            request_timeout=args.request_timeout,
            max_concurrent_reconciles=args.max_concurrent_reconciles,
            metrics_port=args.metrics_port,
            operator_namespace=_operator_namespace(args),
            default_account_namespaces=_namespace_list(args.default_account_namespaces),
            cluster_id=args.cluster_id,
            orphans=args.orphans,
            orphan_grace=args.orphan_grace,
            namespaces=tuple(args.namespace or ()),
        )
    except ConfigError as e:
        print(f"gpupod-operator run: {e}", file=sys.stderr)
        return 2
    level = getattr(logging, args.log_level.upper())
    kopf.configure(
        debug=level <= logging.DEBUG, verbose=level <= logging.INFO, quiet=level >= logging.WARNING
    )
    logging.getLogger().setLevel(level)
    # httpx logs every request URL at INFO; ours are logged by the client without secrets.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)

    elector = None
    if args.leader_election:
        elector = _elector(args, config.request_timeout)
        if elector is None:
            return 2
    metrics = Metrics()
    if elector is not None:
        elector.on_change = lambda leading: metrics.leader.set(1 if leading else 0)
    else:
        metrics.leader.set(1)
    if config.metrics_port:
        metrics.serve(config.metrics_port, args.metrics_addr)
    handlers.CONFIG, handlers.METRICS, handlers.LEADER = config, metrics, elector
    watch_transform.install()  # kopf queues watch events without managedFields
    handlers.NAMESPACES = tuple(args.namespace or ())
    return asyncio.run(_operate(args, elector))


def _operator_namespace(args: argparse.Namespace) -> str:
    from gpupod_operator.controller.leader import default_namespace

    return (
        args.operator_namespace
        or os.environ.get("POD_NAMESPACE", "").strip()
        or default_namespace()
        or ""
    )


def _namespace_list(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in (text or "").split(",") if n.strip())


def _elector(args: argparse.Namespace, create_timeout: float) -> LeaderElector | None:
    from gpupod_operator.controller.leader import LeaderElector, default_namespace
    from gpupod_operator.domain.leadership import Timings

    namespace = args.leader_election_namespace or default_namespace()
    if not namespace:
        print(
            "gpupod-operator run: --leader-election needs --leader-election-namespace "
            "outside a cluster",
            file=sys.stderr,
        )
        return None
    timings = Timings(
        lease=args.leader_election_lease_seconds,
        renew_deadline=args.leader_election_renew_deadline_seconds,
        retry=args.leader_election_retry_seconds,
        create_margin=args.leader_election_create_margin_seconds,
    )
    problems = timings.problems(create_timeout)
    if problems:
        print(
            f"gpupod-operator run: leader election timings: {'; '.join(problems)}", file=sys.stderr
        )
        return None
    return LeaderElector(
        namespace,
        args.leader_election_id,
        timings=timings,
        create_timeout=create_timeout,
    )


async def _warm_up() -> None:
    """The official client builds its large API classes on first use: seconds of CPU that
    block the event loop (measured 3.5 s on a busy machine). Pay that as a standby, not while
    holding the Lease, where a blocked loop cannot renew it."""
    from gpupod_operator.controller.kube import KubeApi

    try:
        kube = await KubeApi.connect()
    except Exception:  # kopf's login reports a missing cluster properly later
        return
    await kube.aclose()


async def _operate(args: argparse.Namespace, elector: LeaderElector | None) -> int:
    import kopf

    from gpupod_operator.controller.handlers import liveness_report
    from gpupod_operator.controller.health import Health
    from gpupod_operator.controller.standby import wait_for_lease

    health = Health(args.liveness, elector, report=liveness_report) if args.liveness else None
    if health is not None:
        await health.start()  # one port for the whole life: standby, leader, shutdown
    try:
        if elector is not None:
            await _warm_up()
            if not await wait_for_lease(elector):
                return 0
            elector.start_renewing()
        memo = kopf.Memo()
        if health is not None:
            health.memo = memo
        try:
            await kopf.operator(
                # No kopf peering: one replica, or one leader by Lease (kopf's peering is no lock).
                standalone=True,
                clusterwide=args.all_namespaces,
                namespaces=args.namespace or (),
                memo=memo,
                ready_flag=health.started if health is not None else None,
            )
        finally:
            if elector is not None:
                # kopf has stopped: nothing of ours runs any more, a standby may take over now.
                await elector.release()
    finally:
        if health is not None:
            await health.stop()
    return 0


def build_parser() -> argparse.ArgumentParser:
    from gpupod_operator.domain.leadership import (
        CREATE_MARGIN_SECONDS,
        LEASE_SECONDS,
        RENEW_DEADLINE_SECONDS,
        RETRY_SECONDS,
    )
    from gpupod_operator.simulator import cli as simulator_cli

    parser = argparse.ArgumentParser(prog="gpupod-operator", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run",
        help="run the controller",
        description="Run the GpuPod controller. Needs YOTTA_API_KEY (or YOTTA_API_KEY_FILE); "
        "YOTTA_API_URL defaults to https://api.yottalabs.ai.",
    )
    scope = run.add_mutually_exclusive_group()
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    scope.add_argument(
        "-n", "--namespace", action="append", default=[], help="watch this namespace (repeatable)"
    )
    run.add_argument(
        "--liveness",
        help="serve liveness at this URL, e.g. http://0.0.0.0:8080/healthz, and readiness at "
        "/readyz on the same port (ready: logged in to Kubernetes and watching GpuPods)",
    )
    run.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics on this port")
    run.add_argument("--metrics-addr", default="0.0.0.0", help="address for --metrics-port")
    run.add_argument(
        "--sync-interval",
        type=float,
        default=30.0,
        help="seconds between bulk status polls while nothing changes (default 30)",
    )
    run.add_argument(
        "--fast-sync-interval",
        type=float,
        default=2.0,
        help="seconds between polls while a GpuPod is changing state (default 2)",
    )
    run.add_argument("--qps", type=float, default=20.0, help="Yotta API requests per second (20)")
    run.add_argument("--burst", type=int, default=40, help="Yotta API request burst (40)")
    run.add_argument(
        "--request-timeout",
        type=float,
        default=15.0,
        help="seconds before a Yotta API request is given up (default 15)",
    )
    run.add_argument(
        "--max-concurrent-reconciles",
        type=int,
        default=OperatorConfig.max_concurrent_reconciles,
        metavar="N",
        help="GpuPods of one namespace reconciled at once; the others wait their turn "
        f"(default {OperatorConfig.max_concurrent_reconciles}; deletes are never held back)",
    )
    accounts = run.add_argument_group(
        "accounts",
        "GpuPods use the YottaAccount or ClusterYottaAccount of spec.accountRef, else "
        "YottaAccount/default of their namespace, else ClusterYottaAccount/default if it allows "
        "the namespace, else the operator's own key (YOTTA_API_KEY).",
    )
    accounts.add_argument(
        "--default-account-namespaces",
        default="",
        metavar="NS,...",
        help="namespaces whose GpuPods may fall back to the operator's own key "
        "(default: every namespace)",
    )
    accounts.add_argument(
        "--operator-namespace",
        default="",
        metavar="NS",
        help="where the Secrets of ClusterYottaAccounts are (default: $POD_NAMESPACE, else the "
        "pod's own namespace)",
    )
    orphans = run.add_argument_group(
        "orphans",
        "Remote pods carrying this cluster's identity whose GpuPod no longer exists "
        "(README: Keep the bill under control, Orphans).",
    )
    orphans.add_argument(
        "--cluster-id",
        metavar="ID",
        help="this cluster's identity in remote names (default: the kube-system namespace UID); "
        "give each installation sharing a Yotta account its own",
    )
    orphans.add_argument(
        "--orphans",
        choices=["report", "delete"],
        default="report",
        help="report (default): metric, log line and Event per orphan; delete: also terminate "
        "it after --orphan-grace",
    )
    orphans.add_argument(
        "--orphan-grace",
        type=float,
        default=600.0,
        metavar="S",
        help="seconds an orphan must have been seen before --orphans delete terminates it "
        "(default 600; counted again from a restart)",
    )
    ha = run.add_argument_group(
        "leader election",
        "Several replicas, one leader: only the holder of a coordination.k8s.io/v1 Lease "
        "reconciles or calls the Yotta API; the others wait as standbys.",
    )
    ha.add_argument(
        "--leader-election", action="store_true", help="hold a Lease before running (HA)"
    )
    ha.add_argument(
        "--leader-election-namespace",
        metavar="NS",
        help="namespace of the Lease (default: the pod's own namespace)",
    )
    ha.add_argument(
        "--leader-election-id",
        default="gpupod-operator",
        metavar="NAME",
        help="name of the Lease (default gpupod-operator)",
    )
    ha.add_argument(
        "--leader-election-lease-seconds",
        type=float,
        default=LEASE_SECONDS,
        metavar="S",
        help=f"how long a standby waits after the last renew it saw (default {LEASE_SECONDS:g})",
    )
    ha.add_argument(
        "--leader-election-renew-deadline-seconds",
        type=float,
        default=RENEW_DEADLINE_SECONDS,
        metavar="S",
        help="the leader exits when it could not renew for this long "
        f"(default {RENEW_DEADLINE_SECONDS:g})",
    )
    ha.add_argument(
        "--leader-election-retry-seconds",
        type=float,
        default=RETRY_SECONDS,
        metavar="S",
        help=f"renew and standby poll period (default {RETRY_SECONDS:g})",
    )
    ha.add_argument(
        "--leader-election-create-margin-seconds",
        type=float,
        default=CREATE_MARGIN_SECONDS,
        metavar="S",
        help="a create must end this long before the renew deadline "
        f"(default {CREATE_MARGIN_SECONDS:g})",
    )
    run.add_argument(
        "--log-level",
        default=os.environ.get("GPUPOD_LOG_LEVEL", "INFO").upper(),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log level (default INFO, or $GPUPOD_LOG_LEVEL)",
    )
    run.set_defaults(func=_run)

    sim = sub.add_parser("simulator", help="serve a local Yotta Pods API v2 for tests and demos")
    simulator_cli.add_arguments(sim)
    sim.set_defaults(func=simulator_cli.main)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
