"""`controller.kube.KubeApi` on the official client, against a small local HTTP server: what it
retries (429, 5xx, refused connections), the 401 re-login that keeps the pool open, and the
three errors it raises."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import yaml
from aiohttp import web

from gpupod_operator.controller.kube import Conflict, Gone, KubeApi, KubeError, ObjectRef

PATH = "/apis/gpupod.dev/v1alpha1/namespaces/ns/gpupods/a"
REF = ObjectRef("ns", "a", "uid-a", "7")


class Server:
    def __init__(self) -> None:
        self.answers: list[int] = []  # statuses to give before a 200, in order
        self.seen: list[tuple[str, str]] = []  # (method, Authorization)
        self.tokens_ok = {"Bearer good"}
        self.override: Callable[[web.Request], Awaitable[web.Response]] | None = None

    async def handle(self, request: web.Request) -> web.Response:
        if self.override is not None:
            return await self.override(request)
        auth = request.headers.get("Authorization", "")
        self.seen.append((request.method, auth))
        if auth not in self.tokens_ok:
            return web.json_response({"message": "Unauthorized"}, status=401)
        if self.answers:
            status = self.answers.pop(0)
            return web.json_response({"message": f"answer {status}"}, status=status)
        body = await request.json() if request.can_read_body else None
        return web.json_response({"metadata": {"name": "a"}, "echo": body})


@pytest.fixture
async def server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Server, KubeApi, Path]]:
    srv = Server()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", srv.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    kubeconfig = tmp_path / "kubeconfig"
    write_kubeconfig(kubeconfig, f"http://127.0.0.1:{port}", "good")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    kube = await KubeApi.connect()
    try:
        yield srv, kube, kubeconfig
    finally:
        await kube.aclose()
        await runner.cleanup()


def write_kubeconfig(path: Path, server: str, token: str) -> None:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": token}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )


async def test_status_patch_is_a_merge_patch_with_the_precondition(server: tuple) -> None:
    srv, kube, _ = server
    result = await kube.patch_status(REF, {"phase": "Running"})
    assert result["echo"] == {"status": {"phase": "Running"}, "metadata": {"resourceVersion": "7"}}
    assert srv.seen == [("PATCH", "Bearer good")]


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_transient_answers_are_retried_even_for_a_patch(server: tuple, status: int) -> None:
    srv, kube, _ = server
    srv.answers = [status, status]
    await kube.patch_status(REF, {"phase": "Running"})
    assert len(srv.seen) == 3


async def test_errors_are_gone_conflict_or_kube_error(server: tuple) -> None:
    srv, kube, _ = server
    for status, error in ((404, Gone), (409, Conflict), (422, KubeError)):
        srv.answers = [status]
        with pytest.raises(error) as caught:
            await kube.get(REF)
        assert caught.value.status == status and f"answer {status}" in str(caught.value)
    srv.answers = [503] * 10
    with pytest.raises(KubeError):
        await kube.get(REF)


async def test_a_401_logs_in_again_without_closing_requests_in_flight(server: tuple) -> None:
    srv, kube, kubeconfig = server
    srv.tokens_ok = {"Bearer rotated"}
    write_kubeconfig(kubeconfig, kube._cfg.host, "rotated")  # the token was rotated
    results = await asyncio.gather(*(kube.get(REF) for _ in range(5)))
    assert all(r["metadata"]["name"] == "a" for r in results)
    assert srv.seen[-1] == ("GET", "Bearer rotated")


async def test_a_refused_connection_is_a_kube_error_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    write_kubeconfig(kubeconfig, "http://127.0.0.1:9", "good")  # the discard port: refused
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    kube = await KubeApi.connect()
    try:
        with pytest.raises(KubeError) as caught:
            await kube.get(REF)
        assert caught.value.status == 0 and "cannot reach" in str(caught.value)
    finally:
        await kube.aclose()


async def test_core_calls_secret_read_and_event_post(server: tuple) -> None:
    srv, kube, _ = server
    seen: list[tuple[str, str, object]] = []

    async def core(request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else None
        seen.append((request.method, request.path, body))
        if request.path.endswith("/secrets/missing"):
            return web.json_response({"message": "not found"}, status=404)
        return web.json_response({"data": {"token": "czNjcjN0"}}, status=200)

    srv.override = core
    assert await kube.get_secret_data("ns", "creds") == {"token": "s3cr3t"}
    assert await kube.get_secret_data("ns", "missing") is None
    await kube.post_event(REF, "Warning", "DeleteFailed", "cannot delete")
    method, path, event = seen[-1]
    assert (method, path) == ("POST", "/api/v1/namespaces/ns/events")
    assert isinstance(event, dict) and event["involvedObject"]["uid"] == "uid-a"
    assert (event["type"], event["reason"], event["message"]) == (
        "Warning",
        "DeleteFailed",
        "cannot delete",
    )
