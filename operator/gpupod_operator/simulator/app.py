"""HTTP glue of the simulator: routes, auth, fault injection, stats. No model logic here.

Choices where the sources disagree (reference §1, §3):
- a missing or wrong `X-Api-Key` (header matched case-insensitively) answers HTTP 401 with
  `{"code": 40101, ...}`; without `--api-key` any non-empty key is accepted.
- `--api-key` may repeat: each key is its own account (its index), which lists, reads and acts
  on its own pods only; a pod of another account answers "not found", as a real API does.
- business errors answer HTTP 200 with the code (10001, 12001, 13000, 10007), as the
  generated OpenAPI suggests; the `error_style=http` dialect answers 400/409/404 instead.
  A body that is not JSON answers HTTP 400 + 10001 (a Spring binding error), and so does a
  pod id that is not an integer.
- faults: `500` → HTTP 500 + code 10002; `429` → HTTP 429 + Retry-After: 1; `10002` → HTTP 200
  + code 10002; `timeout` → the operation is performed, the answer waits
  timeout_fault_seconds; `lost` → the operation is performed, then the answer is replaced by
  an HTTP 500 or the connection is dropped, alternately. Faults are drawn after the auth check
  and never apply to `/_sim/*`.
- stats count what the client saw: "ok", the business code, the HTTP status ("401", "429",
  "500"), or "dropped" for a dropped connection.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gpupod_operator.simulator import catalog, render
from gpupod_operator.simulator.config import FaultRule, SimulatorConfig
from gpupod_operator.simulator.errors import (
    INVALID_REQUEST,
    INVALID_STATE,
    POD_NOT_FOUND,
    RECORD_NOT_FOUND,
    SYSTEM_ERROR,
    UNAUTHORIZED,
    SimError,
    invalid,
)
from gpupod_operator.simulator.faults import FaultInjector
from gpupod_operator.simulator.state import Store
from gpupod_operator.simulator.stats import Stats
from gpupod_operator.simulator.statuses import SimStatus, parse_status
from gpupod_operator.simulator.validation import validate_create

logger = logging.getLogger(__name__)

_HTTP_STYLE = {INVALID_REQUEST: 400, INVALID_STATE: 409, POD_NOT_FOUND: 404, RECORD_NOT_FOUND: 404}


@dataclass
class Simulator:
    """Everything one simulated API holds; shared by the handlers through the app."""

    config: SimulatorConfig
    store: Store
    faults: FaultInjector
    stats: Stats

    @classmethod
    def from_config(cls, config: SimulatorConfig) -> Simulator:
        return cls(config, Store(config), FaultInjector(config.faults, config.seed), Stats())

    def reset(self) -> None:
        self.store.reset_pods()
        self.stats.reset()
        self.faults.reseed()


SIMULATOR = web.AppKey("simulator", Simulator)
Impl = Callable[[web.Request, Simulator], Awaitable[Any]]


def envelope(data: Any = None, *, code: int = 10000, message: str = "success") -> dict[str, Any]:
    return {"message": message, "code": code, "data": data}


class Encoded(bytes):
    """A success answer's `data`, already JSON (a pod list built from cached renderings)."""


def _success(data: Any) -> web.Response:
    if isinstance(data, Encoded):
        body = b'{"message": "success", "code": 10000, "data": ' + data + b"}"
        return web.Response(body=body, content_type="application/json")
    return _json(envelope(data))


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers)


def _error(err: SimError, sim: Simulator) -> web.Response:
    status = err.http_status
    if status is None:
        status = _HTTP_STYLE.get(err.code, 200) if sim.config.dialect.error_style == "http" else 200
    return _json(envelope(code=err.code, message=err.message), status)


ACCOUNT = web.RequestKey("account", int)  # the account of the request's API key


