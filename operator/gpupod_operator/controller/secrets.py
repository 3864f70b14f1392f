"""Env values from Secrets, read from the GpuPod's own namespace at create time only."""

from __future__ import annotations

from gpupod_operator.controller.kube import KubeApi
from gpupod_operator.domain.spec import GpuPodSpec


class SecretMissing(Exception):
    """A required Secret or key does not exist (yet): the create waits for it."""


async def resolve_secret_env(
    kube: KubeApi, namespace: str, spec: GpuPodSpec
) -> dict[tuple[str, str], str]:
    """(secret name, key) -> value for every `valueFrom.secretKeyRef` of the spec.

    Errors name the Secret and key, never a value.
    """
    cache: dict[str, dict[str, str] | None] = {}
    values: dict[tuple[str, str], str] = {}
    for ref in spec.secret_refs():
        if ref.name not in cache:
            cache[ref.name] = await kube.get_secret_data(namespace, ref.name)
        data = cache[ref.name]
        if data is None or ref.key not in data:
            if ref.optional:
                continue
            what = "does not exist" if data is None else f"has no key {ref.key!r}"
            raise SecretMissing(
                f"Secret {namespace}/{ref.name} {what}: create it, or mark the env entry optional"
            )
        values[(ref.name, ref.key)] = data[ref.key]
    return values
