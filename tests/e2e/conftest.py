"""Fixtures for end-to-end tests on a real kube-apiserver + etcd, the simulator and the operator.

- ``control_plane`` (session): :class:`ControlPlane`; ``KUBECONFIG`` points at its admin
  kubeconfig for the session. Missing binaries: skip, or fail when ``$CI`` is set.
- ``crds`` (session): applies ``crds/`` and waits until Established; the CRD names.
- ``namespace`` (function): a fresh namespace (left in place at teardown).
- ``simulator`` (function): a fresh :class:`SimulatorProcess` with a fast lifecycle.
- ``start_operator`` (function): factory for :class:`OperatorProcess` against ``simulator``;
  ``operator``: one started for ``namespace``.

Every process is stopped by PID at teardown, also when the test failed; the log tails of a
failed test's simulator and operator are attached to its report.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import Protocol

import pytest

from gpupod_operator.devenv.controlplane import ControlPlane
from gpupod_operator.devenv.operator_process import OperatorProcess
from gpupod_operator.devenv.paths import (
    BIN_DIR_ENV,
    control_plane_bin_dir,
    missing_control_plane_binaries,
)
from gpupod_operator.devenv.process import ManagedProcess
from gpupod_operator.devenv.simulator_process import SimulatorProcess

E2E_DIR = Path(__file__).resolve().parent
REPO_ROOT = E2E_DIR.parents[1]
CRDS_DIR = REPO_ROOT / "crds"

#: Simulator lifecycle fast enough for tests (seconds).
FAST_SIMULATOR_ARGS = (
    "--provision-seconds",
    "1",
    "--pause-seconds",
    "0.5",
    "--terminate-seconds",
    "0.5",
)

_PROCESSES = pytest.StashKey[list[tuple[str, ManagedProcess]]]()


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(E2E_DIR):
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        for label, process in item.stash.get(_PROCESSES, []):
            if process.started:
                report.sections.append(
                    (f"{label} log tail ({process.log_path})", process.log_tail(60))
                )
    return report


def _attach_logs(request: pytest.FixtureRequest, label: str, process: ManagedProcess) -> None:
    request.node.stash.setdefault(_PROCESSES, []).append((label, process))


# --------------------------------------------------------------------------- control plane


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    bin_dir = control_plane_bin_dir()
    missing = missing_control_plane_binaries(bin_dir)
    if missing:
        message = (
            f"{', '.join(missing)} missing in {bin_dir} (${BIN_DIR_ENV}): "
            "run `make control-plane` (hack/build-control-plane.sh)"
        )
        if _in_ci():
            pytest.fail(f"CI is set and the control plane cannot start: {message}", pytrace=False)
        pytest.skip(message)
    plane = ControlPlane(tmp_path_factory.mktemp("control-plane"), bin_dir=bin_dir)
    plane.start()
    patch = pytest.MonkeyPatch()
    patch.setenv("KUBECONFIG", str(plane.admin_kubeconfig))
    try:
        yield plane
    finally:
        patch.undo()
        plane.stop()


@pytest.fixture(scope="session")
def crds(control_plane: ControlPlane) -> list[str]:
    """The project's CRDs (``crds/*.yaml``), applied and Established."""
    names = control_plane.apply_crds(CRDS_DIR)
    if not names:
        pytest.skip(f"no CustomResourceDefinition in {CRDS_DIR} yet")
    return names


def _namespace_name(test_name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")[:40].strip("-")
    return f"t-{slug}-{uuid.uuid4().hex[:6]}" if slug else f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> str:
    """A fresh namespace named after the test, left in place at teardown: kube-controller-manager
    would delete it, but a GpuPod's finalizer holds it once the operator is stopped, and unique
    names make deletion moot."""
    return control_plane.create_namespace(_namespace_name(request.node.name))


# --------------------------------------------------------------------------- simulator, operator


@pytest.fixture
def simulator(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[SimulatorProcess]:
    """A fresh simulator (own port, own API key, empty state), fast lifecycle."""
    sim = SimulatorProcess(args=FAST_SIMULATOR_ARGS, log_path=tmp_path / "simulator.log")
    try:
        sim.start()
        _attach_logs(request, "simulator", sim.process)
        yield sim
    finally:
        sim.stop()


class StartOperator(Protocol):
    def __call__(
        self,
        namespaces: Sequence[str] | None = None,
        *,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        kubeconfig: Path | None = None,
        log_level: str = "DEBUG",
    ) -> OperatorProcess: ...


@pytest.fixture
def start_operator(
    control_plane: ControlPlane,
    crds: list[str],
    namespace: str,
    simulator: SimulatorProcess,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[StartOperator]:
    """``start_operator(namespaces=None, *, args=(), env=None, kubeconfig=None)`` starts an
    operator against this test's simulator (default: watching ``namespace``, as the admin) and
    returns it started; all of them are stopped at teardown."""
    started: list[OperatorProcess] = []

    def start(
        namespaces: Sequence[str] | None = None,
        *,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        kubeconfig: Path | None = None,
        log_level: str = "DEBUG",
    ) -> OperatorProcess:
        index = len(started)
        operator = OperatorProcess(
            kubeconfig or control_plane.admin_kubeconfig,
            simulator.url,
            simulator.api_key,
            args=args,
            env=env,
            log_level=log_level,
            namespaces=list(namespaces) if namespaces is not None else [namespace],
            log_path=tmp_path / (f"operator-{index}.log" if index else "operator.log"),
        )
        started.append(operator)
        operator.start()
        _attach_logs(request, f"operator #{index}" if index else "operator", operator.process)
        return operator

    try:
        yield start
    finally:
        for operator in reversed(started):
            operator.stop()


@pytest.fixture
def operator(start_operator: Callable[[], OperatorProcess]) -> OperatorProcess:
    """The operator, started for ``namespace`` against ``simulator``."""
    return start_operator()
