"""kopf's diff base kept as a digest in status.lastHandled (handlers._DiffBase): what kopf
sees as changed, and that neither storage writes anything of its own on a handled change."""

from __future__ import annotations

import json
from typing import Any

import kopf

from gpupod_operator.controller.handlers import DIFF_BASE, PREFIX, _Progress


def raw_body(**status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "gpupod.dev/v1alpha1",
        "kind": "GpuPod",
        "metadata": {
            "name": "g",
            "namespace": "ns",
            "uid": "u",
            "resourceVersion": "7",
            "labels": {"team": "a"},
            "annotations": {"note": "x", f"{PREFIX}/reconcile": '{"retries":3}'},
        },
        "spec": {"image": "img", "gpuType": "T", "gpuCount": 1, "paused": False},
        "status": status,
    }


def body(**status: Any) -> kopf.Body:
    return kopf.Body(raw_body(**status))


def changed(b: kopf.Body) -> bool:
    """Whether kopf would see a change (an update cause) in `b`."""
    old = DIFF_BASE.fetch(body=b)
    return old is None or old != DIFF_BASE.build(body=b)


def test_a_gpupod_never_handled_is_new() -> None:
    assert DIFF_BASE.fetch(body=body()) is None


def test_the_digest_written_with_the_result_means_nothing_changed() -> None:
    digest = DIFF_BASE.digest(body())
    assert not changed(body(lastHandled=digest, phase="Running"))


def test_a_spec_label_or_annotation_change_is_a_change() -> None:
    digest = DIFF_BASE.digest(body())
    for edit in (
        lambda raw: raw["spec"].update(paused=True),
        lambda raw: raw["metadata"]["labels"].update(team="b"),
        lambda raw: raw["metadata"]["annotations"].update(note="y"),
    ):
        raw = raw_body(lastHandled=digest)
        edit(raw)
        assert changed(kopf.Body(raw))


def test_the_status_fields_a_remote_action_records_are_part_of_it() -> None:
    """A pause whose answer was lost: pausedApplied differs from what was handled."""
    digest = DIFF_BASE.digest(body())
    assert changed(body(lastHandled=digest, pausedApplied=True))
    assert changed(body(lastHandled=digest, replacing=True))
    assert changed(body(lastHandled=digest, cost={"guard": "PriceExceeded"}))


def test_our_own_annotations_are_not_the_users() -> None:
    """kopf's retry progress changes on every retry; it must not look like a spec change."""
    raw = raw_body()
    raw["metadata"]["annotations"][f"{PREFIX}/reconcile"] = '{"retries":4}'
    raw["metadata"]["annotations"][f"{PREFIX}/touch-dummy"] = "now"
    assert DIFF_BASE.digest(kopf.Body(raw)) == DIFF_BASE.digest(body())


def test_a_gpupod_handled_by_an_older_version_uses_kopfs_annotation() -> None:
    raw = raw_body()
    essence = DIFF_BASE.build(body=kopf.Body(raw))
    raw["metadata"]["annotations"][f"{PREFIX}/last-handled-configuration"] = json.dumps(essence)
    assert DIFF_BASE.fetch(body=kopf.Body(raw)) == essence


def test_no_storage_writes_on_a_handled_change() -> None:
    b = body()
    patch = kopf.Patch()
    DIFF_BASE.store(body=b, patch=patch, essence=DIFF_BASE.build(body=b))
    progress = _Progress(prefix=PREFIX)
    progress.store(key=kopf.HandlerId("reconcile"), record={"success": True}, body=b, patch=patch)
    progress.purge(key=kopf.HandlerId("reconcile"), body=kopf.Body({"metadata": {}}), patch=patch)
    assert not patch, patch


def test_an_event_older_than_our_own_result_is_no_change() -> None:
    """The create marker's event can reach kopf after the handler wrote its result: its
    status has no digest yet, but this process handled that essence (a second create run
    would look the pod up by name, adopt it and write again)."""
    storage = type(DIFF_BASE)(prefix=PREFIX, key="last-handled-configuration")
    stale = body(createPending={"remoteName": "n"})
    assert storage.fetch(body=stale) is None  # never handled, as far as it knows
    storage.handled(stale, storage.digest(stale))
    assert storage.fetch(body=stale) == storage.build(body=stale)
    storage.forget("u")
    assert storage.fetch(body=stale) is None
