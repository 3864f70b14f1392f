"""Leader election on a `coordination.k8s.io/v1` Lease (`--leader-election`), on `kubernetes.aio`.

Not the library's `kubernetes.aio.leaderelection`: that one keeps the work running when the
Lease is lost and never releases it. Here (the rules are in `domain.leadership`):

- a standby polls the Lease every retry period and takes it when it is free or expired;
- the holder renews every retry period; if no renew succeeds within the renew deadline, the
  process ends at once with `os._exit(1)` (controller-runtime's behaviour): no handler drains,
  no Yotta call follows, and Kubernetes restarts the pod as a standby;
- every Yotta API request passes `check()` first (the fenced transport in `handlers`), which
  ends the process the same way when the deadline has passed: a process frozen past its
  Lease (SIGSTOP, a stalled VM) that wakes up never sends anything;
- a create starts only while `may_create()`: it can finish or time out before another process
  could hold the Lease;
- `release()` (after kopf has stopped, on SIGTERM) clears the holder, so a standby takes over
  within one retry period instead of a whole lease duration.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import httpcore
import httpx
from kubernetes.aio import client as k8s

from gpupod_operator.controller.kube import load_configuration
from gpupod_operator.domain import leadership as ld

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
EXIT_LOST = 1
DEFAULT_TIMINGS = ld.Timings()


def default_identity() -> str:
    """The pod name (the hostname in a pod) and a random suffix, as client-go does."""
    return f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def default_namespace() -> str | None:
    try:
        with open(SERVICE_ACCOUNT_NAMESPACE, encoding="utf-8") as f:
            return f.read().strip() or None
    except OSError:
        return None


def _record(lease: k8s.V1Lease) -> ld.Record:
    spec = lease.spec or k8s.V1LeaseSpec()
    return ld.Record(
        holder=spec.holder_identity or None,
        lease_seconds=int(spec.lease_duration_seconds or 0),
        transitions=int(spec.lease_transitions or 0),
        acquired_at=spec.acquire_time,
        renewed_at=spec.renew_time,
    )


def _spec(record: ld.Record) -> k8s.V1LeaseSpec:
    return k8s.V1LeaseSpec(
        holder_identity=record.holder or None,
        lease_duration_seconds=record.lease_seconds,
        lease_transitions=record.transitions,
        acquire_time=record.acquired_at,
        renew_time=record.renewed_at,
    )


def _exit_lost(reason: str) -> None:
    log.critical("leader election lost (%s): exiting now, without draining", reason)
    logging.shutdown()
    os._exit(EXIT_LOST)


class LeaderElector:
    def __init__(
        self,
        namespace: str,
        name: str,
        *,
        identity: str | None = None,
        timings: ld.Timings = DEFAULT_TIMINGS,
        create_timeout: float = 15.0,
        on_change: Callable[[bool], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        exit_lost: Callable[[str], None] = _exit_lost,
    ) -> None:
        self.namespace, self.name = namespace, name
        self.identity = identity or default_identity()
        self.timings = timings
        self.create_timeout = create_timeout
        self.on_change = on_change or (lambda leading: None)  # e.g. the gpupod_leader gauge
        self._clock = clock
        self._exit_lost = exit_lost
        self._api: k8s.ApiClient | None = None
        self._seen: ld.Observation | None = None
        self._lease: k8s.V1Lease | None = None  # as last read or written (its resourceVersion)
        self.last_renew: float | None = None  # monotonic time the last successful write was sent
        # True while the last round reached the apiserver: a standby's readiness (/readyz).
        self.participating = False
        self._renewing: asyncio.Task[None] | None = None

    @property
    def leading(self) -> bool:
        return self.last_renew is not None

    def __repr__(self) -> str:
        return f"LeaderElector({self.namespace}/{self.name}, {self.identity})"

    # ------------------------------------------------------------ the fence (synchronous)

    def check(self) -> None:
        """Before any Yotta request: exits the process if the renew deadline has passed."""
        if self.last_renew is None:
            self._exit_lost("not the holder")
        elif ld.must_exit(self._clock(), self.last_renew, self.timings):
            self._exit_lost(f"not renewed within {self.timings.renew_deadline:g}s")

    def may_create(self) -> bool:
        """Whether a create may start now (it ends before the Lease could pass)."""
        self.check()
        assert self.last_renew is not None
        ok = ld.may_start_create(self._clock(), self.last_renew, self.timings, self.create_timeout)
        if not ok:
            log.warning("create deferred: the Lease was renewed too long ago to start one now")
        return ok

    # ------------------------------------------------------------ Lease I/O

    async def _coordination(self) -> k8s.CoordinationV1Api:
        if self._api is None:
            self._api = k8s.ApiClient(await load_configuration())
            self._api.user_agent = "gpupod-operator"
        return k8s.CoordinationV1Api(self._api)

    async def _try_claim(self) -> bool:
        """One round: read the Lease, and write it if we may take or keep it."""
        api = await self._coordination()
        timeout = max(0.5, self.timings.retry)
        try:
            lease = await api.read_namespaced_lease(
                self.name, self.namespace, _request_timeout=timeout
            )
        except k8s.ApiException as e:
            if e.status != 404:
                raise
            lease = None
        now = self._clock()
        if lease is not None:
            self._seen = ld.observe(self._seen, _record(lease), now)
        else:
            self._seen = None
        wall = dt.datetime.now(dt.UTC)
        record = ld.claim(self._seen, self.identity, self.timings, now, wall)
        if record is None:
            return False
        sent = self._clock()  # others see the write later than this: expiry runs later for them
        if lease is None:
            body = k8s.V1Lease(
                metadata=k8s.V1ObjectMeta(name=self.name, namespace=self.namespace),
                spec=_spec(record),
            )
            written = await api.create_namespaced_lease(
                self.namespace, body, _request_timeout=timeout
            )
        else:
            # A replace carries the resourceVersion read above: of two claimants, one wins.
            lease.spec = _spec(record)
            written = await api.replace_namespaced_lease(
                self.name, self.namespace, lease, _request_timeout=timeout
            )
        self._lease = written
        self._seen = ld.observe(self._seen, _record(written), self._clock())
        was_leading = self.leading
        self.last_renew = sent
        if not was_leading:
            log.info(
                "became the leader (Lease %s/%s, identity %s, transitions %d)",
                self.namespace,
                self.name,
                self.identity,
                record.transitions,
            )
            self.on_change(True)
        return True

    async def _round(self) -> bool:
        try:
            won = await asyncio.wait_for(self._try_claim(), timeout=self.timings.retry * 2)
        except k8s.ApiException as e:
            self.participating = e.status == 409  # 409: another process wrote it first
            if e.status != 409:
                log.warning("Lease %s/%s: %s %s", self.namespace, self.name, e.status, e.reason)
            return False
        except Exception as e:  # any I/O error: try again next round
            self.participating = False
            log.warning("Lease %s/%s: %r", self.namespace, self.name, e)
            return False
        self.participating = True
        return won

    async def acquire(self) -> None:
        """Wait (as a standby) until this process holds the Lease."""
        log.info("standby: waiting for Lease %s/%s as %s", self.namespace, self.name, self.identity)
        self.on_change(False)
        while True:
            if await self._round():
                return
            await asyncio.sleep(self.timings.retry)

    def start_renewing(self) -> None:
        assert self.leading, "acquire() first"
        self._renewing = asyncio.create_task(self._renew_loop(), name="gpupod-lease-renew")

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(self.timings.retry)
            assert self.last_renew is not None
            left = self.last_renew + self.timings.renew_deadline - self._clock()
            if left <= 0:
                self._exit_lost(f"not renewed within {self.timings.renew_deadline:g}s")
                return
            try:
                renewed = await asyncio.wait_for(self._round(), timeout=left)
            except TimeoutError:
                renewed = False
            if not renewed:
                holder = self._seen.record.holder if self._seen else None
                if holder not in (None, self.identity):
                    self._exit_lost(f"the Lease is held by {holder}")
                    return
                self.check()  # exits once the deadline has passed

    async def release(self) -> None:
        """Give the Lease up (after kopf stopped: nothing of ours runs any more)."""
        if self._renewing is not None:
            self._renewing.cancel()
            await asyncio.gather(self._renewing, return_exceptions=True)
            self._renewing = None
        lease, was_leading = self._lease, self.leading
        self.last_renew = None
        if was_leading:
            self.on_change(False)
        if lease is None or not was_leading:
            await self.aclose()
            return
        try:
            api = await self._coordination()
            lease.spec = _spec(ld.released(_record(lease), dt.datetime.now(dt.UTC)))
            await asyncio.wait_for(
                api.replace_namespaced_lease(self.name, self.namespace, lease),
                timeout=max(1.0, self.timings.retry),
            )
            log.info("released Lease %s/%s", self.namespace, self.name)
        except Exception as e:  # the Lease then expires instead
            log.warning("could not release Lease %s/%s: %r", self.namespace, self.name, e)
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        if self._api is not None:
            await self._api.close()  # type: ignore[no-untyped-call]
            self._api = None


class _FencedStream(httpcore.AsyncNetworkStream):
    def __init__(self, inner: httpcore.AsyncNetworkStream, check: Callable[[], None]) -> None:
        self._inner, self._check = inner, check

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        # The last moment before bytes leave; no await lies between the check and the send.
        self._check()
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's signature
    ) -> httpcore.AsyncNetworkStream:
        tls = await self._inner.start_tls(ssl_context, server_hostname, timeout)
        return _FencedStream(tls, self._check)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _FencedBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, inner: httpcore.AsyncNetworkBackend, check: Callable[[], None]) -> None:
        self._inner, self._check = inner, check

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's signature
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _FencedStream(stream, self._check)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's signature
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_unix_socket(path, timeout, socket_options)
        return _FencedStream(stream, self._check)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class FencedTransport(httpx.AsyncHTTPTransport):
    """The Yotta client's transport: `check` runs when a request is handed over and again
    right before each write to the socket. A check made only when the request starts would
    leave the connect (and any wait for a pooled connection) between it and the send: a
    process frozen there (SIGSTOP) sent its create after waking, long after its Lease passed
    (found by tests/e2e/test_ha.py)."""

    def __init__(self, check: Callable[[], None], *, max_connections: int = 32) -> None:
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        super().__init__(limits=limits)
        pool = self._pool
        # httpx has no parameter for httpcore's network backend; without a proxy (none is
        # configured here) its pool is a plain AsyncConnectionPool that makes connections
        # with this backend.
        assert isinstance(pool, httpcore.AsyncConnectionPool), type(pool)
        pool._network_backend = _FencedBackend(pool._network_backend, check)
        self._check = check

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._check()
        return await super().handle_async_request(request)
