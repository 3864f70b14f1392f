"""An opt-in local node (``NODE=1 make dev-up``): containerd, kubelet, kube-scheduler, a CNI
bridge, next to the control plane of :mod:`.controlplane`.

The recipe, versions and pitfalls are those of the real-node spike (``reference/real-node.md``):
our own containerd 1.6 (Debian) with its own socket and directories, cgroupfs on cgroup v1, no
``oom_score_adj`` below 0 (no CAP_SYS_RESOURCE), a CNI bridge on 10.244.0.0/24 with its own
config directory, a node identity ``system:node:<name>`` from the dev client CA, and a sandbox
image built here without a registry. Every process is started and stopped by PID; the teardown
drains pods through the API first (so kubelet runs CNI DEL), then removes what containerd and
kubelet leave on the host (shims, mounts, the bridge, kubepods cgroups, sysctls). Pods reach
the apiserver through the `kubernetes` Service (10.0.0.1:443) by one DNAT rule
(:mod:`.service_route`), so in-cluster logins work as in any cluster.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from . import service_route
from .controlplane import ApiError, ControlPlane
from .paths import buildah_command, control_plane_bin_dir, repo_root
from .process import ManagedProcess, free_port

__all__ = ["NODE_BINARIES", "LocalNode", "node_ip"]

NODE_BINARIES = ("kubelet", "kube-scheduler")
BRIDGE = "gpupod0"
POD_SUBNET = "10.244.0.0/24"
#: The host's address on the bridge: Pods reach host services (the simulator) there.
GATEWAY = "10.244.0.1"
PAUSE_IMAGE = "localhost/pause:3.10"
#: Sysctls kubelet and the bridge plugin change; the teardown puts the old values back.
KUBELET_HEALTHZ_PORT = 10248  # fixed, like 10250: one node per machine
SYSCTLS = ("kernel/panic", "kernel/panic_on_oops", "vm/overcommit_memory", "net/ipv4/ip_forward")
#: iptables chains kubelet adds and leaves (KUBE-FIREWALL is jumped to from INPUT and OUTPUT).
KUBELET_CHAINS = ("KUBE-FIREWALL", "KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT")
IPTABLES_TABLES = ("filter", "nat", "mangle")


def _chains(table: str) -> set[str]:
    """The chains of one iptables table (empty if iptables is missing or fails)."""
    try:
        out = subprocess.run(
            ["iptables", "-t", table, "-S"], capture_output=True, text=True, timeout=30
        ).stdout
    except OSError:
        return set()
    return {line.split()[1] for line in out.splitlines() if line.startswith("-N ")}


#: The sandbox process: waits for SIGINT/SIGTERM and reaps children (what pause does).
PAUSE_SOURCE = """package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	children := make(chan os.Signal, 16)
	signal.Notify(children, syscall.SIGCHLD)
	for {
		select {
		case <-stop:
			return
		case <-children:
			for {
				pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
		}
	}
}
"""


def node_ip() -> str:
    """The address of the default route's interface (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("203.0.113.1", 9))  # TEST-NET-3: only routed, never sent
        address: str = sock.getsockname()[0]
    return address


