"""Child processes that are started, probed and stopped by PID, never by name.

Every child runs in its own session (``start_new_session=True``), so it is the leader of its own
process group: ``stop()`` and ``kill()`` signal that group, which also reaches grandchildren that
stayed in it. A child that calls ``setsid()`` itself escapes the group and is not tracked.

A ``ManagedProcess`` can also be *adopted* from a :class:`ProcessRecord` written by another Python
process (``make dev-up`` starts children, records them and exits; ``make dev-down`` adopts and
stops them). The record holds the PID and the kernel's start time of the process, so a PID that
was reused by an unrelated process is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

__all__ = [
    "ManagedProcess",
    "ProcessError",
    "ProcessExitedError",
    "ProcessRecord",
    "ReadinessTimeoutError",
    "add_process_listener",
    "free_port",
    "live_processes",
    "pid_is_running",
    "redact",
    "remove_process_listener",
    "stop_all_processes",
]

DEFAULT_STOP_GRACE = 10.0
_POLL_INTERVAL = 0.05
REDACTED = "***"


class ProcessError(RuntimeError):
    """Base class of the errors raised about a managed child."""


class ProcessExitedError(ProcessError):
    """The child exited while we were waiting for it to become ready."""

    def __init__(self, name: str, returncode: int | None, log_tail: str, log_path: Path) -> None:
        self.name = name
        self.returncode = returncode
        self.log_tail = log_tail
        self.log_path = log_path
        super().__init__(
            f"{name} exited ({_describe_exit(returncode)}) before it was ready "
            f"(log: {log_path}); last lines:\n{log_tail}"
        )


class ReadinessTimeoutError(ProcessError, TimeoutError):
    """The child kept running but its readiness check never passed in time."""

    def __init__(
        self, name: str, timeout: float, last_error: str | None, log_tail: str, log_path: Path
    ) -> None:
        self.name = name
        self.log_tail = log_tail
        self.log_path = log_path
        detail = f"; last check error: {last_error}" if last_error else ""
        super().__init__(
            f"{name} not ready after {timeout:g}s{detail} (log: {log_path}); last lines:\n"
            f"{log_tail}"
        )


# --------------------------------------------------------------------------- small helpers

_handed_out_ports: set[int] = set()
_ports_lock = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now.

    Inherently racy (another process may take it before our child binds it), so callers retry
    on "address already in use". Ports handed out earlier by this process are not handed out
    again, so two children started back to back never get the same one.
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
        with _ports_lock:
            if port not in _handed_out_ports:
                _handed_out_ports.add(port)
                return port
    raise OSError(f"no free port found on {host}")


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every non-empty secret replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def _proc_stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, pgrp, session, start time in clock ticks) of a PID, or None if it does not exist."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); field 5 pgrp, 6 session, 22 starttime.
    return fields[0], int(fields[2]), int(fields[3]), int(fields[19])


def _start_ticks(pid: int) -> int | None:
    stat = _proc_stat(pid)
    return None if stat is None else stat[3]


def pid_is_running(pid: int, start_ticks: int | None = None) -> bool:
    """Whether ``pid`` is a live (non-zombie) process, and the same one if ``start_ticks`` given."""
    stat = _proc_stat(pid)
    if stat is None:
        if Path("/proc/self/stat").exists():
            return False
        try:  # no /proc (not Linux): fall back to signal 0
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    state, _pgrp, _session, ticks = stat
    if state in ("Z", "X"):
        return False
    return start_ticks is None or ticks == start_ticks


def _group_has_members(pgid: int) -> bool:
    """Whether any live (non-zombie) process is in process group ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Zombies count for kill(2); look closer, so an unreaped zombie does not keep us waiting.
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        stat = _proc_stat(int(entry.name))
        if stat is not None and stat[1] == pgid and stat[0] not in ("Z", "X"):
            return True
    return False


# --------------------------------------------------------------------------- the registry

_live: dict[int, ManagedProcess] = {}
_live_lock = threading.Lock()
ProcessListener = Callable[["ManagedProcess", str], None]
_listeners: list[ProcessListener] = []


def add_process_listener(listener: ProcessListener) -> None:
    """Call ``listener(process, event)`` with event "started" or "stopped" for every child."""
    _listeners.append(listener)


