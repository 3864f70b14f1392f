"""The operator logs in with the official client's loaders, for kopf's watches and its own
calls alike: here through a kubeconfig whose user is an `exec` credential plugin (the way EKS,
GKE and OIDC logins work), which kopf's own kubeconfig parser does not run."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gpupod_operator.devenv.controlplane import ControlPlane
from gpupod_operator.devenv.paths import console_script_command
from gpupod_operator.devenv.simulator_process import SimulatorProcess

from .conftest import StartOperator
from .gpupods import GpuPods

pytestmark = pytest.mark.e2e
EXEC_API = "client.authentication.k8s.io/v1"

PLUGIN = """#!{python}
# A credential plugin as kubectl runs it: reads KUBERNETES_EXEC_INFO, prints an ExecCredential.
import json, os, sys
info = json.loads(os.environ.get("KUBERNETES_EXEC_INFO") or "{{}}")
with open({calls!r}, "a") as f:
    f.write(info.get("apiVersion", "none") + "\\n")
with open({token_file!r}) as f:
    token = f.read().strip()
print(json.dumps({{
    "apiVersion": "client.authentication.k8s.io/v1",
    "kind": "ExecCredential",
    "status": {{"token": token}},
}}))
"""


def exec_kubeconfig(cp: ControlPlane, tmp: Path, token: str) -> tuple[Path, Path]:
    """A copy of the admin kubeconfig whose user runs a plugin script for its token."""
    calls, token_file, plugin = tmp / "plugin-calls", tmp / "token", tmp / "plugin.py"
    token_file.write_text(token)
    token_file.chmod(0o600)
    plugin.write_text(
        PLUGIN.format(python=sys.executable, calls=str(calls), token_file=str(token_file))
    )
    plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    config = yaml.safe_load(cp.admin_kubeconfig.read_text())
    for user in config["users"]:
        user["user"] = {
            "exec": {
                "apiVersion": EXEC_API,
                "command": str(plugin),
                "interactiveMode": "Never",
            }
        }
    path = tmp / "exec-kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path, calls


def test_exec_credential_plugin_login_reaches_running(
    control_plane: ControlPlane,
    crds: list[str],
    namespace: str,
    simulator: SimulatorProcess,
    start_operator: StartOperator,
    tmp_path: Path,
) -> None:
    gpupods = GpuPods(control_plane, namespace)
    kubeconfig, calls = exec_kubeconfig(control_plane, tmp_path, control_plane.admin_token)
    operator = start_operator(kubeconfig=kubeconfig)
    gpupods.create("via-exec", gpuCount=1)
    status = gpupods.wait_phase("via-exec", "Running", timeout=60)
    assert status["podId"] and gpupods.condition("via-exec", "Synced")["status"] == "True"
    # The plugin ran (for kopf's login and for the official client's), and its token is
    # nowhere in the operator's log.
    assert calls.read_text().splitlines()[0] == EXEC_API
    assert control_plane.admin_token not in operator.process.log_tail(10_000)
    gpupods.delete("via-exec")
    gpupods.wait_gone("via-exec")
    assert not [p for p in simulator.pods() if p["status"] not in ("TERMINATED",)]


def test_a_kubeconfig_without_usable_credentials_fails_clearly(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    """A plugin that cannot run ends the operator with a message that says what to check,
    instead of an operator running anonymous and retrying 401s forever."""
    config = yaml.safe_load(control_plane.admin_kubeconfig.read_text())
    for user in config["users"]:
        user["user"] = {"exec": {"apiVersion": EXEC_API, "command": "/nonexistent-plugin"}}
    path = tmp_path / "broken"
    path.write_text(json.dumps(config))
    result = subprocess.run(
        [*console_script_command(), "run", "-A"],
        env={"KUBECONFIG": str(path), "YOTTA_API_KEY": "k", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "gave no credentials" in result.stderr and "exec plugin" in result.stderr
