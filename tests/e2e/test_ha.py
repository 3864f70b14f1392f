"""High availability (issue 13): two operator processes, one leader by Lease, no duplicate pod.

Each operator serves its own metrics; `gpupod_leader` there says which one leads. The timings are
short (flags below) so that a handover after a SIGKILL takes seconds, not a minute:
lease 6 s, renew deadline 4 s, retry 0.5 s, Yotta request timeout 2 s, create margin 1 s (a
create may start only within 1 s of a renew).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from gpupod_operator.devenv.controlplane import ControlPlane
from gpupod_operator.devenv.operator_process import OperatorProcess
from gpupod_operator.devenv.process import free_port
from gpupod_operator.devenv.simulator_process import SimulatorProcess

from . import survival as sv
from .conftest import StartOperator
from .gpupods import wait_for

pytestmark = pytest.mark.e2e

simulator = sv.simulator_fixture()

LEASE, RENEW_DEADLINE, RETRY, REQUEST_TIMEOUT, MARGIN = 6.0, 4.0, 0.5, 2.0, 1.0
LEASE_NAME = "gpupod-operator"
# Scrapes are 0.1 s apart and two busy cores delay processes a little: allowance on top.
SLACK = 1.5
_HOP_HEADERS = ("content-length", "connection", "transfer-encoding", "content-encoding")


def operator_args(namespace: str, metrics_port: int, short: bool = True) -> list[str]:
    common = [
        "--sync-interval",
        "2",
        "--fast-sync-interval",
        "0.5",
        "--request-timeout",
        str(REQUEST_TIMEOUT),
        "--leader-election",
        "--leader-election-namespace",
        namespace,
        *sv.metrics_args(metrics_port),
    ]
    if not short:
        return common  # the defaults: lease 60 s, renew deadline 40 s, retry 2 s, margin 5 s
    return [
        *common,
        "--leader-election-lease-seconds",
        str(LEASE),
        "--leader-election-renew-deadline-seconds",
        str(RENEW_DEADLINE),
        "--leader-election-retry-seconds",
        str(RETRY),
        "--leader-election-create-margin-seconds",
        str(MARGIN),
    ]


class Replica:
    """One operator process and its metrics port (kept across restarts)."""

    def __init__(
        self,
        start: StartOperator,
        namespace: str,
        env: dict[str, str] | None = None,
        short: bool = True,
    ) -> None:
        self.port = free_port()
        self.op: OperatorProcess = start(args=operator_args(namespace, self.port, short), env=env)

    def leading(self) -> bool:
        if not self.op.running:
            return False
        try:
            text = sv.scrape(f"http://127.0.0.1:{self.port}/metrics")
        except httpx.HTTPError:
            return False
        return sv.metric(text, "gpupod_leader") == 1.0


def leader_of(replicas: list[Replica]) -> Replica | None:
    leading = [r for r in replicas if r.leading()]
    assert len(leading) <= 1, "two processes report gpupod_leader 1 at once"
    return leading[0] if leading else None


def wait_leader(replicas: list[Replica], timeout: float) -> Replica:
    return wait_for(lambda: leader_of(replicas), timeout, "a leader", interval=0.1)


def lease(cp: ControlPlane, namespace: str) -> dict[str, Any]:
    path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{LEASE_NAME}"
    return cp.request("GET", path)


def creates(sim: SimulatorProcess) -> int:
    return sum(sim.stats()["requests"].get("create", {}).values())


# --------------------------------------------------------------------------- 1: SIGKILL


def test_sigkill_of_the_leader_mid_create_hands_over_without_duplicates(
    control_plane: ControlPlane,
    namespace: str,
    simulator: SimulatorProcess,
    start_operator: StartOperator,
    request: pytest.FixtureRequest,
) -> None:
    cluster = sv.Cluster(control_plane, namespace)
    simulator.set_faults(["create:lost:0.25", "create:500:0.1", "*:500:0.05", "delete:lost:0.2"])
    replicas = [Replica(start_operator, namespace), Replica(start_operator, namespace)]
    wait_leader(replicas, LEASE + 10)
    names = [f"ha-{i:02d}" for i in range(30)]
    batches = [names[i::5] for i in range(5)]
    handovers: list[float] = []
    for batch in batches[:4]:
        leader = wait_leader(replicas, LEASE + 10)
        before = creates(simulator)
        for name in batch:
            cluster.create(name)
        # mid-create: right after a POST reached the simulator
        assert sv.poll_until(lambda n=before: creates(simulator) > n, timeout=10), "no create seen"
        leader.op.kill()
        killed = time.monotonic()
        standby = next(r for r in replicas if r is not leader)
        wait_for(standby.leading, LEASE + RETRY + 10, "the standby to lead", interval=0.1)
        handovers.append(time.monotonic() - killed)
        leader.op.start()  # back as a standby (its liveness answers before it leads)
        assert not leader.leading()
    for name in batches[4]:
        cluster.create(name)

    def all_running() -> bool:
        objs = cluster.all()
        return len(objs) == len(names) and all(sv.settled(o, "Running") for o in objs.values())

    wait_for(all_running, 120, "all GpuPods Running", interval=0.5)
    created = sv.audit_running(cluster, simulator, names)

    # delete, with one more kill of the leader during the deletes
    leader = wait_leader(replicas, LEASE + 10)
    for name in names[:15]:
        cluster.delete(name)
    leader.op.kill()
    for name in names[15:]:
        cluster.delete(name)
    leader.op.start()
    wait_for(lambda: not cluster.all(), 120, "every GpuPod gone", interval=0.5)
    gone = sv.audit_gone(cluster, simulator)
    sv.report(
        request,
        "ha-sigkill",
        {
            "gpupods": len(names),
            "kills": len(handovers) + 1,
            "handover_seconds_after_sigkill": [round(h, 2) for h in handovers],
            "remote_pods_per_gpupod": created.figures()["remote_pods_per_gpupod"],
            "create_requests": sv.results_of(simulator, "create"),
            "faults_injected": sv.faults_injected(simulator),
            "leaks": len(created.leaks) + len(gone.leaks),
            "lease_transitions": lease(control_plane, namespace)["spec"].get("leaseTransitions"),
        },
    )
    # within the lease duration plus one poll (and scheduling slack) of the kill
    assert max(handovers) <= LEASE + RETRY + SLACK, handovers


# --------------------------------------------------------------------------- 2: SIGSTOP


class CountingProxy:
    """An HTTP forwarder to the simulator for ONE operator: every request it receives is
    counted on arrival, before it is forwarded (so a request whose answer never comes counts
    too)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.arrivals: list[tuple[float, str, str]] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                with proxy._lock:
                    proxy.arrivals.append((time.monotonic(), self.command, self.path))
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("host", "content-length", "connection")
                }
                try:
                    answer = httpx.request(
                        self.command, proxy.target + self.path, content=body, headers=headers
                    )
                except httpx.HTTPError:
                    self.close_connection = True
                    return
                self.send_response(answer.status_code)
                for k, v in answer.headers.items():
                    if k.lower() not in _HOP_HEADERS:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _forward

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def since(self, t: float) -> list[tuple[float, str, str]]:
        with self._lock:
            return [a for a in self.arrivals if a[0] >= t]


