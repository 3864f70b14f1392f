"""JSON shapes of simulator objects, in the API's own form and the configured dialect.

Pod choices (reference §2.3, §4.3): the default dialect emits `id` as a JSON number,
`singleCardPrice` as a string ("0.65", as in the captured response), backend status names,
`createdAt`/`updatedAt` in epoch ms, and `environmentVars` echoed in clear (as the real API
does). Endpoint fields (host, proxyPort, healthy, ingressUrl for HTTP ports), `sshCmd` and
`internalIp` appear only while RUNNING. Hosts use the reserved `.invalid` TLD so nothing
ever resolves to a real machine.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from gpupod_operator.simulator import catalog
from gpupod_operator.simulator.config import Dialect
from gpupod_operator.simulator.state import Credential, PodRecord, Store, Volume
from gpupod_operator.simulator.statuses import CONSOLE_NAMES, GUIDE_NAMES, SimStatus


def status_word(status: SimStatus, dialect: Dialect) -> str | int:
    if dialect.status_names == "int":
        return status.code
    if dialect.status_names == "guide":
        return GUIDE_NAMES.get(status, status.value)
    if dialect.status_names == "console":
        return CONSOLE_NAMES[status]
    return status.value


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _proxy_port(pod_id: int, port: int) -> int:
    return 30000 + (pod_id * 31 + port) % 20000


def _endpoints(pod: PodRecord, running: bool) -> tuple[list[dict[str, Any]], str | None]:
    host = f"{pod.region}.pods.yotta-sim.invalid"
    ports: list[dict[str, Any]] = []
    ssh_port = 10000 + pod.id % 10000
    for item in pod.spec.expose:
        port, protocol = item["port"], item["protocol"]
        entry: dict[str, Any] = {"port": port, "protocol": protocol}
        if running:
            entry.update(host=host, proxyPort=_proxy_port(pod.id, port), healthy=True)
            if protocol.upper() in ("HTTP", "HTTPS"):
                entry["serviceName"] = f"pod-{pod.id}-{port}"
                entry["ingressUrl"] = f"https://{pod.id}-{port}.proxy.yotta-sim.invalid"
            if port == 22 or protocol.upper() == "SSH":
                ssh_port = entry["proxyPort"]
        ports.append(entry)
    return ports, (f"ssh root@{host} -p {ssh_port}" if running else None)


def render_pod(pod: PodRecord, now: float, dialect: Dialect) -> dict[str, Any]:
    spec = pod.spec
    status = pod.status_at(now)
    running = status is SimStatus.RUNNING
    expose, ssh_cmd = _endpoints(pod, running)
    gpu = catalog.GPUS.get(spec.gpu_type or "")
    price = gpu.price if gpu else catalog.CPU_PRICE
    body: dict[str, Any] = {
        "id": str(pod.id) if dialect.id_type == "string" else pod.id,
        "name": spec.name,
        "status": status_word(status, dialect),
        "region": pod.region,
        "image": spec.image,
        **spec.echo,
        "resourceType": spec.resource_type,
        "cloudType": "SECURE",
        "gpuType": spec.gpu_type,
        "gpuDisplayName": gpu.display_name if gpu else None,
        "gpuCount": spec.gpu_count,
        "singleCardPrice": str(price) if dialect.price_type == "string" else float(price),
        "singleCardVramInGb": gpu.vram_gb if gpu else 0,
        "singleCardRamInGb": gpu.ram_gb if gpu else 8,
        "singleCardVcpu": gpu.vcpu if gpu else 4,
        "environmentVars": [dict(e) for e in spec.env],
        "expose": expose,
        "persistentVolumes": [dict(v) for v in spec.volumes],
        "sshCmd": ssh_cmd,
        "internalIp": f"10.{pod.id % 250}.{pod.id // 250 % 250}.{pod.id % 249 + 2}"
        if running
        else None,
        "createdAt": _ms(pod.created),
        "updatedAt": _ms(pod.updated_at(now)),
    }
    if status is SimStatus.FAILED:
        body["failureReason"] = pod.failure_reason
    return body


def encode_pod(pod: PodRecord, now: float, dialect: Dialect) -> bytes:
    """`render_pod` as JSON, re-rendered only when what it shows changed: a list of 10,000
    idle pods is then a join of cached bytes, not 10,000 renders and a 7 MB dumps (about
    0.5 s of the simulator's CPU per list, which the operator's poller asks for every 2 s
    while any GpuPod is transitional). The spec, region, id and creation time never change;
    the key holds everything else `render_pod` reads."""
    key = (pod.status_at(now), pod.updated_at(now), pod.failure_reason, dialect)
    cached = pod.encoded
    if cached is not None and cached[0] == key:
        return cached[1]
    data = json.dumps(render_pod(pod, now, dialect)).encode()
    pod.encoded = (key, data)
    return data


def encode_list(items: list[bytes], list_shape: str) -> bytes:
    """Encoded items as the list's `data`: a bare array, or the `page` shape."""
    array = b"[" + b", ".join(items) + b"]"
    if list_shape != "items":
        return array
    meta = page(items)  # one page holding every item, as `page` shapes it
    del meta["items"]
    return b'{"items": ' + array + b", " + json.dumps(meta)[1:].encode()


def render_credential(cred: Credential) -> dict[str, Any]:
    # The password is never returned (reference §5.1); createdAt is ISO 8601 there.
    return {
        "id": cred.id,
        "name": cred.name,
        "type": cred.type,
        "username": cred.username,
        "createdAt": datetime.fromtimestamp(cred.created, UTC).isoformat().replace("+00:00", "Z"),
    }


def render_volume(volume: Volume, store: Store) -> dict[str, Any]:
    return {
        "id": volume.id,
        "name": volume.name,
        "sizeInGb": volume.size_gb,
        "region": volume.region,
        "storageType": volume.storage_type,
        "status": "active",
        "vendorVolumeType": volume.vendor_type,
        "mountCount": store.mount_count(volume.id),
        "cost": 0.0,
        "createdAt": _ms(volume.created),
    }


def page(items: list[Any], page_no: int = 1, size: int | None = None) -> dict[str, Any]:
    """The paginated shape used by volumes and VMs: {items, page, size, total, pages}."""
    size = size or max(1, len(items))
    start = (page_no - 1) * size
    return {
        "items": items[start : start + size],
        "page": page_no,
        "size": size,
        "total": len(items),
        "pages": (len(items) + size - 1) // size,
    }
