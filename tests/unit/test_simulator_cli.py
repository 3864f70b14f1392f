"""The simulator's CLI entry points: flags, config, and a real serve-until-signal run."""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest

from gpupod_operator.simulator import FaultRule
from gpupod_operator.simulator.cli import add_arguments, config_from_args


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gpupod-operator simulator")
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults() -> None:
    config = config_from_args(parse())
    assert (config.host, config.port, config.api_key) == ("127.0.0.1", 8090, None)
    assert (config.provision_seconds, config.pause_seconds, config.terminate_seconds) == (3, 1, 1)
    assert config.effective_resume_seconds == 3
    assert (config.faults, config.seed, config.fail_rate, config.capacity) == ([], None, 0, None)
    assert (config.retention_seconds, config.timeout_fault_seconds) == (86400, 30)


def test_every_flag() -> None:
    config = config_from_args(
        parse(
            "--host",
            "0.0.0.0",
            "--port",
            "0",
            "--api-key",
            "K",
            "--provision-seconds",
            "0",
            "--pause-seconds",
            "0.5",
            "--resume-seconds",
            "2",
            "--terminate-seconds",
            "0",
            "--fault",
            "create:lost:0.1",
            "--fault",
            "*:429:0.05",
            "--seed",
            "7",
            "--fail-rate",
            "0.2",
            "--capacity",
            "16",
            "--retention-seconds",
            "60",
            "--timeout-fault-seconds",
            "2",
            "--dialect",
            "id_type=string",
            "--log-level",
            "debug",
        )
    )
    assert config.faults == [FaultRule("create", "lost", 0.1), FaultRule("*", "429", 0.05)]
    assert config.effective_resume_seconds == 2 and config.capacity == 16
    assert config.dialect.id_type == "string" and config.api_key == "K"


@pytest.mark.parametrize(
    "argv",
    [
        ("--fault", "create:boom:0.1"),
        ("--fault", "create:500:2"),
        ("--fail-rate", "1.5"),
        ("--provision-seconds", "-1"),
        ("--capacity", "-3"),
        ("--log-level", "loud"),
    ],
)
def test_bad_flags_exit(argv: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse(*argv)
    assert exit_info.value.code == 2


def test_bad_dialect_exits() -> None:
    with pytest.raises(SystemExit, match="dialect"):
        config_from_args(parse("--dialect", "id_type=float"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_main_serves_until_signal_and_exits_zero(sig: signal.Signals) -> None:
    script = (
        "import argparse, sys\n"
        "from gpupod_operator.simulator.cli import add_arguments, main\n"
        "p = argparse.ArgumentParser(); add_arguments(p)\n"
        "sys.exit(main(p.parse_args(sys.argv[1:])))\n"
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            script,
            "--port",
            "0",
            "--provision-seconds",
            "0",
            "--log-level",
            "debug",
            "--api-key",
            "secret-cli-key",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ | {"PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stderr is not None
        url = None
        deadline = time.monotonic() + 20
        lines = []
        while url is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            lines.append(line)
            if match := re.search(r"listening on (http://\S+)", line):
                url = match.group(1)
        assert url, "".join(lines)
        assert httpx.get(f"{url}/_sim/health").json() == {"ok": True}
        headers = {"X-Api-Key": "secret-cli-key"}
        assert httpx.get(f"{url}/v2/pods", headers=headers).json()["data"] == []
        proc.send_signal(sig)
        output = proc.communicate(timeout=10)[1]
        assert proc.returncode == 0
        assert "GET /v2/pods -> " in output  # one debug line per request
        assert "secret-cli-key" not in output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