def remove_process_listener(listener: ProcessListener) -> None:
    with contextlib.suppress(ValueError):
        _listeners.remove(listener)


def _notify(process: ManagedProcess, event: str) -> None:
    for listener in list(_listeners):
        listener(process, event)


def live_processes() -> list[ManagedProcess]:
    """Children started (or adopted) by this Python process and not stopped yet, oldest first."""
    with _live_lock:
        return list(_live.values())


def stop_all_processes(grace: float = 5.0) -> list[ManagedProcess]:
    """Stop every registered child, newest first. Returns the ones that were still running."""
    running = []
    for process in reversed(live_processes()):
        if process.running:
            running.append(process)
        process.stop(grace=grace)
    return running


# --------------------------------------------------------------------------- the process


@dataclass(frozen=True)
class ProcessRecord:
    """What another Python process needs to find (and safely stop) a detached child."""

    name: str
    pid: int
    start_ticks: int | None
    log_path: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pid": self.pid,
            "start_ticks": self.start_ticks,
            "log_path": self.log_path,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProcessRecord:
        ticks = data.get("start_ticks")
        return cls(
            name=str(data["name"]),
            pid=int(data["pid"]),
            start_ticks=None if ticks is None else int(ticks),
            log_path=str(data["log_path"]),
        )

    @property
    def running(self) -> bool:
        return pid_is_running(self.pid, self.start_ticks)


