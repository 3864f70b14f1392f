"""Every third-party module the operator imports at runtime is pinned in constraints.txt, the
image's only dependency list. (`kubernetes` was once a dev-only dependency: the image built,
`--help` ran, and the chart's pod crashed on `import kubernetes` at start.)"""

from __future__ import annotations

import ast
import sys
from importlib import metadata
from pathlib import Path

from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "operator" / "gpupod_operator"
# Not in the image's runtime path: the local dev environment (certificates, processes).
DEV_ONLY = ("devenv",)


def _imported_top_levels() -> dict[str, str]:
    """Top-level module -> one file importing it, for absolute imports outside the package."""
    found: dict[str, str] = {}
    for path in PACKAGE.rglob("*.py"):
        if path.relative_to(PACKAGE).parts[0] in DEV_ONLY:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top not in ("gpupod_operator", "__future__"):
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def test_runtime_imports_are_pinned_for_the_image() -> None:
    pinned = {
        canonicalize_name(line.split("==")[0])
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if line and not line.startswith("#")
    }
    distributions = metadata.packages_distributions()
    third_party = {
        top: where
        for top, where in _imported_top_levels().items()
        if top not in sys.stdlib_module_names
    }
    assert "kubernetes" in third_party  # the scan sees the imports at all
    unpinned = {
        top: where
        for top, where in third_party.items()
        if not {canonicalize_name(d) for d in distributions.get(top, [])} & pinned
    }
    assert not unpinned, f"imported by the operator but not in constraints.txt: {unpinned}"
