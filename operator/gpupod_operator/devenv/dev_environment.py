"""The local development environment under ``.dev/``: ``make dev-up``/``dev-down``/``run``.

``up`` starts etcd, kube-apiserver, kube-controller-manager and the Yotta simulator *detached*
(they outlive the command), installs ``crds/``, and writes::

    .dev/state.json    what runs (PIDs with their start times, ports); used by down/status
    .dev/kubeconfig    admin kubeconfig (token, system:masters)
    .dev/env           `source .dev/env`: KUBECONFIG, YOTTA_API_URL, YOTTA_API_KEY, PATH
    .dev/logs/         one log per process
    .dev/controlplane/ certificates, tokens, etcd data, kube-controller-manager's kubeconfig

``run`` builds the same environment in the foreground (or reuses a running ``up`` one), adds the
operator, applies ``examples/gpupod.yaml``, shows it reach ``Running`` and stays until Ctrl-C,
then stops every process it started.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .certs import write_private
from .controlplane import ApiError, ControlPlane, KubectlError
from .node import LocalNode
from .operator_process import OperatorProcess
from .paths import kubectl_path, venv_bin_dir
from .process import ManagedProcess
from .simulator_process import SimulatorProcess, new_api_key
from .state import StateFile

__all__ = ["DevEnvironment", "Terminated"]

PAUSE_PATCH = '{"spec":{"paused":true}}'
Printer = Callable[[str], None]


class Terminated(BaseException):
    """SIGTERM/SIGHUP arrived: unwind like Ctrl-C so every child gets stopped."""


def _print(message: str) -> None:
    """Best effort: a closed stdout (`... | head`) must never abort a start or a cleanup."""
    try:
        print(message, flush=True)
    except OSError:
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - replaces stdout for good


def _clock() -> str:
    return datetime.now().strftime("%H:%M:%S")


@dataclass
class _Running:
    """What this command started or attached to."""

    control_plane: ControlPlane
    simulator_url: str
    api_key: str
    simulator: SimulatorProcess | None = None
    reused: bool = False
    node: LocalNode | None = None


class DevEnvironment:
    def __init__(self, root: Path, *, out: Printer = _print) -> None:
        self.root = root
        self.dev_dir = root / ".dev"
        self.state_path = self.dev_dir / "state.json"
        self.env_path = self.dev_dir / "env"
        self.kubeconfig_path = self.dev_dir / "kubeconfig"
        self.logs_dir = self.dev_dir / "logs"
        self.control_plane_dir = self.dev_dir / "controlplane"
        self.crds_dir = root / "crds"
        self.example_path = root / "examples" / "gpupod.yaml"
        self.out = out
        self._tracked_state: StateFile | None = None

    def _rel(self, path: Path) -> str:
        with contextlib.suppress(ValueError):
            return str(path.relative_to(self.root))
        return str(path)

    # ===================================================================== up

    def up(self, *, with_simulator: bool = True, with_node: bool = False) -> int:
        state = StateFile.load(self.state_path)
        if state is not None:
            verdict = self._existing(state)
            if verdict is not None:
                return verdict
        started = time.monotonic()
        running = self._start(mode="up", with_simulator=with_simulator, with_node=with_node)
        self.out(f"dev environment up in {time.monotonic() - started:.1f}s.")
        self._print_summary(running.control_plane, running.simulator_url)
        return 0

    def _existing(self, state: StateFile) -> int | None:
        """Handle a state file left by an earlier command; None means "start afresh"."""
        records, live = state.records, state.live_records()
        if state.mode == "run" and state.owner_alive:
            self.out(
                f"`make run` (pid {state.data.get('owner_pid')}) is using {self._rel(self.dev_dir)}"
                "; stop it with Ctrl-C first."
            )
            return 1
        if state.complete and records and len(live) == len(records):
            self.out(f"dev environment already running ({len(live)} processes); nothing to do.")
            plane = state.data.get("control_plane") or {}
            sim = state.data.get("simulator") or {}
            self._print_next_steps(str(plane.get("server", "?")), sim.get("url"))
            return 0
        if live:
            names = ", ".join(f"{r.name} (pid {r.pid})" for r in live)
            self.out(f"found a partial environment; stopping {names} and starting afresh.")
        self._stop_records(state)
        state.remove()
        return None

    # ===================================================================== down

    def down(self) -> int:
        state = StateFile.load(self.state_path)
        if state is None:
            self.out("dev environment not running (no .dev/state.json); nothing to stop.")
            return 0
        if state.owner_alive and state.mode == "run":
            self.out(
                f"note: `make run` (pid {state.data.get('owner_pid')}) will lose its processes."
            )
        node = state.data.get("node")
        if node and state.data.get("control_plane"):
            # While kubelet and the apiserver still run: pods go (CNI DEL), then the Node.
            self.out("draining the local node ...")
            LocalNode.drain(ControlPlane.attach(state.data["control_plane"]), str(node["name"]))
        stopped = self._stop_records(state)
        if node:
            LocalNode.cleanup_host(Path(node["run_dir"]))
            shutil.rmtree(node["run_dir"], ignore_errors=True)
        left = [r for r in state.records if r.running]
        if left:
            names = ", ".join(f"{r.name} (pid {r.pid})" for r in left)
            self.out(f"could not stop: {names}")
            return 1
        state.remove()
        self._remove_generated_files()
        self.out(f"dev environment down: stopped {stopped} process(es); none left.")
        return 0

    def _stop_records(self, state: StateFile) -> int:
        count = 0
        for record in reversed(state.records):
            if record.running:
                count += 1
            ManagedProcess.adopt(record).stop(grace=15.0)
        return count

    def _remove_generated_files(self) -> None:
        self.env_path.unlink(missing_ok=True)
        self.kubeconfig_path.unlink(missing_ok=True)
        shutil.rmtree(self.control_plane_dir, ignore_errors=True)
        # Called only once the node's processes stopped and its host state was cleaned.
        shutil.rmtree(self.dev_dir / "node", ignore_errors=True)

    # ===================================================================== status

    def status(self) -> int:
        state = StateFile.load(self.state_path)
        if state is None:
            self.out("dev environment not running.")
            return 1
        self.out(
            f"dev environment ({state.mode}, started {state.data.get('created', '?')}, "
            f"state {self._rel(self.state_path)}):"
        )
        plane = state.data.get("control_plane") or {}
        sim = state.data.get("simulator") or {}
        urls = {"kube-apiserver": plane.get("server"), "etcd": plane.get("etcd_url")}
        if sim:
            urls["simulator"] = sim.get("url")
        healthy = bool(state.records) and (state.complete or state.owner_alive)
        if not state.complete:
            why = "still starting" if state.owner_alive else "the command starting it died"
            self.out(f"  incomplete: {why}")
        for record in state.records:
            alive = record.running
            healthy = healthy and alive
            where = urls.get(record.name) or ""
            self.out(
                f"  {record.name:<23} pid {record.pid:<8} {'running' if alive else 'DEAD':<8} "
                f"{where:<28} log {self._rel(Path(record.log_path))}"
            )
        if plane and healthy:
            try:
                readyz = ControlPlane.attach(plane).get_text("/readyz").strip()
            except (ApiError, OSError) as exc:
                readyz = f"not ready ({exc})"
            self.out(f"  /readyz: {readyz}")
        if not healthy:
            self.out("  degraded: `make dev-down && make dev-up` starts afresh.")
        return 0 if healthy else 1

    # ===================================================================== run

    def run(self, *, timeout: float = 180.0, with_node: bool = False) -> int:
        state = StateFile.load(self.state_path)
        reuse = (
            state is not None
            and state.mode == "up"
            and bool(state.records)
            and len(state.live_records()) == len(state.records)
            and state.complete
            and state.data.get("simulator") is not None
        )
        running: _Running | None = None
        operator: OperatorProcess | None = None
        try:
            if reuse and state is not None:
                self.out("reusing the environment of `make dev-up` (it stays up afterwards).")
                running = self._attach(state)
            else:
                no_simulator = state is not None and not state.data.get("simulator")
                if no_simulator and state is not None and state.complete and state.live_records():
                    self.out("the running dev environment has no simulator; run `make dev-down`")
                    return 1
                if state is not None:
                    verdict = self._existing(state)
                    if verdict is not None:
                        return verdict
                running = self._start(mode="run", with_simulator=True, with_node=with_node)
            operator = self._start_operator(running)
            return self._demo(running, operator, timeout)
        except (KeyboardInterrupt, Terminated):
            self.out("\nstopping...")
            return 0
        finally:
            self._teardown(running, operator)

    def _attach(self, state: StateFile) -> _Running:
        plane = ControlPlane.attach(state.data["control_plane"])
        state.track_processes()  # a killed `run` leaves the operator to `make dev-down`
        self._tracked_state = state
        return _Running(
            control_plane=plane,
            simulator_url=str(state.data["simulator"]["url"]),
            api_key=str(state.data["dev_api_key"]),
            reused=True,
        )

    def _start_operator(self, running: _Running) -> OperatorProcess:
        self.out(f"[{_clock()}] starting the operator (log {self._rel(self._operator_log)})")
        operator = OperatorProcess(
            self.kubeconfig_path,
            running.simulator_url,
            running.api_key,
            log_level="INFO",
            log_path=self._operator_log,
        )
        return operator.start()

    @property
    def _operator_log(self) -> Path:
        return self.logs_dir / "operator.log"

    def _demo(self, running: _Running, operator: OperatorProcess, timeout: float) -> int:
        plane = running.control_plane
        if not self.example_path.is_file():
            self.out(f"{self._rel(self.example_path)} is missing; nothing to apply.")
            return 1
        self.out(f"[{_clock()}] kubectl apply -f {self._rel(self.example_path)}")
        try:
            applied = json.loads(
                plane.kubectl("apply", "-f", str(self.example_path), "-o", "json").stdout
            )
        except KubectlError as exc:
            self.out(f"apply failed: {exc.stderr.strip()}")
            if not any(self.crds_dir.glob("*.y*ml")):
                self.out(f"(no CRDs in {self._rel(self.crds_dir)} yet)")
            return 1
        objects = applied.get("items", [applied]) if applied.get("kind") == "List" else [applied]
        pods = [o for o in objects if o.get("kind") == "GpuPod"]
        if not pods:
            self.out(f"{self._rel(self.example_path)} holds no GpuPod.")
            return 1
        ok = all(self._wait_running(plane, operator, pod, timeout) for pod in pods)
        listing = plane.kubectl("get", "gpupods", "-A", "-o", "wide", check=False)
        self.out("")
        self.out("$ kubectl get gpupods -A -o wide")
        self.out((listing.stdout or listing.stderr).rstrip())
        self.out("")
        if not ok:
            self.out(f"operator log tail ({self._rel(self._operator_log)}):")
            self.out(operator.log_tail(30))
            return 1
        name = pods[0]["metadata"]["name"]
        namespace = pods[0]["metadata"].get("namespace", "default")
        self._print_next_steps(plane.server, running.simulator_url, name, namespace, run=True)
        while True:
            time.sleep(0.5)
            for process, label in (
                (operator.process, "operator"),
                *((p, p.name) for p in plane.processes),
                *(((running.simulator.process, "simulator"),) if running.simulator else ()),
            ):
                if not process.running:
                    self.out(f"{label} exited unexpectedly; last log lines:")
                    self.out(process.log_tail(30))
                    return 1

    def _wait_running(
        self, plane: ControlPlane, operator: OperatorProcess, obj: dict[str, Any], timeout: float
    ) -> bool:
        metadata = obj["metadata"]
        name, namespace = metadata["name"], metadata.get("namespace", "default")
        path = f"/apis/{obj['apiVersion']}/namespaces/{namespace}/gpupods/{name}"
        started = time.monotonic()
        last = ("-", "")  # (phase, message) last printed
        self.out(f"[{_clock()}] waiting for gpupod/{name} (namespace {namespace}) to be Running")
        while True:
            status = plane.request("GET", path).get("status") or {}
            phase = str(status.get("phase") or "-")
            message = str(status.get("message") or "")
            if (phase, message) != last:
                change = f"{last[0]} -> {phase}" if last[0] != phase else phase
                detail = f" ({message})" if message else ""
                elapsed = time.monotonic() - started
                self.out(f"[{_clock()}] +{elapsed:5.1f}s phase {change}{detail}")
                last = (phase, message)
            if phase == "Running":
                return True
            if phase in ("Failed", "Lost"):
                return False
            if not operator.running:
                self.out("the operator exited.")
                return False
            if time.monotonic() - started > timeout:
                self.out(f"gave up after {timeout:g}s")
                return False
            time.sleep(0.25)

    def _teardown(self, running: _Running | None, operator: OperatorProcess | None) -> None:
        if operator is not None:
            operator.stop()
        if self._tracked_state is not None:
            self._tracked_state.stop_tracking()
        if running is None or running.reused:
            return
        self._stop_started(running)
        self.out("stopped every process `run` started.")

    # ===================================================================== shared

    def _start(self, *, mode: str, with_simulator: bool, with_node: bool = False) -> _Running:
        """Start control plane (+ simulator) detached, recording each child as it starts."""
        self.dev_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.logs_dir, ignore_errors=True)
        shutil.rmtree(self.control_plane_dir, ignore_errors=True)
        state = StateFile(self.state_path)
        state.create(mode)
        state.track_processes()
        api_key = new_api_key("dev")
        running: _Running | None = None
        simulator: SimulatorProcess | None = None
        node: LocalNode | None = None
        plane = ControlPlane(self.control_plane_dir, log_dir=self.logs_dir)
        try:
            self.out(f"[{_clock()}] starting etcd + kube-apiserver + kube-controller-manager ...")
            t0 = time.monotonic()
            plane.start(wait_controller_manager=False)  # it gets healthy while we go on
            state.update(control_plane=plane.state(), dev_api_key=api_key)
            self.out(
                f"[{_clock()}] control plane ready at {plane.server} ({time.monotonic() - t0:.1f}s)"
            )
            crds = plane.apply_crds(self.crds_dir)
            if crds:
                self.out(f"[{_clock()}] CRDs established: {', '.join(crds)}")
            else:
                self.out(f"[{_clock()}] no CRDs in {self._rel(self.crds_dir)} yet; none installed")
            shutil.copyfile(plane.admin_kubeconfig, self.kubeconfig_path)
            self.kubeconfig_path.chmod(0o600)
            if with_node:
                node = self._start_node(plane, state)
            simulator_url = ""
            if with_simulator:
                self.out(f"[{_clock()}] starting the Yotta simulator ...")
                # With the node, on the bridge's host address: Pods and the host both reach it.
                simulator = SimulatorProcess(
                    api_key=api_key,
                    log_path=self.logs_dir / "simulator.log",
                    host=node.gateway if node is not None else "127.0.0.1",
                ).start()
                simulator_url = simulator.url
                state.update(simulator={"url": simulator.url, "port": simulator.port})
                self.out(f"[{_clock()}] simulator ready at {simulator.url}")
            plane.wait_controller_manager()
            self.out(f"[{_clock()}] kube-controller-manager healthy")
            node_url = simulator_url if node is not None else ""
            self._write_env_file(simulator_url, api_key, node_yotta_url=node_url)
            state.update(complete=True)
            running = _Running(plane, simulator_url, api_key, simulator=simulator, node=node)
            return running
        except BaseException:
            self._stop_started(_Running(plane, "", api_key, simulator=simulator, node=node))
            self.out("start failed; stopped what was started.")
            raise
        finally:
            if mode == "up" or running is None:
                state.stop_tracking()
            else:
                self._tracked_state = state

    def _start_node(self, plane: ControlPlane, state: StateFile) -> LocalNode:
        self.out(f"[{_clock()}] starting the local node (containerd, kube-scheduler, kubelet) ...")
        t0 = time.monotonic()
        node = LocalNode(self.dev_dir / "node", plane, log_dir=self.logs_dir)
        state.update(node=node.state())
        try:
            node.start()
        except BaseException:
            node.stop()
            raise
        self.out(f"[{_clock()}] node {node.name} Ready ({time.monotonic() - t0:.1f}s)")
        return node

    def _stop_started(self, running: _Running) -> None:
        try:
            if running.node is not None:
                running.node.stop()
            if running.simulator is not None:
                running.simulator.stop()
            running.control_plane.stop()
        finally:
            state = StateFile.load(self.state_path)
            if state is not None and not state.live_records():
                state.remove()
                self._remove_generated_files()

    def _write_env_file(self, simulator_url: str, api_key: str, node_yotta_url: str = "") -> None:
        path_dirs = [str(venv_bin_dir())]
        with contextlib.suppress(FileNotFoundError):
            kubectl_dir = str(kubectl_path().parent)
            if kubectl_dir not in path_dirs:
                path_dirs.append(kubectl_dir)
        lines = [
            "# Generated by `python -m gpupod_operator.devenv` (make dev-up / make run).",
            "# Use it with: source .dev/env",
            f"export KUBECONFIG={shlex.quote(str(self.kubeconfig_path))}",
        ]
        if simulator_url:
            lines += [
                f"export YOTTA_API_URL={shlex.quote(simulator_url)}",
                "# A throw-away key for the local simulator only.",
                f"export YOTTA_API_KEY={shlex.quote(api_key)}",
                "unset YOTTA_API_KEY_FILE",
            ]
        if node_yotta_url:
            lines += [
                "# The simulator as Pods on the local node reach it (NODE=1).",
                f"export GPUPOD_NODE_YOTTA_API_URL={shlex.quote(node_yotta_url)}",
            ]
        lines.append(f'export PATH={shlex.quote(":".join(path_dirs))}:"$PATH"')
        write_private(self.env_path, ("\n".join(lines) + "\n").encode())

    def _print_summary(self, plane: ControlPlane, simulator_url: str) -> None:
        self._print_next_steps(plane.server, simulator_url or None)

    def _print_next_steps(
        self,
        server: str,
        simulator_url: str | None,
        name: str | None = None,
        namespace: str | None = None,
        *,
        run: bool = False,
    ) -> None:
        env = self._rel(self.env_path)
        lines = ["", "Next:", f"  source {env}            # KUBECONFIG, YOTTA_API_URL/KEY, PATH"]
        lines.append("  kubectl get --raw /readyz")
        if run and name:
            ns = f" -n {namespace}" if namespace and namespace != "default" else ""
            lines += [
                "  kubectl get gpupods -A -o wide",
                f"  kubectl describe gpupod {name}{ns}",
                f"  kubectl patch gpupod {name}{ns} --type merge -p '{PAUSE_PATCH}'",
            ]
        elif simulator_url:
            lines += [
                "  gpupod-operator run -A    # the operator, against the simulator",
                "  kubectl apply -f examples/gpupod.yaml && kubectl get gpupods -w",
            ]
        lines += ["", f"kube-apiserver: {server}"]
        if simulator_url:
            lines.append(
                f"simulator:      {simulator_url}  (GET /_sim/pods, /_sim/stats; no key needed)"
            )
        lines.append(f"logs:           {self._rel(self.logs_dir)}/")
        if run:
            lines.append(f"operator log:   {self._rel(self._operator_log)}")
            lines += ["", "Press Ctrl-C to stop everything `make run` started."]
        else:
            lines += ["", "Stop it with: make dev-down"]
        for line in lines:
            self.out(line)
