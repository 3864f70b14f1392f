"""The image that `make image` builds (hack/build-image.sh), run for real without Docker.

The image is built (or reused from the cache) once per session; each check runs the image's own
entrypoint under runc with the image's own user, a read-only root filesystem, a tmpfs at /tmp
(as the chart mounts an emptyDir there), no network and every capability dropped. So a write
anywhere but /tmp fails the run. `make image-test` (part of `make test`) runs this module and
installs buildah, mmdebstrap and runc from Debian when they are missing; the first build takes
minutes, later ones reuse the cached base.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gpupod_operator.devenv.paths import buildah_command

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "hack" / "build-image.sh"
NONROOT = 65532


def _buildah(*args: str, timeout: float = 120) -> str:
    command = [*buildah_command(), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"{' '.join(command)}: {result.stderr}"
    return result.stdout


@dataclass
class Image:
    name: str
    config: dict[str, Any]  # the OCI image config's "config"
    rootfs: Path  # a working container's mounted root, read-only to the runs


@pytest.fixture(scope="session")
def image() -> Iterator[Image]:
    missing = [t for t in ("buildah", "mmdebstrap", "runc") if shutil.which(t) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: apt-get install buildah mmdebstrap runc")
    built = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=1800, check=False
    )
    assert built.returncode == 0, f"hack/build-image.sh failed:\n{built.stderr[-4000:]}"
    name = built.stdout.strip().splitlines()[-1]
    inspected = json.loads(_buildah("inspect", "--type", "image", name))
    container = _buildah("from", "--pull=never", name).strip()
    try:
        rootfs = Path(_buildah("mount", container).strip())
        yield Image(name, inspected["OCIv1"]["config"], rootfs)
    finally:
        _buildah("umount", container)
        _buildah("rm", container)


def _run(image: Image, tmp_path: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    """Run the image's entrypoint with ``args`` under runc, as the image's USER, read-only root."""
    bundle = tmp_path / f"bundle-{uuid.uuid4().hex[:8]}"
    bundle.mkdir()
    subprocess.run(["runc", "spec", "--bundle", str(bundle)], check=True)
    spec = json.loads((bundle / "config.json").read_text())
    user = str(image.config.get("User", "0"))
    uid, _, gid = user.partition(":")
    spec["root"] = {"path": str(image.rootfs), "readonly": True}
    spec["process"].update(
        {
            "terminal": False,
            "args": [*image.config.get("Entrypoint", []), *args],
            "env": image.config.get("Env", []),
            "cwd": image.config.get("WorkingDir") or "/",
            "user": {"uid": int(uid), "gid": int(gid or uid)},
            "noNewPrivileges": True,
        }
    )
    caps = spec["process"]["capabilities"]
    for kind in list(caps):
        caps[kind] = []
    spec["mounts"].append(
        {
            "destination": "/tmp",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "nodev", "mode=1777", "size=64m"],
        }
    )
    (bundle / "config.json").write_text(json.dumps(spec))
    state = tmp_path / "runc-state"
    name = f"gpupod-image-test-{uuid.uuid4().hex[:8]}"
    try:
        return subprocess.run(
            ["runc", "--root", str(state), "run", "--bundle", str(bundle), name],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        # Gone already after a normal exit; after a timeout this stops and removes it.
        subprocess.run(
            ["runc", "--root", str(state), "delete", "--force", name],
            capture_output=True,
            check=False,
        )


def test_image_is_tagged_with_the_chart_app_version(image: Image) -> None:
    chart = (REPO_ROOT / "deploy" / "helm" / "gpupod-operator" / "Chart.yaml").read_text()
    version = next(
        line.split(":", 1)[1].strip().strip('"')
        for line in chart.splitlines()
        if line.startswith("appVersion:")
    )
    assert image.name == f"localhost/gpupod-operator:{version}"


def test_image_runs_as_a_numeric_non_root_user(image: Image) -> None:
    assert image.config["User"] == f"{NONROOT}:{NONROOT}"
    assert image.config["Entrypoint"] == ["gpupod-operator"]


def test_entrypoint_help_with_a_read_only_root(image: Image, tmp_path: Path) -> None:
    result = _run(image, tmp_path, ["--help"])
    assert result.returncode == 0, result.stderr
    assert "usage: gpupod-operator" in result.stdout
    run_help = _run(image, tmp_path, ["run", "--help"])
    assert run_help.returncode == 0, run_help.stderr
    assert "--liveness" in run_help.stdout


def test_only_tmp_is_writable(image: Image, tmp_path: Path) -> None:
    """The same confinement the --help run had: the root refuses writes, /tmp takes them, and
    the process really is the non-root user (the image's Python, not the entrypoint)."""
    probe = (
        "import os, sys\n"
        "print(os.getuid(), os.getgid())\n"
        "open('/tmp/ok', 'w').write('x')\n"
        "for path in ('/probe', '/opt/venv/probe', '/nonexistent'):\n"
        "    try:\n"
        "        open(path, 'w')\n"
        "    except OSError as exc:\n"
        "        print('refused', path, exc.errno)\n"
        "    else:\n"
        "        sys.exit(f'wrote {path}')\n"
    )
    python_image = Image(image.name, {**image.config, "Entrypoint": ["python3"]}, image.rootfs)
    result = _run(python_image, tmp_path, ["-c", probe])
    assert result.returncode == 0, result.stderr + result.stdout
    lines = result.stdout.splitlines()
    assert lines[0] == f"{NONROOT} {NONROOT}"
    assert [line.split()[1] for line in lines[1:]] == ["/probe", "/opt/venv/probe", "/nonexistent"]