@pytest.fixture
def proxy(simulator: SimulatorProcess) -> Iterator[CountingProxy]:
    p = CountingProxy(simulator.url)
    p.thread.start()
    try:
        yield p
    finally:
        p.server.shutdown()
        p.server.server_close()


def test_a_leader_frozen_past_its_lease_makes_no_yotta_call_when_it_wakes(
    control_plane: ControlPlane,
    namespace: str,
    simulator: SimulatorProcess,
    start_operator: StartOperator,
    proxy: CountingProxy,
    request: pytest.FixtureRequest,
) -> None:
    cluster = sv.Cluster(control_plane, namespace)
    old = Replica(start_operator, namespace, env={"YOTTA_API_URL": proxy.url})
    wait_for(old.leading, LEASE + 10, "the first operator to lead", interval=0.1)
    new = Replica(start_operator, namespace)
    names = [f"stop-{i:02d}" for i in range(8)]
    for name in names[:4]:
        cluster.create(name)
    wait_for(lambda: all(sv.settled(cluster.get(n), "Running") for n in names[:4]), 60, "4 Running")
    # Work for the frozen leader: new GpuPods, a pause, a delete; then freeze it mid-way.
    before = len(proxy.arrivals)
    for name in names[4:]:
        cluster.create(name)
    cluster.patch_spec(names[0], paused=True)
    cluster.delete(names[1])
    sv.poll_until(lambda: len(proxy.arrivals) > before, timeout=5)
    old.op.process.suspend()
    frozen = time.monotonic()
    wait_for(new.leading, LEASE + RETRY + 10, "the other operator to lead", interval=0.1)
    took_over = time.monotonic() - frozen
    # the new leader does the work: nothing is left for the old one to "finish"
    live = [n for n in names if n != names[1]]
    wait_for(
        lambda: all(
            sv.settled(cluster.get(n), "Paused" if n == names[0] else "Running") for n in live
        ),
        90,
        "the new leader to converge",
        interval=0.5,
    )
    woke = time.monotonic()
    old.op.process.resume()
    assert old.op.process.wait(timeout=RENEW_DEADLINE + 10), "the old leader did not exit"
    calls_after_wake = proxy.since(woke)
    exit_code = old.op.process.returncode
    assert sv.poll_until(lambda: cluster.get(names[1]) is None, 60)
    created = sv.audit_running(cluster, simulator, live, paused=(names[0],))
    sv.report(
        request,
        "ha-sigstop",
        {
            "takeover_seconds_after_sigstop": round(took_over, 2),
            "old_leader_yotta_calls_after_sigcont": len(calls_after_wake),
            "old_leader_exit_code": exit_code,
            "remote_pods_per_gpupod": created.figures()["remote_pods_per_gpupod"],
        },
    )
    assert calls_after_wake == [], calls_after_wake
    assert exit_code == 1
    assert "leader election lost" in old.op.process.log_text()


