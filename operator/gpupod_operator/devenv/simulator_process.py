"""The Yotta simulator (``gpupod-operator simulator``) as a child process, with its admin API."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import httpx

from .child import ChildProcess
from .paths import console_script_command
from .process import ManagedProcess, ProcessExitedError, free_port

__all__ = ["SimulatorProcess", "new_api_key"]

_PORT_RACE_MARKERS = ("address already in use", "Errno 98")


def new_api_key(prefix: str = "sim") -> str:
    """A throw-away API key for a local simulator."""
    return f"{prefix}-{secrets.token_hex(16)}"


def child_environment(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """Our environment minus anything that could point a child at a real cluster or the real
    Yotta API, plus unbuffered Python output (so a killed child's log is complete)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("KUBECONFIG", "YOTTA_API_URL", "YOTTA_API_KEY", "YOTTA_API_KEY_FILE")
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides or {})
    return env


class SimulatorProcess(ChildProcess):
    """``gpupod-operator simulator`` on a loopback port, ready when ``GET /_sim/stats`` is 200.

    ``args`` are extra command-line arguments (``--provision-seconds 1``, ``--fault ...``).
    The port is picked on the first start and kept by :meth:`restart`, so clients that were
    configured with :attr:`url` reconnect to the new process (outage tests). The API key is
    never shown by ``repr`` nor in error messages and log tails.
    """

    role = "simulator"

    def __init__(
        self,
        port: int | None = None,
        args: Sequence[str] = (),
        *,
        api_key: str | None = None,
        extra_api_keys: Sequence[str] = (),
        host: str = "127.0.0.1",
        log_path: Path | None = None,
        ready_timeout: float = 30.0,
        stop_grace: float = 5.0,
    ) -> None:
        super().__init__(log_path=log_path, stop_grace=stop_grace)
        self.host = host
        self.args = list(args)
        self.ready_timeout = ready_timeout
        self._api_key = api_key or new_api_key()
        # More accounts (`--api-key` repeated): account N is extra_api_keys[N - 1].
        self.extra_api_keys = list(extra_api_keys)
        self._port = port
        self._port_was_given = port is not None
        self._faults: list[str] | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<SimulatorProcess {self.url if self._port else '(no port yet)'} {state}>"

    # -- properties -------------------------------------------------------------------------

    @property
    def api_key(self) -> str:
        return self._api_key

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the simulator has no port before start()")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> Self:
        attempts = 1 if self._port_was_given else 3
        for attempt in range(1, attempts + 1):
            if self._port is None:
                self._port = free_port(self.host)
            self._process = ManagedProcess(
                "simulator",
                [
                    *console_script_command(),
                    "simulator",
                    "--host",
                    self.host,
                    "--port",
                    str(self._port),
                    "--api-key",
                    self._api_key,
                    *(arg for key in self.extra_api_keys for arg in ("--api-key", key)),
                    *self.args,
                ],
                log_path=self.log_path,
                env=child_environment(),
                secrets=[self._api_key, *self.extra_api_keys],
                stop_grace=self._stop_grace,
            ).start()
            try:
                self._process.wait_ready(self._answers, self.ready_timeout)
                break
            except ProcessExitedError as exc:
                race = any(marker in exc.log_tail for marker in _PORT_RACE_MARKERS)
                if not race or attempt == attempts:
                    raise
                self._port = None  # someone took the port meanwhile: pick another
            except BaseException:
                self._process.stop()
                raise
        # The port is ours now: restart() keeps it.
        self._port_was_given = True
        if self._faults is not None:
            self.set_faults(self._faults)
        return self

    def suspend(self) -> None:
        """Freeze the process (SIGSTOP): connections hang, state is kept. Undo with resume()."""
        self.process.suspend()

    def resume(self) -> None:
        self.process.resume()

    def _answers(self) -> bool:
        response = httpx.get(f"{self.url}/_sim/stats", timeout=2.0)
        return response.status_code == 200

    # -- admin API --------------------------------------------------------------------------

    def _admin(self, method: str, path: str, body: Any = None) -> Any:
        response = httpx.request(method, f"{self.url}{path}", json=body, timeout=10.0)
        response.raise_for_status()
        return response.json() if response.content else None

    def stats(self) -> dict[str, Any]:
        """``GET /_sim/stats``: request counts by endpoint and result."""
        data = self._admin("GET", "/_sim/stats")
        return dict(data) if isinstance(data, dict) else {"data": data}

    def pods(self) -> list[dict[str, Any]]:
        """``GET /_sim/pods``: every pod in the API's own shape, terminated ones too."""
        data = self._admin("GET", "/_sim/pods")
        # Accept a bare list, the API's {message, code, data} envelope, or {"pods": [...]}.
        if isinstance(data, dict):
            data = data.get("data", data.get("pods", data))
            if isinstance(data, dict):  # a paged envelope: {"data": {"records": [...]}}
                data = data.get("records", data.get("items", data.get("pods", [])))
        return [dict(pod) for pod in data] if isinstance(data, list) else []

    def force_status(self, pod_id: str | int, status: str) -> Any:
        """``PUT /_sim/pods/{id}/status``: force a remote status (drift tests)."""
        return self._admin("PUT", f"/_sim/pods/{pod_id}/status", {"status": status})

    def vanish(self, pod_id: str | int) -> None:
        """``DELETE /_sim/pods/{id}``: the pod disappears out of band (as if deleted elsewhere)."""
        self._admin("DELETE", f"/_sim/pods/{pod_id}")

    def faults(self) -> list[str]:
        """``GET /_sim/faults``: the fault rules in force."""
        data = self._admin("GET", "/_sim/faults")
        return [str(f) for f in (data or {}).get("faults", [])]

    def set_faults(self, faults: Sequence[str]) -> None:
        """Replace the injected faults at run time (``OP:KIND:RATE`` like ``--fault``; an empty
        list clears them) via ``PUT /_sim/faults``. They survive :meth:`restart`."""
        self._faults = list(faults)
        try:
            self._admin("PUT", "/_sim/faults", {"faults": self._faults})
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code in (404, 405):
                raise NotImplementedError(
                    "this simulator has no PUT /_sim/faults; pass faults at start "
                    "(SimulatorProcess(args=['--fault', 'create:500:0.3']))"
                ) from None
            raise
