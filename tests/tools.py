"""Small helpers shared by test packages that run the project's own build scripts."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def built_helm() -> Path:
    """helm from hack/build-helm.sh (cached after the first build): the path it prints last."""
    built = subprocess.run(
        ["bash", str(REPO / "hack" / "build-helm.sh")], capture_output=True, text=True
    )
    assert built.returncode == 0, built.stderr[-2000:]
    return Path(built.stdout.strip().splitlines()[-1])
