"""The simulator keeps its own tables: it imports nothing of the client or the operator.

If the simulator borrowed the client's status table or limits, a wrong entry would be wrong on
both sides and every client test against the simulator would still pass.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import get_args, get_type_hints

import pytest

import gpupod_operator.simulator
from gpupod_operator.simulator import Dialect
from gpupod_operator.simulator.render import status_word
from gpupod_operator.simulator.statuses import SimStatus, parse_status
from gpupod_operator.yotta import PodStatus

SIMULATOR_DIR = Path(gpupod_operator.simulator.__file__).parent
# Itself, and the neutral table of the API's limits (no client, no Kubernetes).
ALLOWED = ("gpupod_operator.simulator", "gpupod_operator.api_limits")


def _project_imports(path: Path) -> set[str]:
    """Dotted names imported, `from a import b` as `a.b` (b may be a module)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: relative import"
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {n for n in names if n.split(".")[0] == "gpupod_operator"}


@pytest.mark.parametrize("path", sorted(SIMULATOR_DIR.glob("*.py")), ids=lambda p: p.name)
def test_simulator_imports_only_itself_and_the_api_limits(path: Path) -> None:
    foreign = {
        name
        for name in _project_imports(path)
        if not any(name == a or name.startswith(a + ".") for a in ALLOWED)
    }
    assert not foreign, f"{path.name} imports {sorted(foreign)}"


def test_status_table_is_the_reference_one() -> None:
    """Reference §4.1: backend ints and names (SDK-V1, SKY), the v2 guide's and console's."""
    assert {s.value: s.code for s in SimStatus} == {
        "INITIALIZE": 0,
        "RUNNING": 1,
        "PAUSING": 2,
        "PAUSED": 3,
        "TERMINATING": 4,
        "TERMINATED": 5,
        "FAILED": 6,
    }
    guide = Dialect(status_names="guide")
    assert status_word(SimStatus.INITIALIZE, guide) == "INITIALIZING"
    assert status_word(SimStatus.PAUSED, guide) == "STOPPED"
    console = Dialect(status_names="console")
    assert [status_word(s, console) for s in SimStatus] == [
        "Initializing",
        "Running",
        "Stopping",
        "Stopped",
        "Terminating",
        "Terminated",
        "Failed",
    ]


@pytest.mark.parametrize("names", get_args(get_type_hints(Dialect)["status_names"]))
def test_the_client_reads_every_word_the_simulator_writes(names: str) -> None:
    dialect = Dialect(status_names=names)
    for status in SimStatus:
        word = status_word(status, dialect)
        assert PodStatus.parse(word).value == status.value, (names, word)
        # and reads it back as a filter: statusList takes the client's codes
        assert parse_status(word) is status
        assert PodStatus(status.value).code == status.code


def test_status_filter_rejects_unknown_words() -> None:
    assert [parse_status(w) for w in ("NAPPING", 7, "", True)] == [None] * 4
