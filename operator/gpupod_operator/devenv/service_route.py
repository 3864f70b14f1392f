"""The `kubernetes` Service for Pods on the local node, without kube-proxy: one DNAT rule.

Pods reach the apiserver as every in-cluster client does, at KUBERNETES_SERVICE_HOST:PORT
(10.0.0.1:443, set by the kubelet). The dev apiserver listens on 127.0.0.1 only, so the rule
sends that address, for packets entering from the Pod bridge, to 127.0.0.1:<apiserver port>.
Two kernel details make it work: `route_localnet` on the bridge (else the kernel drops a packet
from outside whose destination is loopback), and kubelet's KUBE-FIREWALL chain, which drops
such packets except DNAT'ed ones (the exemption kube-proxy relies on for localhost NodePorts).
The chain is ours alone and is removed at teardown; the sysctl goes with the bridge.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from .controlplane import KUBERNETES_SERVICE_IP

CHAIN = "GPUPOD-KUBERNETES-SVC"
SERVICE_PORT = 443


def _iptables(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["iptables", "-t", "nat", *args], capture_output=True, text=True, timeout=30
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"iptables -t nat {' '.join(args)}: {result.stderr.strip()}")
    return result


def route(bridge: str, apiserver_port: int) -> None:
    """(Re)install the DNAT 10.0.0.1:443 -> 127.0.0.1:<apiserver_port> for Pods on ``bridge``."""
    unroute()
    Path(f"/proc/sys/net/ipv4/conf/{bridge}/route_localnet").write_text("1")
    _iptables("-N", CHAIN)
    _iptables(
        "-A",
        CHAIN,
        "-d",
        f"{KUBERNETES_SERVICE_IP}/32",
        "-p",
        "tcp",
        "--dport",
        str(SERVICE_PORT),
        "-j",
        "DNAT",
        "--to-destination",
        f"127.0.0.1:{apiserver_port}",
    )
    _iptables("-A", "PREROUTING", "-i", bridge, "-j", CHAIN)


def unroute() -> None:
    """Remove the rule and its chain (nothing if absent)."""
    for line in _iptables("-S", "PREROUTING", check=False).stdout.splitlines():
        if line.endswith(f"-j {CHAIN}"):
            _iptables("-D", *line.split()[1:], check=False)
    _iptables("-F", CHAIN, check=False)
    _iptables("-X", CHAIN, check=False)
