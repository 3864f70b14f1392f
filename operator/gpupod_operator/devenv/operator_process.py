"""The operator (``gpupod-operator run``) as a child process, ready when its /readyz is."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Self

import httpx

from .child import ChildProcess
from .paths import console_script_command
from .process import ManagedProcess, free_port
from .simulator_process import child_environment

__all__ = ["OperatorProcess"]

_SCOPE_FLAGS = ("-n", "--namespace", "-A", "--all-namespaces")


class OperatorProcess(ChildProcess):
    """``gpupod-operator run`` with ``KUBECONFIG``, ``YOTTA_API_URL`` and ``YOTTA_API_KEY`` set.

    ``namespaces`` adds ``-n NS`` for each (default ``-A``) unless ``args`` already choose a
    scope. The liveness endpoint listens on a free loopback port, kept across :meth:`restart`.
    The API key is passed in the environment only, never on the command line, and never shown
    by ``repr``, error messages or log tails. ``log_level`` is passed as ``GPUPOD_LOG_LEVEL``.
    """

    role = "operator"

    def __init__(
        self,
        kubeconfig: Path,
        api_url: str,
        api_key: str,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        log_level: str = "DEBUG",
        *,
        namespaces: Sequence[str] | None = None,
        log_path: Path | None = None,
        ready_timeout: float = 60.0,
        stop_grace: float = 15.0,
    ) -> None:
        super().__init__(log_path=log_path, stop_grace=stop_grace)
        self.kubeconfig = Path(kubeconfig)
        self.api_url = api_url
        self._api_key = api_key
        self.args = list(args)
        if not any(flag in self.args for flag in _SCOPE_FLAGS):
            if namespaces:
                for namespace in namespaces:
                    self.args += ["-n", namespace]
            else:
                self.args.append("-A")
        self.extra_env = dict(env or {})
        self.log_level = log_level
        self.ready_timeout = ready_timeout
        self._liveness_port: int | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<OperatorProcess api_url={self.api_url} {state}>"

    @property
    def liveness_url(self) -> str:
        if self._liveness_port is None:
            self._liveness_port = free_port()
        return f"http://127.0.0.1:{self._liveness_port}/healthz"

    @property
    def readiness_url(self) -> str:
        """/readyz on the liveness port: logged in and watching (a standby: in the election)."""
        return self.liveness_url.rsplit("/", 1)[0] + "/readyz"

    def start(self) -> Self:
        env = child_environment(
            {
                "KUBECONFIG": str(self.kubeconfig),
                "YOTTA_API_URL": self.api_url,
                "YOTTA_API_KEY": self._api_key,
                "GPUPOD_LOG_LEVEL": self.log_level,
                **self.extra_env,
            }
        )
        self._process = ManagedProcess(
            "operator",
            [*console_script_command(), "run", *self.args, "--liveness", self.liveness_url],
            log_path=self.log_path,
            env=env,
            secrets=[self._api_key],
            stop_grace=self._stop_grace,
        ).start()
        try:
            self._process.wait_ready(self._ready, self.ready_timeout, interval=0.2)
        except BaseException:
            self._process.stop()
            raise
        return self

    def _ready(self) -> bool:
        return httpx.get(self.readiness_url, timeout=2.0).status_code == 200