def _account(request: web.Request, keys: tuple[str, ...]) -> int | None:
    """The account (index of the key) the request's X-Api-Key belongs to; None: refused."""
    key = request.headers.get("X-Api-Key", "")
    if not key:
        return None
    if not keys:
        return 0
    # Compare with every key (no early exit): the answer time says nothing about the keys.
    matches = [hmac.compare_digest(key.encode(), k.encode()) for k in keys]
    return matches.index(True) if any(matches) else None


def _int_id(request: web.Request, name: str = "id") -> int:
    text = request.match_info[name]
    if not text.isdigit():
        raise SimError(INVALID_REQUEST, f"{name} must be an integer", http_status=400)
    return int(text)


async def _json_body(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise SimError(INVALID_REQUEST, "request body is not valid JSON", http_status=400) from None


def _log(request: web.Request, op: str, result: str, status: int | str, started: float) -> None:
    # Method, path and query only: never headers (API key) or bodies (env values).
    logger.debug(
        "sim %s %s -> %s %s [%s] %.1fms",
        request.method,
        request.path_qs,
        status,
        result,
        op,
        (time.monotonic() - started) * 1000,
    )


def _api(op: str, impl: Impl) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Wrap an operation with auth, fault injection, stats and logging."""

    async def handler(request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        sim = request.app[SIMULATOR]
        account = _account(request, sim.config.api_keys)
        if account is None:
            sim.stats.request(op, "401")
            _log(request, op, "401", 401, started)
            message = "Unauthorized: missing or invalid X-Api-Key"
            return _json(envelope(code=UNAUTHORIZED, message=message), 401)

        request[ACCOUNT] = account
        sim.stats.account(account, op)
        fault = sim.faults.draw(op)
        if fault is not None:
            sim.stats.fault(op, fault)
        if fault in ("500", "429", "10002"):
            sim.stats.request(op, fault)
            _log(request, op, f"fault {fault}", 200 if fault == "10002" else int(fault), started)
            if fault == "429":
                body = envelope(code=429, message="Too many requests")
                return _json(body, 429, {"Retry-After": "1"})
            status = 500 if fault == "500" else 200
            return _json(envelope(code=SYSTEM_ERROR, message="System error"), status)

        try:
            response = _success(await impl(request, sim))
            result = "ok"
        except SimError as err:
            response, result = _error(err, sim), str(err.code)

        if fault == "lost":
            if sim.faults.lost_mode() == "drop":
                sim.stats.request(op, "dropped")
                _log(request, op, "fault lost: dropped", "-", started)
                if request.transport is not None:
                    request.transport.abort()
                return web.Response(status=500)  # never reaches the client
            result = "500"
            response = _json(envelope(code=SYSTEM_ERROR, message="System error"), 500)
        sim.stats.request(op, result)
        note = result if fault is None else f"{result} (fault {fault})"
        _log(request, op, note, response.status, started)
        if fault == "timeout":
            # The work is done; the client gives up waiting for the answer.
            await asyncio.sleep(sim.config.timeout_fault_seconds)
        return response

    return handler


# --- pods --------------------------------------------------------------------------------


def _pod(sim: Simulator, pod: Any) -> dict[str, Any]:
    return render.render_pod(pod, sim.store.clock(), sim.config.dialect)


def _action_data(sim: Simulator, pod: Any) -> Any:
    mode = sim.config.dialect.action_data
    return True if mode == "true" else None if mode == "null" else _pod(sim, pod)


async def create_pod(request: web.Request, sim: Simulator) -> Any:
    spec = validate_create(
        await _json_body(request), credentials=sim.store.credentials, volumes=sim.store.volumes
    )
    pod = sim.store.create_pod(spec, request[ACCOUNT])
    if sim.config.dialect.create_data == "id":
        return str(pod.id) if sim.config.dialect.id_type == "string" else pod.id
    return _pod(sim, pod)


async def get_pod(request: web.Request, sim: Simulator) -> Any:
    return _pod(sim, sim.store.get_pod(_int_id(request), request[ACCOUNT]))


def _multi(request: web.Request, name: str) -> list[str]:
    # Comma-separated, repeated, or both.
    return [
        v.strip() for raw in request.query.getall(name, []) for v in raw.split(",") if v.strip()
    ]


async def list_pods(request: web.Request, sim: Simulator) -> Any:
    statuses: set[SimStatus] = set()
    for word in _multi(request, "statusList"):
        status = parse_status(word)
        if status is None:
            raise invalid(f"statusList: unknown status {word!r}")
        statuses.add(status)
    regions = set(_multi(request, "regionList"))
    now, dialect = sim.store.clock(), sim.config.dialect
    pods = [
        render.encode_pod(p, now, dialect)
        for p in sim.store.list_pods(regions or None, statuses or None, request[ACCOUNT])
    ]
    return Encoded(render.encode_list(pods, dialect.list_shape))


async def delete_pod(request: web.Request, sim: Simulator) -> Any:
    return _action_data(sim, sim.store.delete_pod(_int_id(request), request[ACCOUNT]))


async def pause_pod(request: web.Request, sim: Simulator) -> Any:
    return _action_data(sim, sim.store.pause_pod(_int_id(request), request[ACCOUNT]))


async def resume_pod(request: web.Request, sim: Simulator) -> Any:
    return _action_data(sim, sim.store.resume_pod(_int_id(request), request[ACCOUNT]))


async def gpu_types(request: web.Request, sim: Simulator) -> Any:
    types = catalog.render_catalog(sim.config.dialect.price_type == "string")
    return render.page(types) if sim.config.dialect.list_shape == "items" else types


# --- registry credentials and volumes ----------------------------------------------------


async def list_credentials(request: web.Request, sim: Simulator) -> Any:
    return [render.render_credential(c) for c in sim.store.credentials.values()]


async def get_credential(request: web.Request, sim: Simulator) -> Any:
    return render.render_credential(sim.store.get_credential(_int_id(request)))


async def create_credential(request: web.Request, sim: Simulator) -> Any:
    return render.render_credential(sim.store.create_credential(await _json_body(request)))


async def delete_credential(request: web.Request, sim: Simulator) -> Any:
    sim.store.delete_credential(_int_id(request))
    return True


def _query_int(request: web.Request, name: str, default: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    if not text.isdigit() or int(text) < 1:
        raise invalid(f"{name} must be a positive integer")
    return int(text)


async def list_volumes(request: web.Request, sim: Simulator) -> Any:
    storage = request.query.get("storageType")
    if not storage:
        raise invalid("storageType is required")
    region = request.query.get("region")
    volumes = [
        render.render_volume(v, sim.store)
        for v in sim.store.volumes.values()
        if v.storage_type == storage and (not region or v.region == region)
    ]
    return render.page(volumes, _query_int(request, "page", 1), _query_int(request, "size", 10))


async def get_volume(request: web.Request, sim: Simulator) -> Any:
    return render.render_volume(sim.store.get_volume(_int_id(request)), sim.store)


async def create_volume(request: web.Request, sim: Simulator) -> Any:
    volume = sim.store.create_volume(await _json_body(request))
    return render.render_volume(volume, sim.store)


async def delete_volume(request: web.Request, sim: Simulator) -> Any:
    sim.store.delete_volume(_int_id(request))
    return True


# --- admin (/_sim, no key, no faults) ----------------------------------------------------


async def _admin_body(request: web.Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="body is not valid JSON") from None


async def admin_stats(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    return _json({**sim.stats.snapshot(), "pods": sim.store.pod_counts()})


async def admin_pods(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    now = sim.store.clock()
    # Each pod with the account (index of its key) that owns it.
    return _json(
        [
            {**render.render_pod(p, now, sim.config.dialect), "account": p.account}
            for p in sim.store.iter_pods()
        ]
    )


async def admin_force_status(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    body = await _admin_body(request)
    word = body.get("status") if isinstance(body, dict) else None
    status = parse_status(word) if isinstance(word, str | int) else None
    if status is None:
        return _json(envelope(code=INVALID_REQUEST, message=f"unknown status {word!r}"), 400)
    try:
        pod = sim.store.force_status(_int_id(request), status)
    except SimError as err:
        return _error(err, sim)
    return _json(_pod(sim, pod))


async def admin_vanish(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    try:
        sim.store.vanish(_int_id(request))
    except SimError as err:
        return _error(err, sim)
    return _json({"deleted": True})


async def admin_get_faults(request: web.Request) -> web.Response:
    return _json({"faults": [str(r) for r in request.app[SIMULATOR].faults.rules]})


async def admin_put_faults(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    body = await _admin_body(request)
    texts = body.get("faults") if isinstance(body, dict) else None
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise web.HTTPBadRequest(text='expected {"faults": ["OP:KIND:RATE", ...]}')
    try:
        rules = [FaultRule.parse(t) for t in texts]
    except ValueError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    sim.faults.replace(rules)
    logger.info("sim faults set to %s", [str(r) for r in rules])
    return _json({"faults": [str(r) for r in rules]})


async def admin_reset(request: web.Request) -> web.Response:
    request.app[SIMULATOR].reset()
    return _json({"reset": True})


async def admin_health(request: web.Request) -> web.Response:
    return _json({"ok": True})


@web.middleware
async def _log_other_requests(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """One debug line for requests the API wrapper does not log (admin, unknown paths)."""
    if request.path.startswith("/v2/") and request.match_info.route.resource is not None:
        return await handler(request)
    started = time.monotonic()
    kind = "admin" if request.path.startswith("/_sim/") else "other"
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _log(request, kind, exc.reason, exc.status, started)
        raise
    _log(request, kind, "ok", response.status, started)
    return response


def build_app(config: SimulatorConfig, simulator: Simulator | None = None) -> web.Application:
    """The simulator as an aiohttp application; serve it with `SimulatorServer` or aiohttp."""
    app = web.Application(middlewares=[_log_other_requests])
    app[SIMULATOR] = simulator or Simulator.from_config(config)
    pods = [
        ("POST", "/v2/pods", "create", create_pod),
        ("GET", "/v2/pods", "list", list_pods),
        ("GET", "/v2/pods/{id}", "get", get_pod),
        ("DELETE", "/v2/pods/{id}", "delete", delete_pod),
        ("POST", "/v2/pods/{id}/pause", "pause", pause_pod),
        ("POST", "/v2/pods/{id}/resume", "resume", resume_pod),
        ("GET", "/v2/vms/types", "types", gpu_types),
        ("GET", "/v2/container-registry-auths", "registry_auths", list_credentials),
        ("POST", "/v2/container-registry-auths", "registry_auths", create_credential),
        ("GET", "/v2/container-registry-auths/{id}", "registry_auths", get_credential),
        ("DELETE", "/v2/container-registry-auths/{id}", "registry_auths", delete_credential),
        ("GET", "/v2/volumes", "volumes", list_volumes),
        ("POST", "/v2/volumes", "volumes", create_volume),
        ("GET", "/v2/volumes/{id}", "volumes", get_volume),
        ("DELETE", "/v2/volumes/{id}", "volumes", delete_volume),
    ]
    for method, path, op, impl in pods:
        app.router.add_route(method, path, _api(op, impl))
    app.router.add_get("/_sim/stats", admin_stats)
    app.router.add_get("/_sim/pods", admin_pods)
    app.router.add_put("/_sim/pods/{id}/status", admin_force_status)
    app.router.add_delete("/_sim/pods/{id}", admin_vanish)
    app.router.add_get("/_sim/faults", admin_get_faults)
    app.router.add_put("/_sim/faults", admin_put_faults)
    app.router.add_post("/_sim/reset", admin_reset)
    app.router.add_get("/_sim/health", admin_health)
    return app
