"""The README must tell the truth: its field reference, flags and commands match the code."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from gpupod_operator.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_field_reference_is_generated_from_the_crd() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "hack" / "gen_reference.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_every_flag_in_the_readme_exists_and_every_run_flag_is_documented() -> None:
    run = next(
        a
        for a in build_parser()._subparsers._group_actions[0].choices.values()  # type: ignore[union-attr]
        if a.prog.endswith(" run")
    )
    flags = {opt for action in run._actions for opt in action.option_strings} - {"-h", "--help"}
    table = README[README.index("| flag | default | meaning |") :].split("\n\n")[0]
    documented = set(re.findall(r"`(-{1,2}[a-z-]+|-[A-Za-z])", table))
    assert documented <= flags, documented - flags
    assert flags <= documented, flags - documented


def test_make_targets_named_in_the_readme_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z0-9-]+):", makefile, re.M))
    named = set(re.findall(r"`make ([a-z0-9-]+)", README)) | set(
        re.findall(r"^make ([a-z0-9-]+)", README, re.M)
    )
    assert named and named <= targets, named - targets


def test_environment_variables_match_the_config() -> None:
    config = (ROOT / "operator" / "gpupod_operator" / "config.py").read_text()
    for var in ("YOTTA_API_URL", "YOTTA_API_KEY", "YOTTA_API_KEY_FILE"):
        assert var in README and var in config
    assert "https://api.yottalabs.ai" in README and "https://api.yottalabs.ai" in config
