"""py-spy around a phase of the run, and a reader for its collapsed ("raw") stacks.

py-spy samples the operator from outside (no code change); ``--nonblocking`` so it never pauses
the process. The reader reports self and inclusive time per function and per library area.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

# Library areas by the first component of a frame's path (py-spy already shortens paths to
# "pkg/module.py"; absolute paths are shortened by `short_frame` first).
AREAS: dict[str, str] = {
    "gpupod_operator/cli.py": "entry point",
    "gpupod_operator": "operator",
    "kopf": "kopf",
    "httpx": "httpx",
    "httpcore": "httpx",
    "h11": "httpx",
    "anyio": "httpx",
    "aiohttp": "aiohttp",
    "yarl": "aiohttp",
    "multidict": "aiohttp",
    "pydantic": "pydantic",
    "pydantic_core": "pydantic",
    "logging": "logging",
    "json": "json",
    "ssl.py": "ssl",
    "asyncio": "event loop",
    "selectors.py": "event loop",
    "copy.py": "copy (deepcopy)",
    "prometheus_client": "prometheus",
}


def area_of(frame: str) -> str:
    match = _FRAME.match(short_frame(frame))
    path = match.group("file") if match else frame
    if path in AREAS:
        return AREAS[path]
    return AREAS.get(path.split("/", 1)[0], "other")


# Who a sample works for: the first rule whose marker is in the (shortened) stack wins, so the
# operator's own call sites come before the kopf machinery that calls them.
ATTRIBUTION: tuple[tuple[str, str], ...] = (
    ("operator: Events (EventRecorder -> KubeApi.post_event)", "EventRecorder."),
    ("operator: status patches (KubeApi.patch_status)", "KubeApi.patch_status"),
    ("operator: other KubeApi calls", "KubeApi."),
    ("operator: Yotta client (create/get/list/delete)", "YottaClient."),
    ("operator: poller (mapping, registry)", "Poller."),
    ("operator: registry / track handler", "gpupod_operator/controller/registry.py"),
    ("operator: reconciler / domain (pure)", "gpupod_operator/controller/reconciler.py"),
    ("operator: reconciler / domain (pure)", "gpupod_operator/domain/"),
    ("operator: other", "gpupod_operator/controller/"),
    ("operator: other", "gpupod_operator/yotta/"),
    ("kopf: PATCH calls (aiohttp)", "kopf/_cogs/clients/patching.py"),
    ("kopf: watch stream (aiohttp, JSON)", "kopf/_cogs/clients/watching.py"),
    ("kopf: other API calls", "kopf/_cogs/clients/"),
    ("kopf: logging", "kopf/_core/actions/loggers.py"),
    ("kopf: handler invocation", "kopf/_core/actions/"),
    ("kopf: event processing (diffs, causes, storage)", "kopf/"),
    ("logging", "logging/"),
    ("aiohttp (probes / other)", "aiohttp/"),
    ("httpx (other)", "httpcore/"),
)


def attribute(frames: list[str]) -> str:
    joined = ";".join(short_frame(f) for f in frames)
    for label, marker in ATTRIBUTION:
        if marker in joined:
            return label
    return "other (event loop, selectors, GC)"


def short_frame(frame: str) -> str:
    """'func (path/to/site-packages/pkg/mod.py:123)' -> 'func (pkg/mod.py)'."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = match.group("file")
    ours = path.find("gpupod_operator/")
    if ours >= 0:
        path = path[ours:]
    elif (index := path.rfind("site-packages/")) >= 0:
        path = path[index + len("site-packages/") :]
    elif (index := path.rfind("/lib/python3")) >= 0:
        path = path[index + 1 :].split("/", 2)[-1]
    return f"{match.group('func')} ({path})"


def parse_collapsed(lines: Iterable[str]) -> list[tuple[list[str], int]]:
    """[(frames outermost first, samples)] from 'a;b;c 12' lines."""
    out: list[tuple[list[str], int]] = []
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            continue
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        out.append((stack.split(";"), int(count)))
    return out


