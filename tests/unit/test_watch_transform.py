"""controller.watch_transform: kopf's watchers yield events without managedFields."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from kopf._cogs.clients import watching
from kopf._core.reactor import queueing

from gpupod_operator.controller import watch_transform


def _event(name: str) -> dict[str, Any]:
    return {
        "type": "ADDED",
        "object": {
            "metadata": {
                "name": name,
                "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
                "annotations": {"a": "b"},
            },
            "spec": {"gpuCount": 1},
        },
    }


def test_strip_removes_only_managed_fields_and_passes_anything_else() -> None:
    event = watch_transform.strip_managed_fields(_event("a"))
    assert event["object"]["metadata"] == {"name": "a", "annotations": {"a": "b"}}
    assert event["object"]["spec"] == {"gpuCount": 1}
    bookmark = watching.Bookmark.LISTED
    assert watch_transform.strip_managed_fields(bookmark) is bookmark
    assert watch_transform.strip_managed_fields({"type": "ERROR", "object": None}) == {
        "type": "ERROR",
        "object": None,
    }


async def test_install_wraps_the_function_kopfs_watchers_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, Any] = {}

    async def original(**kwargs: Any) -> AsyncIterator[Any]:
        seen.update(kwargs)
        yield _event("a")
        yield watching.Bookmark.LISTED
        yield _event("b")

    monkeypatch.setattr(watching, "infinite_watch", original)  # restored after the test
    assert watch_transform.install() is True
    wrapped = watching.infinite_watch
    assert wrapped is not original
    assert watch_transform.install() is True
    assert watching.infinite_watch is wrapped  # idempotent: wrapped once
    # queueing.watcher calls it through the module, as the pinned kopf does.
    assert queueing.watching is watching
    stream = watching.infinite_watch(resource="r", namespace=None)
    events = [e async for e in stream]
    assert seen == {"resource": "r", "namespace": None}
    assert events[1] is watching.Bookmark.LISTED
    assert [e["object"]["metadata"]["name"] for e in (events[0], events[2])] == ["a", "b"]
    assert all("managedFields" not in e["object"]["metadata"] for e in (events[0], events[2]))


def test_without_the_function_nothing_is_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(watching, "infinite_watch")
    assert watch_transform.install() is False
    assert not hasattr(watching, "infinite_watch")


def test_the_pinned_kopf_reads_its_events_from_that_function() -> None:
    """What `install` relies on; a kopf upgrade that moves it fails here, not silently."""
    import inspect

    assert inspect.isasyncgenfunction(watching.infinite_watch)
    assert "watching.infinite_watch(" in inspect.getsource(queueing.watcher)