class ManagedProcess:
    """One child process with a log file, a readiness probe and PID-based teardown.

    ``start()`` may be called again after the child exited or was stopped (same command, same
    log file, appended): that is how wrappers implement ``restart()``.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        secrets: Sequence[str] = (),
        stop_grace: float = DEFAULT_STOP_GRACE,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = Path(log_path)
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.stop_grace = stop_grace
        self._secrets = tuple(s for s in secrets if s)
        self._popen: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None
        self._start_ticks: int | None = None
        self._log_offset = 0

    # -- identity -------------------------------------------------------------------------

    def __repr__(self) -> str:
        state = "running" if self.running else "not running"
        pid = f" pid={self._pid}" if self._pid is not None else ""
        return f"<ManagedProcess {self.name}{pid} {state} log={self.log_path}>"

    @property
    def pid(self) -> int:
        if self._pid is None:
            raise ProcessError(f"{self.name} was never started")
        return self._pid

    @property
    def started(self) -> bool:
        return self._pid is not None

    @property
    def running(self) -> bool:
        if self._pid is None:
            return False
        if self._popen is not None:
            return self._popen.poll() is None
        return pid_is_running(self._pid, self._start_ticks)

    @property
    def returncode(self) -> int | None:
        """The exit code (negative: killed by that signal) if we are its parent and it exited."""
        return None if self._popen is None else self._popen.poll()

    @property
    def command_line(self) -> str:
        """The command, with secrets redacted: safe to print."""
        return redact(" ".join(self.argv), self._secrets)

    def record(self) -> ProcessRecord:
        return ProcessRecord(self.name, self.pid, self._start_ticks, str(self.log_path))

    @classmethod
    def adopt(cls, record: ProcessRecord, *, secrets: Sequence[str] = ()) -> Self:
        """A handle on a child that another Python process started (for stop/status)."""
        process = cls(record.name, [], log_path=Path(record.log_path), secrets=secrets)
        process._pid = record.pid
        process._start_ticks = record.start_ticks
        if record.running:
            with _live_lock:
                _live[id(process)] = process
        return process

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> Self:
        if self.running:
            raise ProcessError(f"{self.name} is already running (pid {self._pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
            log.write(f"--- {stamp} starting {self.name}: {self.command_line}\n".encode())
            log.flush()
            self._log_offset = log.tell()
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
                close_fds=True,
            )
        self._pid = self._popen.pid
        self._start_ticks = _start_ticks(self._pid)
        with _live_lock:
            _live[id(self)] = self
        _notify(self, "started")
        return self

    def wait_ready(
        self,
        check: Callable[[], bool],
        timeout: float,
        *,
        interval: float = 0.1,
    ) -> None:
        """Poll ``check()`` until it returns True.

        An exception from ``check`` counts as "not ready yet" (connection refused, 403 during
        bootstrap, ...). Raises :class:`ProcessExitedError` as soon as the child exits, and
        :class:`ReadinessTimeoutError` after ``timeout`` seconds; both carry the log's tail.
        """
        deadline = time.monotonic() + timeout
        last_error: str | None = None
        while True:
            if not self.running:
                raise ProcessExitedError(self.name, self.returncode, self.log_tail(), self.log_path)
            try:
                if check():
                    return
                last_error = None
            except Exception as exc:
                last_error = redact(f"{type(exc).__name__}: {exc}", self._secrets)
            if time.monotonic() >= deadline:
                raise ReadinessTimeoutError(
                    self.name, timeout, last_error, self.log_tail(), self.log_path
                )
            time.sleep(interval)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the child has exited; True if it did within ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.running:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_INTERVAL)
        return True

    def stop(self, grace: float | None = None) -> None:
        """SIGTERM the child's process group, SIGKILL it after ``grace`` seconds.

        Returns when neither the child nor anything left in its process group is alive.
        Idempotent; a never-started process is a no-op.
        """
        if self._pid is None:
            return
        grace = self.stop_grace if grace is None else grace
        try:
            if self._group_is_ours():
                self._signal_group(signal.SIGTERM)
                # A stopped (SIGSTOP) group would never act on SIGTERM.
                self._signal_group(signal.SIGCONT)
                if not self._wait_group_gone(grace):
                    self._signal_group(signal.SIGKILL)
                    if not self._wait_group_gone(10.0):
                        raise ProcessError(
                            f"{self.name} (pgid {self._pid}) survived SIGKILL for 10s"
                        )
        finally:
            self._forget()

    def kill(self) -> None:
        """SIGKILL the whole process group at once (simulates a crash); waits until it is gone."""
        if self._pid is None:
            return
        try:
            if self._group_is_ours():
                self._signal_group(signal.SIGKILL)
                if not self._wait_group_gone(10.0):
                    raise ProcessError(f"{self.name} (pgid {self._pid}) survived SIGKILL for 10s")
        finally:
            self._forget()

    def suspend(self) -> None:
        """SIGSTOP the process group: it keeps its state and sockets but stops answering."""
        if self.running:
            self._signal_group(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`suspend`."""
        if self._pid is not None and self._group_is_ours():
            self._signal_group(signal.SIGCONT)

    # -- logs -----------------------------------------------------------------------------

    def log_text(self, *, since_start: bool = True) -> str:
        """The log (by default only what the current run wrote), secrets redacted."""
        try:
            with self.log_path.open("rb") as log:
                if since_start:
                    log.seek(self._log_offset)
                data = log.read()
        except OSError:
            return ""
        return redact(data.decode(errors="replace"), self._secrets)

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the log file, secrets redacted."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(0, os.SEEK_END)
                size = log.tell()
                log.seek(max(0, size - 64 * 1024))
                data = log.read()
        except OSError:
            return "(no log)"
        text = redact(data.decode(errors="replace"), self._secrets)
        return "\n".join(text.splitlines()[-lines:])

    # -- internals ------------------------------------------------------------------------

    def _group_is_ours(self) -> bool:
        """Whether signalling process group ``pid`` reaches our child (or what it left behind).

        The kernel does not reuse a PID while a process group of that number has members, so
        the only way the number can mean someone else is: our leader is gone, its group is
        empty, and a new unrelated process got the PID. We detect that by its start time.
        """
        pid = self.pid
        if self._popen is not None:
            self._popen.poll()  # reap a zombie leader, so it does not count as a member
        stat = _proc_stat(pid)
        if stat is not None and self._start_ticks is not None and stat[3] != self._start_ticks:
            return False
        return _group_has_members(pid)

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    def _wait_group_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if self._popen is not None:
                self._popen.poll()
            if not self.running and not _group_has_members(self.pid):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_INTERVAL)

    def _forget(self) -> None:
        if self._popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._popen.wait(timeout=0.5)
        with _live_lock:
            was_live = _live.pop(id(self), None) is not None
        if was_live:
            _notify(self, "stopped")


def _describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "exit code unknown"
    if returncode >= 0:
        return f"exit code {returncode}"
    try:
        return f"killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"killed by signal {-returncode}"
