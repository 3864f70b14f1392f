"""The local node, once per session: containerd, kubelet, kube-scheduler, CNI bridge and a real
control plane; the teardown proves the host is left as it was."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpupod_operator.devenv.controlplane import ControlPlane
from gpupod_operator.devenv.node import BRIDGE, SYSCTLS, LocalNode
from gpupod_operator.devenv.service_route import CHAIN


def _sysctls() -> dict[str, str]:
    return {k: (Path("/proc/sys") / k).read_text().strip() for k in SYSCTLS}


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ControlPlane, LocalNode]]:
    missing = [t for t in ("containerd", "runc", "ctr", "buildah") if shutil.which(t) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: apt-get install containerd runc buildah")
    built = subprocess.run(["bash", "hack/build-image.sh"], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-3000:]
    before = _sysctls()
    run_dir = tmp_path_factory.mktemp("node")
    plane = ControlPlane(run_dir / "cp").start()
    local = LocalNode(run_dir / "node", plane, log_dir=run_dir / "logs")
    try:
        local.start()
        yield plane, local
    finally:
        try:
            local.stop()
        finally:
            plane.stop()
        assert not any(p.running for p in local.processes)
        shims = subprocess.run(["pgrep", "-f", str(local.socket)], capture_output=True, text=True)
        assert not shims.stdout.strip(), f"shims left: {shims.stdout}"
        assert str(run_dir) not in Path("/proc/self/mounts").read_text()
        gone = subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True)
        assert gone.returncode != 0, f"{BRIDGE} left"
        assert _sysctls() == before
        nat = subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True, text=True)
        assert CHAIN not in nat.stdout, "the kubernetes Service rule was left"
