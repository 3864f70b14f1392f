"""Kubeconfig files for the local control plane.

Written as JSON (valid YAML), with every credential inlined as ``*-data``: one cluster, one user,
one context. kubectl, the kubernetes Python client and kopf's ``login_with_kubeconfig`` read it.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .certs import KeyPair, write_private

__all__ = ["KubeconfigCredentials", "read_kubeconfig", "write_kubeconfig"]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def write_kubeconfig(
    path: Path,
    *,
    server: str,
    ca_pem: bytes,
    token: str | None = None,
    client_cert: KeyPair | None = None,
    namespace: str | None = None,
    name: str = "gpupod-dev",
) -> Path:
    """Write a kubeconfig authenticating with a bearer ``token`` or a ``client_cert``."""
    if (token is None) == (client_cert is None):
        raise ValueError("give exactly one of token= or client_cert=")
    user: dict[str, str] = {}
    if token is not None:
        user["token"] = token
    if client_cert is not None:
        user["client-certificate-data"] = _b64(client_cert.cert_pem)
        user["client-key-data"] = _b64(client_cert.key_pem)
    context: dict[str, str] = {"cluster": name, "user": name}
    if namespace:
        context["namespace"] = namespace
    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [
            {
                "name": name,
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)},
            }
        ],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": context}],
        "current-context": name,
    }
    return write_private(path, (json.dumps(config, indent=2) + "\n").encode())


@dataclass(frozen=True)
class KubeconfigCredentials:
    """The current context of a kubeconfig written by :func:`write_kubeconfig`."""

    server: str
    ca_pem: bytes
    token: str | None
    namespace: str | None

    def __repr__(self) -> str:  # never show the token
        token = "***" if self.token else None
        return f"KubeconfigCredentials(server={self.server!r}, token={token!r})"


def read_kubeconfig(path: Path) -> KubeconfigCredentials:
    """Read back the current context of a kubeconfig in the shape :func:`write_kubeconfig` uses."""
    config = json.loads(path.read_text())
    current = config["current-context"]
    context = next(c["context"] for c in config["contexts"] if c["name"] == current)
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
    return KubeconfigCredentials(
        server=cluster["server"],
        ca_pem=base64.b64decode(cluster["certificate-authority-data"]),
        token=user.get("token"),
        namespace=context.get("namespace"),
    )
