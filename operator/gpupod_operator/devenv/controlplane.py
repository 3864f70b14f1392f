"""A real etcd + kube-apiserver + kube-controller-manager on loopback.

Everything the API server does by itself works (CRDs and their validation, CEL, the status
subresource, finalizers, watches, RBAC, TokenRequest), and kube-controller-manager does what a
real cluster's does: namespace deletion completes, garbage collection follows ownerReferences,
every namespace gets its ``default`` ServiceAccount and ``kube-root-ca.crt``, Deployments get
ReplicaSets and Pods. No kubelet or scheduler: Pods stay Pending.

Usable from pytest (``with ControlPlane(tmp) as cp: ...``) and from ``make dev-up``: every child
runs in its own session, so it outlives the Python process that started it; :meth:`state` /
:meth:`attach` carry it to the next process (``make dev-down``).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml

from .certs import CertificateAuthority, rsa_private_key_pem, write_private
from .kubeconfig import read_kubeconfig, write_kubeconfig
from .paths import control_plane_bin_dir, kubectl_path, require_control_plane_binaries
from .process import ManagedProcess, ProcessExitedError, ProcessRecord, free_port

__all__ = ["ApiError", "ControlPlane", "KubectlError"]

ADMIN_USER = "gpupod-dev-admin"
#: The user the bootstrap RBAC policy grants ``system:kube-controller-manager`` to.
CONTROLLER_MANAGER_USER = "system:kube-controller-manager"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
SERVICE_CIDR = "10.0.0.0/24"
#: The `kubernetes` Service's ClusterIP (the first address of SERVICE_CIDR): in-cluster clients
#: (KUBERNETES_SERVICE_HOST) reach the apiserver there, so the serving cert names it.
KUBERNETES_SERVICE_IP = "10.0.0.1"
KUBERNETES_SERVICE_NAMES = (
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
CRD_API = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
_PORT_RACE_MARKERS = ("address already in use", "bind: address")


class ApiError(RuntimeError):
    """A non-2xx answer from kube-apiserver; ``body`` is the decoded ``Status`` if there is one."""

    def __init__(self, method: str, path: str, status: int, body: Any) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.body = body
        if isinstance(body, dict):
            self.reason = str(body.get("reason", ""))
            self.message = str(body.get("message", body))
        else:
            self.reason = ""
            self.message = str(body)
        super().__init__(f"{method} {path} -> {status} {self.reason}: {self.message}")


class KubectlError(subprocess.CalledProcessError):
    """kubectl exited non-zero; the message includes its stderr."""

    def __str__(self) -> str:
        stderr = self.stderr.strip() if isinstance(self.stderr, str) else ""
        return f"{' '.join(map(str, self.cmd))} exited with {self.returncode}: {stderr}"


class ControlPlane:
    """etcd + kube-apiserver (RBAC, a static admin token, service-account tokens) and
    kube-controller-manager (its own client-certificate identity; ``controller_manager=False``
    leaves it out).

    Files under ``run_dir``: ``pki/`` (certificates, keys, ``tokens.csv``), ``etcd-data/``,
    ``admin.kubeconfig``, ``kube-controller-manager.kubeconfig``, ``kcm-certs/``; logs under
    ``log_dir`` (default ``run_dir/logs``). Without ``run_dir`` a temporary directory is used and
    removed by :meth:`stop`.
    """

    def __init__(
        self,
        run_dir: Path | None = None,
        *,
        bin_dir: Path | None = None,
        log_dir: Path | None = None,
        start_timeout: float = 90.0,
        extra_apiserver_args: Sequence[str] = (),
        stop_grace: float = 15.0,
        controller_manager: bool = True,
    ) -> None:
        self._owns_run_dir = run_dir is None
        self.run_dir = (
            Path(run_dir) if run_dir is not None else Path(tempfile.mkdtemp(prefix="gpupod-cp-"))
        )
        self.bin_dir = bin_dir if bin_dir is not None else control_plane_bin_dir()
        self.log_dir = Path(log_dir) if log_dir is not None else self.run_dir / "logs"
        self.start_timeout = start_timeout
        self.extra_apiserver_args = list(extra_apiserver_args)
        self.stop_grace = stop_grace
        self.with_controller_manager = controller_manager
        self.pki_dir = self.run_dir / "pki"
        self.etcd_data_dir = self.run_dir / "etcd-data"
        self.ca_path = self.pki_dir / "serving-ca.crt"
        self.admin_kubeconfig = self.run_dir / "admin.kubeconfig"
        self.controller_manager_kubeconfig = self.run_dir / "kube-controller-manager.kubeconfig"
        self.server = ""
        self.etcd_url = ""
        self.etcd: ManagedProcess | None = None
        self.apiserver: ManagedProcess | None = None
        self.controller_manager: ManagedProcess | None = None
        self._controller_manager_port = 0
        self._admin_token = ""
        self._ssl: ssl.SSLContext | None = None
        self._client_ca_cache: CertificateAuthority | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<ControlPlane {self.server or '(not started)'} {state} run_dir={self.run_dir}>"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        expected = [self.etcd, self.apiserver]
        if self.with_controller_manager:
            expected.append(self.controller_manager)
        return all(p is not None and p.running for p in expected)

    @property
    def processes(self) -> list[ManagedProcess]:
        """The children in start order (etcd first)."""
        children = (self.etcd, self.apiserver, self.controller_manager)
        return [p for p in children if p is not None]

    @property
    def admin_token(self) -> str:
        return self._admin_token

    def start(self, *, wait_controller_manager: bool = True) -> Self:
        """Start etcd, kube-apiserver, then kube-controller-manager; return when ``/readyz`` is
        ok, ``default`` exists and (unless ``wait_controller_manager`` is false: then call
        :meth:`wait_controller_manager` later, to overlap its start with other work)
        kube-controller-manager's ``/healthz`` is ok.

        On any failure (including Ctrl-C) everything started so far is stopped before the
        exception propagates.
        """
        require_control_plane_binaries(self.bin_dir)
        try:
            self._write_pki()
            attempts = 3
            for attempt in range(1, attempts + 1):
                try:
                    self._start_etcd()
                    self._start_apiserver()
                    if self.with_controller_manager:
                        self._start_controller_manager()  # healthy: wait_controller_manager()
                    break
                except ProcessExitedError as exc:
                    race = any(m in exc.log_tail for m in _PORT_RACE_MARKERS)
                    if not race or attempt == attempts:
                        raise
                    self._stop_processes()  # a port was taken meanwhile: new ports, again
            self._wait_default_namespace()
            write_kubeconfig(
                self.admin_kubeconfig,
                server=self.server,
                ca_pem=self.ca_path.read_bytes(),
                token=self._admin_token,
            )
            if wait_controller_manager:
                self.wait_controller_manager()
            return self
        except BaseException:
            self.stop()
            raise

    def wait_controller_manager(self) -> None:
        """Return once kube-controller-manager's ``/healthz`` is ok (at once without one); if it
        lost its port to another process meanwhile, start it again on a new one."""
        if not self.with_controller_manager:
            return
        for attempt in range(1, 4):
            try:
                self._wait_controller_manager_healthy()
                return
            except ProcessExitedError as exc:
                race = any(m in exc.log_tail for m in _PORT_RACE_MARKERS)
                if not race or attempt == 3:
                    raise
                self._start_controller_manager()

    def stop(self, *, remove_data: bool = True) -> None:
        """Stop kube-controller-manager, kube-apiserver, then etcd (by PID, SIGTERM then SIGKILL);
        idempotent.

        ``remove_data`` deletes etcd's data directory (and the whole ``run_dir`` when it is a
        temporary one we created); logs in a caller-chosen directory are kept.
        """
        try:
            self._stop_processes()
        finally:
            if remove_data:
                if self._owns_run_dir:
                    shutil.rmtree(self.run_dir, ignore_errors=True)
                else:
                    shutil.rmtree(self.etcd_data_dir, ignore_errors=True)

    def _stop_processes(self) -> None:
        errors: list[BaseException] = []
        for process in reversed(self.processes):
            try:
                process.stop(grace=self.stop_grace)
            except Exception as exc:  # keep stopping the others
                errors.append(exc)
        if errors:
            raise errors[0]

    # -- state for a later process ----------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """JSON-able description for :meth:`attach` (no secrets: the token stays in files)."""
        return {
            "run_dir": str(self.run_dir),
            "bin_dir": str(self.bin_dir),
            "log_dir": str(self.log_dir),
            "server": self.server,
            "etcd_url": self.etcd_url,
            "admin_kubeconfig": str(self.admin_kubeconfig),
            "controller_manager": self.with_controller_manager,
            "processes": [p.record().to_json() for p in self.processes],
        }

    @classmethod
    def attach(cls, state: Mapping[str, Any]) -> ControlPlane:
        """A handle on a control plane started by another process (``make dev-up``)."""
        plane = cls(
            Path(state["run_dir"]),
            bin_dir=Path(state["bin_dir"]),
            log_dir=Path(state["log_dir"]),
            controller_manager=bool(state.get("controller_manager", False)),
        )
        plane.server = str(state["server"])
        plane.etcd_url = str(state["etcd_url"])
        plane.admin_kubeconfig = Path(state["admin_kubeconfig"])
        records = {r["name"]: ProcessRecord.from_json(r) for r in state["processes"]}
        if "etcd" in records:
            plane.etcd = ManagedProcess.adopt(records["etcd"])
        if "kube-apiserver" in records:
            plane.apiserver = ManagedProcess.adopt(records["kube-apiserver"])
        if "kube-controller-manager" in records:
            plane.controller_manager = ManagedProcess.adopt(records["kube-controller-manager"])
        with contextlib.suppress(OSError, KeyError, ValueError, StopIteration):
            plane._admin_token = read_kubeconfig(plane.admin_kubeconfig).token or ""
        return plane

    # -- API access -------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        *,
        content_type: str | None = None,
        timeout: float = 30.0,
    ) -> dict[str, Any]:
        """One API call as the admin (or as ``token``); the decoded JSON answer.

        PATCH defaults to a JSON merge patch. Raises :class:`ApiError` for non-2xx answers.
        """
        if content_type is None:
            content_type = (
                "application/merge-patch+json" if method.upper() == "PATCH" else "application/json"
            )
        _status, data = self._http(
            method, path, body=body, token=token, content_type=content_type, timeout=timeout
        )
        if not data:
            return {}
        decoded: dict[str, Any] = json.loads(data)
        return decoded

    def get_text(self, path: str, token: str | None = None) -> str:
        """GET a plain-text endpoint such as ``/readyz`` or ``/livez?verbose``."""
        _status, data = self._http("GET", path, token=token)
        return data.decode()

    def _http(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        token: str | None = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
        anonymous: bool = False,
    ) -> tuple[int, bytes]:
        if not self.server:
            raise RuntimeError("the control plane is not started")
        headers = {"Accept": "application/json, */*", "Content-Type": content_type}
        if not anonymous:
            headers["Authorization"] = f"Bearer {token or self._admin_token}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.server + path, data=data, method=method.upper(), headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=self._tls()) as response:
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                decoded: Any = json.loads(raw)
            except ValueError:
                decoded = raw.decode(errors="replace")
            raise ApiError(method.upper(), path, exc.code, decoded) from None

    def _tls(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context(cafile=str(self.ca_path))
        return self._ssl

    def kubectl(
        self,
        *args: str,
        kubeconfig: Path | None = None,
        input: str | None = None,
        check: bool = True,
        timeout: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this control plane (as the admin unless ``kubeconfig`` given)."""
        command = [
            str(kubectl_path()),
            f"--kubeconfig={kubeconfig or self.admin_kubeconfig}",
            f"--cache-dir={self.run_dir / 'kubectl-cache'}",
            *args,
        ]
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        result = subprocess.run(
            command,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, command, result.stdout, result.stderr)
        return result

    # -- conveniences -----------------------------------------------------------------------

    def create_namespace(self, name: str, labels: Mapping[str, str] | None = None) -> str:
        """Create a namespace (no error if it exists). With kube-controller-manager, also wait
        for its ``default`` ServiceAccount: ServiceAccount admission refuses Pods before it."""
        body = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": dict(labels or {})},
        }
        try:
            self.request("POST", "/api/v1/namespaces", body)
        except ApiError as exc:
            if exc.status != 409:
                raise
        if self.with_controller_manager:
            self._wait_default_service_account(name)
        return name

    def _wait_default_service_account(self, namespace: str) -> None:
        """Milliseconds once kube-controller-manager runs; its first start can take longer
        on a busy machine, hence the start timeout."""
        path = f"/api/v1/namespaces/{namespace}/serviceaccounts/default"
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                self.request("GET", path, timeout=5)
                return
            except ApiError as exc:
                if exc.status != 404:
                    raise
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"no ServiceAccount {namespace}/default after {self.start_timeout:g}s: "
                    "kube-controller-manager creates it (see its log)"
                )
            time.sleep(0.05)

    def apply_crds(self, directory: Path, timeout: float = 60.0) -> list[str]:
        """Apply every ``*.yaml``/``*.yml`` under ``directory`` and wait until each CRD in them
        is Established. Returns the CRD names; an empty or absent directory applies nothing."""
        directory = Path(directory)
        files = (
            sorted(p for p in directory.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
            if directory.is_dir()
            else []
        )
        if not files:
            return []
        names: list[str] = []
        for file in files:
            for document in yaml.safe_load_all(file.read_text()):
                if (
                    isinstance(document, dict)
                    and document.get("kind") == "CustomResourceDefinition"
                ):
                    names.append(str(document["metadata"]["name"]))
        arguments = ["apply", "--server-side", "--force-conflicts", "--field-manager=gpupod-dev"]
        for file in files:
            arguments += ["-f", str(file)]
        self.kubectl(*arguments)
        for name in names:
            self.wait_crd_established(name, timeout=timeout)
        return names

    def wait_crd_established(self, name: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        conditions: list[dict[str, Any]] = []
        while True:
            crd = self.request("GET", f"{CRD_API}/{name}")
            conditions = crd.get("status", {}).get("conditions") or []
            status = {c.get("type"): c.get("status") for c in conditions}
            if status.get("Established") == "True":
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"CRD {name} not Established after {timeout:g}s: {conditions}")
            time.sleep(0.1)

    def ensure_service_account(self, namespace: str, name: str) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": namespace},
        }
        try:
            self.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts", body)
        except ApiError as exc:
            if exc.status != 409:
                raise

    def service_account_token(
        self, namespace: str, name: str, *, expiration_seconds: int = 24 * 3600
    ) -> str:
        """A bound token for the ServiceAccount via TokenRequest (``kubectl create token``)."""
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": expiration_seconds},
        }
        answer = self.request(
            "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token", body
        )
        token: str = answer["status"]["token"]
        return token

    def service_account_kubeconfig(
        self, namespace: str, name: str, path: Path, *, expiration_seconds: int = 24 * 3600
    ) -> Path:
        """Create the ServiceAccount if needed, mint a token for it, write a kubeconfig whose
        context namespace is ``namespace``. What the identity may do is up to the caller's RBAC."""
        self.ensure_service_account(namespace, name)
        token = self.service_account_token(namespace, name, expiration_seconds=expiration_seconds)
        return write_kubeconfig(
            path,
            server=self.server,
            ca_pem=self.ca_path.read_bytes(),
            token=token,
            namespace=namespace,
            name=f"{namespace}-{name}",
        )

    def client_cert_kubeconfig(
        self, path: Path, user: str, groups: Sequence[str] = (), *, namespace: str | None = None
    ) -> Path:
        """A kubeconfig authenticating with a client certificate (CN=user, O=groups)."""
        ca = self._client_ca()
        return write_kubeconfig(
            path,
            server=self.server,
            ca_pem=self.ca_path.read_bytes(),
            client_cert=ca.issue_client(user, groups),
            namespace=namespace,
            name=user,
        )

    # -- internals --------------------------------------------------------------------------

    def _write_pki(self) -> None:
        pki = self.pki_dir
        pki.mkdir(parents=True, exist_ok=True)
        pki.chmod(0o700)
        serving_ca = CertificateAuthority.create("gpupod-dev serving CA")
        write_private(self.ca_path, serving_ca.cert_pem)
        serving = serving_ca.issue_server(
            "kube-apiserver",
            ips=["127.0.0.1", KUBERNETES_SERVICE_IP],
            dns_names=["localhost", *KUBERNETES_SERVICE_NAMES],
        )
        # The chain (leaf + CA) so clients that only trust the CA verify it.
        write_private(pki / "apiserver.crt", serving.cert_pem + serving_ca.cert_pem)
        write_private(pki / "apiserver.key", serving.key_pem)
        client_ca = CertificateAuthority.create("gpupod-dev client CA")
        write_private(pki / "client-ca.crt", client_ca.cert_pem)
        write_private(pki / "client-ca.key", client_ca.key_pem)
        self._client_ca_cache = client_ca
        # One RSA key both signs service-account tokens and verifies them.
        write_private(pki / "service-account.key", rsa_private_key_pem())
        self._admin_token = secrets.token_urlsafe(32)
        write_private(
            pki / "tokens.csv",
            f'{self._admin_token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n'.encode(),
        )

    def _client_ca(self) -> CertificateAuthority:
        if self._client_ca_cache is None:
            from cryptography import x509
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric import ec

            key = serialization.load_pem_private_key(
                (self.pki_dir / "client-ca.key").read_bytes(), password=None
            )
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise TypeError("unexpected client CA key type")
            cert = x509.load_pem_x509_certificate((self.pki_dir / "client-ca.crt").read_bytes())
            self._client_ca_cache = CertificateAuthority(key, cert)
        return self._client_ca_cache

    def _start_etcd(self) -> None:
        client_port, peer_port = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        shutil.rmtree(self.etcd_data_dir, ignore_errors=True)
        self.etcd = ManagedProcess(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                "--name=gpupod-dev",
                f"--data-dir={self.etcd_data_dir}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=gpupod-dev={peer_url}",
                "--unsafe-no-fsync=true",  # throw-away data: skip fsync (etcd >= 3.5)
                "--log-level=warn",
            ],
            log_path=self.log_dir / "etcd.log",
            stop_grace=self.stop_grace,
        ).start()

        def healthy() -> bool:
            with urllib.request.urlopen(f"{self.etcd_url}/health", timeout=2) as response:
                return bool(json.load(response).get("health") == "true")

        self.etcd.wait_ready(healthy, self.start_timeout)

    def _start_apiserver(self) -> None:
        port = free_port()
        self.server = f"https://127.0.0.1:{port}"
        pki = self.pki_dir
        args = [
            str(self.bin_dir / "kube-apiserver"),
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={pki}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'client-ca.crt'}",
            f"--token-auth-file={pki / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki / 'service-account.key'}",
            f"--service-account-signing-key-file={pki / 'service-account.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            # ServiceAccount admission stays on (the default): Pods get their token volume, as
            # in any cluster. It wants each namespace's `default` SA, which
            # kube-controller-manager creates within a second (without it, Pods are refused).
            "--profiling=false",
            # No --advertise-address: derived from the default route; a loopback one is refused.
            *self.extra_apiserver_args,
        ]
        self.apiserver = ManagedProcess(
            "kube-apiserver",
            args,
            log_path=self.log_dir / "kube-apiserver.log",
            stop_grace=self.stop_grace,
        ).start()

        def ready() -> bool:
            status, body = self._http("GET", "/readyz", timeout=5)
            return status == 200 and body.strip() == b"ok"

        self.apiserver.wait_ready(ready, self.start_timeout)

    def _start_controller_manager(self) -> None:
        """kube-controller-manager with its own identity (a client certificate for
        ``system:kube-controller-manager``) and one ServiceAccount per controller
        (``--use-service-account-credentials``), as kubeadm runs it."""
        pki = self.pki_dir
        self.client_cert_kubeconfig(self.controller_manager_kubeconfig, CONTROLLER_MANAGER_USER)
        port = self._controller_manager_port = free_port()
        args = [
            str(self.bin_dir / "kube-controller-manager"),
            f"--kubeconfig={self.controller_manager_kubeconfig}",
            # The tokens controller signs legacy token Secrets with the apiserver's key; the
            # root-ca-cert-publisher fills every namespace's kube-root-ca.crt ConfigMap.
            f"--service-account-private-key-file={pki / 'service-account.key'}",
            f"--root-ca-file={self.ca_path}",
            "--use-service-account-credentials=true",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self.run_dir / 'kcm-certs'}",
            # No --authentication/--authorization-kubeconfig: the apiserver has no
            # requestheader CA, and with them kcm logs an error every few seconds.
            "--profiling=false",
        ]
        self.controller_manager = ManagedProcess(
            "kube-controller-manager",
            args,
            log_path=self.log_dir / "kube-controller-manager.log",
            stop_grace=self.stop_grace,
        ).start()

    def _wait_controller_manager_healthy(self) -> None:
        assert self.controller_manager is not None
        url = f"https://127.0.0.1:{self._controller_manager_port}/healthz"
        # Its self-signed serving certificate: /healthz is always allowed, anonymously.
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE

        def healthy() -> bool:
            with urllib.request.urlopen(url, timeout=2, context=insecure) as response:
                return bool(response.status == 200 and response.read().strip() == b"ok")

        self.controller_manager.wait_ready(healthy, self.start_timeout)

    def _wait_default_namespace(self) -> None:
        assert self.apiserver is not None

        def exists() -> bool:
            return bool(self.request("GET", "/api/v1/namespaces/default", timeout=5))

        self.apiserver.wait_ready(exists, 30.0)
