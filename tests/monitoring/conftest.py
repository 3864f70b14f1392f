"""promtool for the chart's monitoring tests (`make rules-test` installs it when missing)."""

from __future__ import annotations

import shutil

import pytest


@pytest.fixture(scope="session")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool missing: `make rules-test` installs it (apt-get install prometheus)")
    return path