@dataclass
class ProfileSummary:
    samples: int
    self_by_area: list[tuple[str, int]]
    inclusive_by_area: list[tuple[str, int]]
    self_top: list[tuple[str, int]]
    inclusive_top: list[tuple[str, int]]
    attribution: list[tuple[str, int]]

    def to_json(self) -> dict[str, Any]:
        total = max(1, self.samples)

        def rows(items: list[tuple[str, int]]) -> list[dict[str, Any]]:
            return [{"what": k, "samples": v, "pct": round(100.0 * v / total, 1)} for k, v in items]

        return {
            "samples": self.samples,
            "self_by_area": rows(self.self_by_area),
            "inclusive_by_area": rows(self.inclusive_by_area),
            "self_top": rows(self.self_top),
            "inclusive_top": rows(self.inclusive_top),
            "attribution": rows(self.attribution),
        }

    def render(self, top: int = 25) -> str:
        total = max(1, self.samples)
        out = [f"{self.samples} samples"]
        for title, items in (
            ("who the time is spent for (first matching caller)", self.attribution),
            ("self time by area", self.self_by_area),
            ("inclusive time by area (a sample counts once per area)", self.inclusive_by_area),
            ("self time, top functions", self.self_top[:top]),
            ("inclusive time, top functions", self.inclusive_top[:top]),
        ):
            out.append(f"-- {title}")
            out += [f"{100.0 * v / total:6.1f}%  {v:7d}  {k}" for k, v in items]
        return "\n".join(out)


def summarize_profile(
    stacks: list[tuple[list[str], int]], *, skip_threads: bool = True, top: int = 40
) -> ProfileSummary:
    self_fn: Counter[str] = Counter()
    incl_fn: Counter[str] = Counter()
    self_area: Counter[str] = Counter()
    incl_area: Counter[str] = Counter()
    attributed: Counter[str] = Counter()
    total = 0
    for frames, count in stacks:
        if skip_threads and frames and frames[0].startswith(("thread ", "process ")):
            frames = frames[1:]
        if not frames:
            continue
        total += count
        leaf = frames[-1]
        self_fn[short_frame(leaf)] += count
        self_area[area_of(leaf)] += count
        for name in {short_frame(f) for f in frames}:
            incl_fn[name] += count
        for area in {area_of(f) for f in frames}:
            incl_area[area] += count
        attributed[attribute(frames)] += count
    return ProfileSummary(
        samples=total,
        self_by_area=self_area.most_common(),
        inclusive_by_area=incl_area.most_common(),
        self_top=self_fn.most_common(top),
        inclusive_top=incl_fn.most_common(top),
        attribution=attributed.most_common(),
    )


def py_spy_path() -> str | None:
    candidate = Path(sys.executable).parent / "py-spy"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which("py-spy")


class PySpy:
    """``py-spy record --format raw`` on a PID until :meth:`stop` (SIGINT, by its PID)."""

    def __init__(self, pid: int, output: Path, *, rate: int = 100) -> None:
        self.pid = pid
        self.output = output
        self.rate = rate
        self.log_path = output.with_suffix(".log")
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> bool:
        exe = py_spy_path()
        if exe is None:
            return False
        self.output.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                [
                    exe,
                    "record",
                    "--pid",
                    str(self.pid),
                    "--format",
                    "raw",
                    "--rate",
                    str(self.rate),
                    "--nonblocking",
                    "--output",
                    str(self.output),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        time.sleep(0.5)
        return self._proc.poll() is None

    def stop(self, timeout: float = 30.0) -> bool:
        """Ask py-spy to write its output and exit; True when the output exists."""
        proc = self._proc
        if proc is None:
            return False
        self._proc = None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        return self.output.is_file() and self.output.stat().st_size > 0

    def summary(self) -> ProfileSummary | None:
        if not self.output.is_file():
            return None
        with self.output.open() as handle:
            return summarize_profile(parse_collapsed(handle))
