"""The simulator's cached pod encodings: a list must show exactly what a fresh render shows,
through every change of a pod's status (time passing, actions, admin overrides)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gpupod_operator.simulator import Dialect, ManualClock, SimulatorConfig
from gpupod_operator.simulator.render import encode_list, encode_pod, page, render_pod
from gpupod_operator.simulator.state import PodRecord, Store
from gpupod_operator.simulator.statuses import SimStatus
from gpupod_operator.simulator.validation import validate_create


def make_store() -> tuple[Store, ManualClock]:
    clock = ManualClock()
    config = SimulatorConfig(
        provision_seconds=10, pause_seconds=2, terminate_seconds=3, seed=5, clock=clock
    )
    return Store(config), clock


def create(store: Store, name: str) -> PodRecord:
    body = {"name": name, "image": "img", "gpuType": "NVIDIA_RTX_4090_24G", "gpuCount": 1}
    return store.create_pod(validate_create(body, credentials=set(), volumes=set()))


def check(store: Store, clock: ManualClock, dialect: Dialect) -> list[dict[str, Any]]:
    """The encoded list equals the rendered one; returns it."""
    now = clock()
    pods = store.list_pods(None, None)
    fresh = [render_pod(p, now, dialect) for p in pods]
    encoded = encode_list([encode_pod(p, now, dialect) for p in pods], dialect.list_shape)
    expected = page(fresh) if dialect.list_shape == "items" else fresh
    assert json.loads(encoded) == expected
    return fresh


@pytest.mark.parametrize("shape", ["array", "items"])
def test_encoded_list_follows_every_status_change(shape: str) -> None:
    store, clock = make_store()
    dialect = Dialect(list_shape=shape)  # type: ignore[arg-type]
    assert check(store, clock, dialect) == []
    a, b = create(store, "a"), create(store, "b")
    assert {p["status"] for p in check(store, clock, dialect)} == {"INITIALIZE"}
    clock.advance(10)  # both settle into RUNNING: endpoints appear, updatedAt moves
    assert {p["status"] for p in check(store, clock, dialect)} == {"RUNNING"}
    store.pause_pod(a.id)
    store.delete_pod(b.id)
    statuses = {p["name"]: p["status"] for p in check(store, clock, dialect)}
    assert statuses == {"a": "PAUSING", "b": "TERMINATING"}
    clock.advance(3)
    statuses = {p["name"]: p["status"] for p in check(store, clock, dialect)}
    assert statuses == {"a": "PAUSED", "b": "TERMINATED"}
    store.force_status(a.id, SimStatus.FAILED)  # same instant, new status and reason
    (failed,) = [p for p in check(store, clock, dialect) if p["name"] == "a"]
    assert failed["status"] == "FAILED" and failed["failureReason"] == "forced by /_sim"


def test_a_pod_is_rendered_again_only_when_it_changed() -> None:
    store, clock = make_store()
    pod = create(store, "a")
    clock.advance(10)
    first = encode_pod(pod, clock(), Dialect())
    clock.advance(60)  # RUNNING all along: nothing it shows changed
    assert encode_pod(pod, clock(), Dialect()) is first
    assert encode_pod(pod, clock(), Dialect(id_type="string")) is not first
