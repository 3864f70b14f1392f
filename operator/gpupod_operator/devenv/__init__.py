"""Local development and test environment: a real kube-apiserver + etcd, the Yotta simulator and
the operator as child processes, started and stopped by PID.

Used by the pytest fixtures (``tests/conftest.py``, ``tests/e2e/conftest.py``) and by
``python -m gpupod_operator.devenv up|down|status|run`` (``make dev-up``, ``make dev-down``,
``make run``).
"""

from .controlplane import ApiError, ControlPlane, KubectlError
from .operator_process import OperatorProcess
from .paths import BinariesMissingError, control_plane_bin_dir, kubectl_path
from .process import (
    ManagedProcess,
    ProcessError,
    ProcessExitedError,
    ReadinessTimeoutError,
    free_port,
    live_processes,
    pid_is_running,
    stop_all_processes,
)
from .simulator_process import SimulatorProcess

__all__ = [
    "ApiError",
    "BinariesMissingError",
    "ControlPlane",
    "KubectlError",
    "ManagedProcess",
    "OperatorProcess",
    "ProcessError",
    "ProcessExitedError",
    "ReadinessTimeoutError",
    "SimulatorProcess",
    "control_plane_bin_dir",
    "free_port",
    "kubectl_path",
    "live_processes",
    "pid_is_running",
    "stop_all_processes",
]
