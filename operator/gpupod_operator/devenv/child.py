"""What the simulator and the operator wrappers share: one ManagedProcess at a time, its log,
and stop/kill/restart by PID. Subclasses say how to start it."""

from __future__ import annotations

import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Self

from .process import ManagedProcess

__all__ = ["ChildProcess"]


class ChildProcess(ABC):
    #: Shown in errors and used for the default log file name.
    role = "child"

    def __init__(self, *, log_path: Path | None, stop_grace: float) -> None:
        self._log_path = log_path
        self._process: ManagedProcess | None = None
        self._stop_grace = stop_grace

    @abstractmethod
    def start(self) -> Self: ...

    @property
    def log_path(self) -> Path:
        if self._log_path is None:  # created on first use, not by a constructor
            self._log_path = Path(tempfile.mkdtemp(prefix=f"gpupod-{self.role}-")) / (
                f"{self.role}.log"
            )
        return self._log_path

    @property
    def process(self) -> ManagedProcess:
        if self._process is None:
            raise RuntimeError(f"the {self.role} was never started")
        return self._process

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.running

    def log_tail(self, lines: int = 40) -> str:
        return self.process.log_tail(lines) if self._process else "(not started)"

    def log_text(self) -> str:
        """Everything the current run logged (secrets redacted)."""
        return self.process.log_text() if self._process else ""

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()

    def kill(self) -> None:
        """SIGKILL: a crash, no graceful shutdown; state is left as it is."""
        if self._process is not None:
            self._process.kill()

    def restart(self) -> Self:
        """Stop, then start again with the same settings (and port)."""
        self.stop()
        return self.start()