def _insecure_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _run(*argv: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {result.returncode}: {result.stderr.strip()}")
    return result


class LocalNode:
    """containerd + kubelet + kube-scheduler under ``run_dir`` against ``plane``."""

    def __init__(self, run_dir: Path, plane: ControlPlane, *, log_dir: Path) -> None:
        self.repo = repo_root()
        self.run_dir = run_dir
        self.plane = plane
        self.log_dir = log_dir
        self.name = socket.gethostname()
        self.bin_dir = control_plane_bin_dir()
        self.cache_dir = Path(
            os.environ.get("GPUPOD_CACHE", Path.home() / ".cache" / "gpupod-operator")
        )
        self.containerd_dir = run_dir / "containerd"
        self.socket = self.containerd_dir / "containerd.sock"
        self.cni_dir = run_dir / "cni"
        self.kubelet_dir = run_dir / "kubelet"
        self.processes: list[ManagedProcess] = []

    # -- start ----------------------------------------------------------------------------

    def start(self) -> None:
        missing = [b for b in NODE_BINARIES if not (self.bin_dir / b).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{', '.join(missing)} not in {self.bin_dir}: run `NODE=1 make control-plane`"
            )
        self._refuse_a_second_node()
        self.save_sysctls()
        self._create_bridge()
        port = urlparse(self.plane.server).port
        assert port is not None, self.plane.server
        service_route.route(BRIDGE, port)  # the `kubernetes` Service, for in-cluster logins
        self._start_containerd()
        self.ctr("images", "import", str(self._pause_archive()))
        self._import_operator_image()
        self._start_scheduler()
        self._start_kubelet()
        self._wait_node_schedulable()

    @staticmethod
    def _refuse_a_second_node() -> None:
        """One node per machine: a second would share the bridge, the Service's DNAT chain and
        kubelet's fixed ports with the first and break both, in ways that look like TLS or
        routing faults. A kubelet answering on its healthz port means one runs."""
        try:
            socket.create_connection(("127.0.0.1", KUBELET_HEALTHZ_PORT), timeout=2).close()
        except OSError:
            return
        raise RuntimeError(
            f"a kubelet already runs on this machine (127.0.0.1:{KUBELET_HEALTHZ_PORT} accepts): "
            "stop the other local node first (`make dev-down`, or the test run that started it)"
        )

    @property
    def gateway(self) -> str:
        return GATEWAY

    def _create_bridge(self) -> None:
        """The CNI bridge with the host's address, before any Pod, so a host service can listen
        on it (the bridge plugin then finds it as it would have made it)."""
        if _run("ip", "link", "show", BRIDGE, check=False).returncode != 0:
            _run("ip", "link", "add", BRIDGE, "type", "bridge")
        _run("ip", "addr", "replace", f"{GATEWAY}/24", "dev", BRIDGE)
        _run("ip", "link", "set", BRIDGE, "up")

    def save_sysctls(self) -> None:
        """The host settings kubelet changes, as they are before it starts: sysctls, and which
        of kubelet's iptables chains already exist (those are left alone at teardown)."""
        saved = {}
        for key in SYSCTLS:
            with contextlib.suppress(OSError):
                saved[key] = (Path("/proc/sys") / key).read_text().strip()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "sysctls.json").write_text(json.dumps(saved))
        chains = {t: sorted(_chains(t) & set(KUBELET_CHAINS)) for t in IPTABLES_TABLES}
        (self.run_dir / "iptables-before.json").write_text(json.dumps(chains))

    def _start_containerd(self) -> None:
        d = self.containerd_dir
        d.mkdir(parents=True, exist_ok=True)
        (self.cni_dir / "net.d").mkdir(parents=True, exist_ok=True)
        config = f"""version = 2
root = "{d / "root"}"
state = "{d / "state"}"
oom_score = 0
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{self.cni_dir / "net.d"}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d / "opt"}"
"""
        (d / "config.toml").write_text(config)
        cni = {
            "cniVersion": "1.0.0",
            "name": "gpupod-dev",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": True,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_SUBNET}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(self.cni_dir / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        (self.cni_dir / "net.d" / "10-gpupod-dev.conflist").write_text(json.dumps(cni))
        containerd = self._process(
            "containerd", ["/usr/bin/containerd", f"--config={d / 'config.toml'}"]
        )

        def answers() -> bool:
            return self.ctr("version", check=False).returncode == 0

        containerd.wait_ready(answers, 30)

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run("ctr", "-a", str(self.socket), "-n", "k8s.io", *args, check=check)

    def _pause_archive(self) -> Path:
        """A scratch image holding a static pause binary, as a docker-archive, built once."""
        out = self.cache_dir / "images" / "pause-3.10.tar"
        if out.is_file():
            return out
        out.parent.mkdir(parents=True, exist_ok=True)
        work = self.run_dir / "pause-build"
        work.mkdir(parents=True, exist_ok=True)
        (work / "pause.go").write_text(PAUSE_SOURCE)
        env = {**os.environ, "CGO_ENABLED": "0"}
        subprocess.run(
            ["go", "build", "-ldflags", "-s -w", "-o", str(work / "pause"), str(work / "pause.go")],
            check=True,
            env=env,
            capture_output=True,
        )
        buildah = self.buildah()
        container = _run(*buildah, "from", "scratch").stdout.strip()
        try:
            _run(*buildah, "copy", container, str(work / "pause"), "/pause")
            _run(*buildah, "config", "--entrypoint", '["/pause"]', "--cmd", "[]", container)
            _run(*buildah, "commit", "--quiet", container, PAUSE_IMAGE)
        finally:
            _run(*buildah, "rm", container, check=False)
        tmp = out.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        _run(*buildah, "push", PAUSE_IMAGE, f"docker-archive:{tmp}:{PAUSE_IMAGE}")
        tmp.rename(out)
        shutil.rmtree(work, ignore_errors=True)
        return out

    def buildah(self) -> list[str]:
        return buildah_command()

    def _import_operator_image(self) -> None:
        """The image of `make image`, if it was built, as the chart's default image name."""
        chart = self.repo / "deploy" / "helm" / "gpupod-operator" / "Chart.yaml"
        version = str(yaml.safe_load(chart.read_text())["appVersion"])
        image = f"localhost/gpupod-operator:{version}"
        if shutil.which("buildah") is None:
            return
        inspect = _run(*self.buildah(), "inspect", "--type", "image", image, check=False)
        if inspect.returncode == 0:
            self.import_buildah_image(image, f"docker.io/library/gpupod-operator:{version}")

    def import_buildah_image(self, image: str, name: str) -> None:
        """Push a buildah image as a docker-archive named ``name`` and import it here."""
        archive = self.run_dir / "image-import.tar"
        archive.unlink(missing_ok=True)
        _run(*self.buildah(), "push", image, f"docker-archive:{archive}:{name}")
        try:
            self.ctr("images", "import", str(archive))
        finally:
            archive.unlink(missing_ok=True)

    def _start_scheduler(self) -> None:
        kubeconfig = self.run_dir / "kube-scheduler.kubeconfig"
        self.plane.client_cert_kubeconfig(kubeconfig, "system:kube-scheduler")
        port = free_port()
        scheduler = self._process(
            "kube-scheduler",
            [
                str(self.bin_dir / "kube-scheduler"),
                f"--kubeconfig={kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.run_dir / 'scheduler-certs'}",
            ],
        )

        def ready() -> bool:
            url = f"https://127.0.0.1:{port}/readyz"
            with urllib.request.urlopen(url, timeout=2, context=_insecure_tls()) as response:
                return bool(response.status == 200)

        scheduler.wait_ready(ready, 60)

    def _start_kubelet(self) -> None:
        k = self.kubelet_dir
        k.mkdir(parents=True, exist_ok=True)
        kubeconfig = self.run_dir / "kubelet.kubeconfig"
        self.plane.client_cert_kubeconfig(kubeconfig, f"system:node:{self.name}", ["system:nodes"])
        # The dev apiserver authorizes with RBAC only (no Node authorizer).
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "gpupod-dev-system-nodes"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:node",
            },
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:nodes"}
            ],
        }
        with contextlib.suppress(ApiError):
            self.plane.request(
                "POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", binding
            )
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "address": "127.0.0.1",
            "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
            "authorization": {"mode": "AlwaysAllow"},
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": KUBELET_HEALTHZ_PORT,
            "oomScoreAdj": 0,
            "failSwapOn": True,
            "rotateCertificates": False,
            "serverTLSBootstrap": False,
            "podLogsDir": str(k / "pod-logs"),
            "maxPods": 50,
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "5%",
                "imagefs.available": "5%",
            },
            "imageGCHighThresholdPercent": 95,
            "imageGCLowThresholdPercent": 90,
        }
        (k / "config.yaml").write_text(yaml.safe_dump(config))
        kubelet = self._process(
            "kubelet",
            [
                str(self.bin_dir / "kubelet"),
                f"--config={k / 'config.yaml'}",
                f"--kubeconfig={kubeconfig}",
                f"--root-dir={k / 'root'}",
                f"--cert-dir={k / 'pki'}",
                f"--node-ip={node_ip()}",
                "--v=1",
            ],
        )

        def healthy() -> bool:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{KUBELET_HEALTHZ_PORT}/healthz", timeout=2
            ) as response:
                return bool(response.status == 200)

        kubelet.wait_ready(healthy, 60)

    def _wait_node_schedulable(self, timeout: float = 90) -> None:
        """Ready, and the not-ready taint gone (kube-controller-manager removes it)."""
        kubelet = self.processes[-1]

        def schedulable() -> bool:
            try:
                node = self.plane.request("GET", f"/api/v1/nodes/{self.name}")
            except ApiError:
                return False
            conditions = {c["type"]: c["status"] for c in node["status"].get("conditions", [])}
            return conditions.get("Ready") == "True" and not node["spec"].get("taints")

        kubelet.wait_ready(schedulable, timeout)

    def _process(self, name: str, argv: list[str]) -> ManagedProcess:
        process = ManagedProcess(name, argv, log_path=self.log_dir / f"{name}.log").start()
        self.processes.append(process)
        return process

    # -- stop -----------------------------------------------------------------------------

    @staticmethod
    def drain(plane: ControlPlane, name: str, timeout: float = 60) -> None:
        """Delete every Pod (kubelet tears their sandboxes and networks down) and the Node,
        while kubelet and the apiserver still run."""
        with contextlib.suppress(ApiError, OSError):
            plane.kubectl(
                "delete", "pods", "--all", "-A", "--grace-period=1", "--wait=false", check=False
            )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if not plane.request("GET", "/api/v1/pods").get("items"):
                    break
                time.sleep(0.2)
            plane.request("DELETE", f"/api/v1/nodes/{name}")

    @staticmethod
    def cleanup_host(run_dir: Path) -> None:
        """After containerd and kubelet stopped: what they leave on the host."""
        socket_path = str(run_dir / "containerd" / "containerd.sock")
        for entry in Path("/proc").iterdir():  # shims outlive containerd; ours name its socket
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"containerd-shim" in argv[0] and socket_path.encode() in argv:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(entry.name), signal.SIGKILL)
        mounts = [
            line.split()[1]
            for line in Path("/proc/self/mounts").read_text().splitlines()
            if line.split()[1].startswith(str(run_dir)) or "/run/netns/cni-" in line.split()[1]
        ]
        for mount in sorted(mounts, key=len, reverse=True):
            _run("umount", "-l", mount, check=False)
        service_route.unroute()
        _run("ip", "link", "del", BRIDGE, check=False)
        for controller in Path("/sys/fs/cgroup").iterdir():
            kubepods = controller / "kubepods"
            if kubepods.is_dir():
                for directory in sorted(kubepods.rglob("*"), key=lambda p: -len(p.parts)):
                    if directory.is_dir():
                        with contextlib.suppress(OSError):
                            directory.rmdir()
                with contextlib.suppress(OSError):
                    kubepods.rmdir()
        saved = run_dir / "sysctls.json"
        if saved.is_file():
            for key, value in json.loads(saved.read_text()).items():
                with contextlib.suppress(OSError):
                    (Path("/proc/sys") / key).write_text(value)
        before_path = run_dir / "iptables-before.json"
        if before_path.is_file():
            before = json.loads(before_path.read_text())
            for table in IPTABLES_TABLES:
                ours = (_chains(table) & set(KUBELET_CHAINS)) - set(before.get(table, []))
                for chain in sorted(ours):
                    for builtin in ("INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING"):
                        while (
                            _run("iptables", "-t", table, "-D", builtin, "-j", chain, check=False)
                        ).returncode == 0:
                            pass
                    _run("iptables", "-t", table, "-F", chain, check=False)
                    _run("iptables", "-t", table, "-X", chain, check=False)

    def stop(self) -> None:
        """Stop this node's processes (newest first) and clean the host (for a failed start)."""
        if self.kubelet_running:
            LocalNode.drain(self.plane, self.name, timeout=20)
        for process in reversed(self.processes):
            process.stop(grace=10)
        LocalNode.cleanup_host(self.run_dir)

    @property
    def kubelet_running(self) -> bool:
        return any(p.name == "kubelet" and p.running for p in self.processes)

    def state(self) -> dict[str, Any]:
        return {"name": self.name, "run_dir": str(self.run_dir), "socket": str(self.socket)}
