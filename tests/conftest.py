"""Session-wide guarantees for every test that starts child processes (devenv.ManagedProcess).

- SIGTERM/SIGHUP to pytest unwind like Ctrl-C, so fixture teardown still stops the children.
- After all fixtures are torn down, any child still registered (a test that forgot to stop one)
  is stopped by PID and reported; an ``atexit`` hook covers exits that skip the session hooks.
"""

from __future__ import annotations

import atexit
import signal
from types import FrameType

import pytest

from gpupod_operator.devenv.process import stop_all_processes

_leaked: list[str] = []


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"received {signal.Signals(signum).name}")


def pytest_configure(config: pytest.Config) -> None:
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _interrupt)
    atexit.register(stop_all_processes)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # trylast: runs after pytest's own teardown of session-scoped fixtures.
    for process in stop_all_processes():
        _leaked.append(f"{process.name} (pid {process.pid}, log {process.log_path})")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _leaked:
        terminalreporter.write_line(
            "child processes still running at session end were stopped: " + ", ".join(_leaked),
            yellow=True,
        )
