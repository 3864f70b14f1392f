"""Small helpers shared by test packages that run the project's own build scripts."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "deploy" / "helm" / "gpupod-operator"


def built_helm() -> Path:
    """helm from hack/build-helm.sh (cached after the first build): the path it prints last."""
    built = subprocess.run(
        ["bash", str(REPO / "hack" / "build-helm.sh")], capture_output=True, text=True
    )
    assert built.returncode == 0, built.stderr[-2000:]
    return Path(built.stdout.strip().splitlines()[-1])


def render_one(template: str, *values: str) -> Any:
    """The one object ``templates/<template>`` of the chart renders with ``--set`` ``values``."""
    rendered = subprocess.run(
        [str(built_helm()), "template", "gpo", str(CHART), f"--show-only=templates/{template}"]
        + [f"--set={v}" for v in values],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return yaml.safe_load(rendered)
