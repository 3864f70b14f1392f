"""``.dev/state.json``: which detached processes the development environment owns.

Written as each child starts (not only at the end), so even a ``make dev-up`` that was killed
half-way leaves ``make dev-down`` enough to stop what it had started.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .certs import write_private
from .process import (
    ManagedProcess,
    ProcessRecord,
    add_process_listener,
    pid_is_running,
    remove_process_listener,
)

__all__ = ["StateFile"]

STATE_VERSION = 1


def _own_start_ticks() -> int | None:
    try:
        raw = Path("/proc/self/stat").read_text()
    except OSError:
        return None
    return int(raw[raw.rindex(")") + 2 :].split()[19])


class StateFile:
    """Read, write and track ``state.json`` (mode 0600: it holds the throw-away dev API key)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._tracking = False

    # -- reading --------------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path) -> StateFile | None:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise RuntimeError(f"{path} is not valid JSON ({exc}); remove it by hand") from None
        state = cls(path)
        state.data = data
        return state

    @property
    def mode(self) -> str:
        return str(self.data.get("mode", "?"))

    @property
    def complete(self) -> bool:
        """Whether the command that wrote it finished starting everything."""
        return bool(self.data.get("complete"))

    @property
    def records(self) -> list[ProcessRecord]:
        return [ProcessRecord.from_json(r) for r in self.data.get("processes", [])]

    def live_records(self) -> list[ProcessRecord]:
        return [r for r in self.records if r.running]

    @property
    def owner_alive(self) -> bool:
        """Whether the Python process that wrote this state (``up`` or ``run``) still runs."""
        pid = self.data.get("owner_pid")
        return isinstance(pid, int) and pid_is_running(pid, self.data.get("owner_start_ticks"))

    # -- writing --------------------------------------------------------------------------

    def create(self, mode: str) -> None:
        """A fresh state owned by this process."""
        self.data = {
            "version": STATE_VERSION,
            "mode": mode,
            "owner_pid": os.getpid(),
            "owner_start_ticks": _own_start_ticks(),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "processes": [],
        }
        self.save()

    def update(self, **fields: Any) -> None:
        with self._lock:
            self.data.update(fields)
            self._save_locked()

    def save(self) -> None:
        with self._lock:
            self._save_locked()

    def _save_locked(self) -> None:
        write_private(self.path, (json.dumps(self.data, indent=2) + "\n").encode())

    def remove(self) -> None:
        self.stop_tracking()
        self.path.unlink(missing_ok=True)

    # -- tracking children ----------------------------------------------------------------

    def track_processes(self) -> None:
        """Record every child this process starts from now on, and forget it when stopped."""
        if not self._tracking:
            add_process_listener(self._on_process_event)
            self._tracking = True

    def stop_tracking(self) -> None:
        if self._tracking:
            remove_process_listener(self._on_process_event)
            self._tracking = False

    def _on_process_event(self, process: ManagedProcess, event: str) -> None:
        record = process.record().to_json()
        with self._lock:
            processes = [p for p in self.data.get("processes", []) if p["pid"] != record["pid"]]
            if event == "started":
                processes.append(record)
            self.data["processes"] = processes
            self._save_locked()
