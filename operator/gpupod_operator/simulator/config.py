"""Simulator configuration: lifecycle timings, faults, and the response dialect."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, get_args, get_type_hints

FAULT_OPS = ("create", "get", "list", "delete", "pause", "resume", "types", "*")
FAULT_KINDS = ("500", "429", "10002", "timeout", "lost")


@dataclass(frozen=True)
class FaultRule:
    """`OP:KIND:RATE`, e.g. `create:lost:0.1`."""

    op: str
    kind: str
    rate: float

    @classmethod
    def parse(cls, text: str) -> FaultRule:
        parts = text.strip().split(":")
        if len(parts) != 3:
            raise ValueError(f"fault {text!r} is not OP:KIND:RATE")
        op, kind, rate_text = (p.strip() for p in parts)
        if op not in FAULT_OPS:
            raise ValueError(f"fault op {op!r} is not one of {', '.join(FAULT_OPS)}")
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault kind {kind!r} is not one of {', '.join(FAULT_KINDS)}")
        try:
            rate = float(rate_text)
        except ValueError:
            raise ValueError(f"fault rate {rate_text!r} is not a number") from None
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"fault rate {rate} is not within 0..1")
        return cls(op, kind, rate)

    def __str__(self) -> str:
        return f"{self.op}:{self.kind}:{self.rate:g}"


@dataclass(frozen=True)
class Dialect:
    """Which variant of each disputed response shape to emit (reference §2, §3).

    The defaults are the simulator's best guess at the real API; the others exist so the
    client can be tested against every variant the sources describe.
    """

    #: Pod `id` as a JSON number (the guides) or a string (a captured MCP response).
    id_type: Literal["number", "string"] = "number"
    #: `singleCardPrice` as a string (captured response) or a number (MCP types).
    price_type: Literal["string", "number"] = "string"
    #: Backend names, the guide's names (INITIALIZING, STOPPED), console labels, or ints.
    status_names: Literal["backend", "guide", "console", "int"] = "backend"
    #: List `data` as a bare array (documented) or a paginated `{items, ...}` object.
    list_shape: Literal["array", "items"] = "array"
    #: Create `data` as the pod (v2 guide) or the bare id (v1).
    create_data: Literal["pod", "id"] = "pod"
    #: Pause / resume / delete `data`.
    action_data: Literal["true", "null", "pod"] = "true"
    #: business: HTTP 200 + code (default); http: 404 / 400 / 409 with the same envelope.
    error_style: Literal["business", "http"] = "business"

    @classmethod
    def parse(cls, items: list[str]) -> Dialect:
        """From `key=value` strings, e.g. `["id_type=string", "list_shape=items"]`."""
        dialect = cls()
        hints = get_type_hints(cls)
        for item in items:
            key, sep, value = (part.strip() for part in item.partition("="))
            if not sep or key not in hints:
                raise ValueError(f"dialect {item!r}: expected KEY=VALUE, KEY in {sorted(hints)}")
            choices = get_args(hints[key])
            if value not in choices:
                raise ValueError(f"dialect {key}={value!r}: expected one of {list(choices)}")
            changes: dict[str, Any] = {key: value}
            dialect = replace(dialect, **changes)
        return dialect


@dataclass
class SimulatorConfig:
    host: str = "127.0.0.1"
    port: int = 8090
    #: The accepted X-Api-Key values, each its own account (the index is the account);
    #: one key as a plain string; None or empty: any non-empty key is accepted (account 0).
    api_key: str | Sequence[str] | None = None
    provision_seconds: float = 3.0
    pause_seconds: float = 1.0
    #: None: same as provision_seconds.
    resume_seconds: float | None = None
    terminate_seconds: float = 1.0
    faults: list[FaultRule] = field(default_factory=list)
    seed: int | None = None
    #: Probability that a create (or resume) ends FAILED instead of RUNNING.
    fail_rate: float = 0.0
    #: Max GPUs held by INITIALIZE/RUNNING/PAUSING pods; None: unlimited.
    capacity: int | None = None
    #: How long TERMINATED pods stay visible in get and list.
    retention_seconds: float = 86400.0
    #: How long a `timeout` fault delays the answer.
    timeout_fault_seconds: float = 30.0
    dialect: Dialect = field(default_factory=Dialect)
    #: Wall-clock seconds; injectable so tests drive the lifecycle without sleeping.
    clock: Callable[[], float] = time.time

    @property
    def api_keys(self) -> tuple[str, ...]:
        if self.api_key is None:
            return ()
        return (self.api_key,) if isinstance(self.api_key, str) else tuple(self.api_key)

    @property
    def effective_resume_seconds(self) -> float:
        return self.provision_seconds if self.resume_seconds is None else self.resume_seconds