# --------------------------------------------------------------------------- 3: SIGTERM


@pytest.mark.parametrize("timings", ["short", "default"])
def test_a_rolling_restart_hands_over_in_under_5_seconds(
    timings: str,
    control_plane: ControlPlane,
    namespace: str,
    simulator: SimulatorProcess,
    start_operator: StartOperator,
    request: pytest.FixtureRequest,
) -> None:
    cluster = sv.Cluster(control_plane, namespace)
    short = timings == "short"
    replicas = [Replica(start_operator, namespace, short=short) for _ in range(2)]
    names = [f"roll-{i:02d}" for i in range(6)]
    for name in names[:3]:
        cluster.create(name)
    times: list[float] = []
    for round_ in range(2):
        leader = wait_leader(replicas, LEASE + 10)
        standby = next(r for r in replicas if r is not leader)
        holder = lease(control_plane, namespace)["spec"]["holderIdentity"]
        stopper = threading.Thread(target=leader.op.stop)  # SIGTERM, then waits for the exit
        sent = time.monotonic()
        stopper.start()
        wait_for(standby.leading, LEASE + 10, "the standby to lead", interval=0.05)
        times.append(time.monotonic() - sent)
        stopper.join(30)
        assert leader.op.process.returncode == 0
        assert lease(control_plane, namespace)["spec"]["holderIdentity"] != holder
        cluster.create(names[3 + round_])
        leader.op.start()  # the replacement pod comes up as a standby
    cluster.create(names[5])
    wait_for(lambda: all(sv.settled(cluster.get(n), "Running") for n in names), 60, "all Running")
    created = sv.audit_running(cluster, simulator, names)
    sv.report(
        request,
        "ha-sigterm",
        {
            "timings": timings,
            "handover_seconds_after_sigterm": [round(t, 2) for t in times],
            "remote_pods_per_gpupod": created.figures()["remote_pods_per_gpupod"],
        },
    )
    assert max(times) < 5.0, times
