"""A faithful local Yotta Pods API v2, for tests, the dev environment and the benchmark.

Never part of the operator's runtime path.
"""

from gpupod_operator.simulator.app import SIMULATOR, Simulator, build_app
from gpupod_operator.simulator.clock import ManualClock
from gpupod_operator.simulator.config import Dialect, FaultRule, SimulatorConfig
from gpupod_operator.simulator.server import SimulatorServer

__all__ = [
    "SIMULATOR",
    "Dialect",
    "FaultRule",
    "ManualClock",
    "Simulator",
    "SimulatorConfig",
    "SimulatorServer",
    "build_app",
]
