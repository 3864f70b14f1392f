"""controller.accounts (per-account providers, rotation, in-use finalizers) and the reconciler's
use of the pinned account, on fakes of the Kubernetes and Yotta boundaries."""

from __future__ import annotations

import base64
import copy
from collections.abc import AsyncIterator
from typing import Any

import kopf
import pytest
from pydantic import SecretStr

from gpupod_operator.config import OperatorConfig
from gpupod_operator.controller import reconciler
from gpupod_operator.controller.accounts import Accounts
from gpupod_operator.controller.kube import Conflict
from gpupod_operator.domain.accounts import (
    IN_USE_FINALIZER,
    AccountId,
    AccountUnavailable,
    fingerprint,
)
from gpupod_operator.yotta import CreatePodRequest, NotFound, Pod

from ..e2e.gpupods import condition
from .reconciler_fakes import NS, REMOTE_NAME, Fns, World, Worlds, gpupod, pod, returns

CONFIG = OperatorConfig(api_url="http://yotta.invalid", api_key=SecretStr("test-key"))
TEAM = AccountId("YottaAccount", NS, "team")


class Objects:
    """YottaAccounts and Secrets as an API server keeps them: merge patches of metadata with a
    resourceVersion precondition (Conflict when stale), `conflicts` injected first."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.items: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.conflicts = 0

    def put(self, kind: str, ns: str, name: str, body: dict[str, Any]) -> None:
        meta = {"name": name, "namespace": ns, "resourceVersion": "1", **body.pop("metadata", {})}
        self.items[(kind, ns, name)] = {"metadata": meta, **body}

    def secret(self, name: str, key: str) -> None:
        self.put(
            "secrets", NS, name, {"data": {"api-key": base64.b64encode(key.encode()).decode()}}
        )

    def account(self, name: str, secret: str) -> None:
        spec = {"apiKeySecretRef": {"name": secret, "key": "api-key"}}
        self.put("yottaaccounts", NS, name, {"spec": spec})

    def finalizers(self, kind: str, name: str) -> list[str]:
        return list(self.items[(kind, NS, name)]["metadata"].get("finalizers") or [])

    async def find_object(self, plural: str, ns: str, name: str) -> dict[str, Any] | None:
        self.log.append(f"get {plural}/{name}")
        obj = self.items.get((plural, ns, name))
        return copy.deepcopy(obj) if obj is not None else None

    async def get_secret(self, ns: str, name: str) -> dict[str, Any] | None:
        return await self.find_object("secrets", ns, name)

    async def _patch(self, kind: str, ns: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        obj = self.items[(kind, ns, name)]
        meta = body.get("metadata") or {}
        if "finalizers" in meta:
            if self.conflicts:
                self.conflicts -= 1
                self.log.append(f"finalizers {kind}/{name} (conflict)")
                raise Conflict(409, "modified")
            if meta.get("resourceVersion") != obj["metadata"]["resourceVersion"]:
                raise Conflict(409, "modified")
            obj["metadata"]["finalizers"] = meta["finalizers"]
            self.log.append(f"finalizers {kind}/{name} {meta['finalizers']}")
        if "status" in body:
            obj["status"] = {**(obj.get("status") or {}), **body["status"]}
            self.log.append(f"status {kind}/{name}")
        obj["metadata"]["resourceVersion"] = str(int(obj["metadata"]["resourceVersion"]) + 1)
        return copy.deepcopy(obj)

    async def patch_object(
        self, plural: str, ns: str, name: str, body: dict[str, Any], *, status: bool = False
    ) -> dict[str, Any]:
        return await self._patch(plural, ns, name, body)

    async def patch_secret_metadata(
        self, ns: str, name: str, metadata: dict[str, Any]
    ) -> dict[str, Any]:
        return await self._patch("secrets", ns, name, {"metadata": metadata})

    async def get_namespace_labels(self, name: str) -> dict[str, str] | None:
        return {}


class FakeClient:
    """The PodsApi a tenant account's YottaProvider calls, remembering the key it sends."""

    def __init__(self, log: list[str], key: str, pods: dict[str, Pod]) -> None:
        self.log, self.key, self.pods = log, key, pods

    def use_key(self, key: str) -> None:
        self.key = key

    async def get_pod(self, pod_id: str) -> Pod:
        self.log.append(f"tenant get {pod_id} with {self.key}")
        if pod_id not in self.pods:
            raise NotFound("Pod not found")
        return self.pods[pod_id]

    async def list_pods(self) -> list[Pod]:
        self.log.append(f"tenant list with {self.key}")
        return list(self.pods.values())

    async def create_pod(self, req: CreatePodRequest) -> Pod:
        self.log.append(f"tenant create with {self.key}")
        self.pods["t1"] = pod("t1", "INITIALIZE")
        return self.pods["t1"]

    async def aclose(self) -> None:
        pass


class Setup:
    def __init__(self, w: World) -> None:
        self.w = w
        self.objects = Objects(w.log)
        self.clients: list[FakeClient] = []
        self.tenant_pods: dict[str, Pod] = {}
        for name in ("find_object", "get_secret", "patch_object", "patch_secret_metadata"):
            setattr(w.kube, name, getattr(self.objects, name))
        w.kube.get_namespace_labels = self.objects.get_namespace_labels  # type: ignore[method-assign]

        def new_client(url: str, key: str, qps: float, burst: int) -> Any:
            client = FakeClient(w.log, key, self.tenant_pods)
            self.clients.append(client)
            return client

        self.accounts = Accounts(
            CONFIG, w.kube, w.provider, new_client=new_client, in_use=w.registry.users
        )
        w.rt.accounts = self.accounts


@pytest.fixture
async def worlds() -> AsyncIterator[Worlds]:
    made = Worlds()
    yield made
    await made.aclose()


def setup(worlds: Worlds, stored: dict[str, Any] | None, fns: Fns | None = None) -> Setup:
    return Setup(worlds.new(stored, fns or Fns()))


# ---------------------------------------------------------------- Accounts


async def test_one_provider_per_account_and_a_rotated_key_is_used_by_the_next_call(
    worlds: Worlds,
) -> None:
    s = setup(worlds, None)
    s.objects.secret("key", "key-one")
    s.objects.account("team", "key")
    first = await s.accounts.bind(TEAM)
    assert first.fingerprint == fingerprint("key-one")
    assert (await s.accounts.bind(TEAM)).provider is first.provider  # cached
    s.objects.secret("key", "key-two")  # rotated in place
    second = await s.accounts.bind(TEAM)
    assert second.provider is first.provider and second.fingerprint == fingerprint("key-two")
    assert [c.key for c in s.clients] == ["key-two"]  # one client, now sending the new key
    assert (await s.accounts.bind(AccountId.operator())).provider is s.w.provider
    status = s.objects.items[("yottaaccounts", NS, "team")]["status"]
    assert status["keyFingerprint"] == fingerprint("key-two")
    assert status["conditions"][0]["status"] == "True"


async def test_a_missing_account_or_secret_is_account_not_found(worlds: Worlds) -> None:
    s = setup(worlds, None)
    with pytest.raises(AccountUnavailable, match="does not exist") as e:
        await s.accounts.bind(TEAM)
    assert e.value.reason == "AccountNotFound"
    s.objects.account("team", "absent")
    with pytest.raises(AccountUnavailable, match=f"Secret {NS}/absent"):
        await s.accounts.bind(TEAM)
    ready = s.objects.items[("yottaaccounts", NS, "team")]["status"]["conditions"][0]
    assert (ready["status"], ready["reason"]) == ("False", "AccountNotFound")
    assert s.clients == []  # no client, so no call, without a key


async def test_hold_and_release_the_in_use_finalizers(worlds: Worlds) -> None:
    s = setup(worlds, None)
    s.objects.put("secrets", NS, "key", {"metadata": {"finalizers": ["other/keep"]}, "data": {}})
    s.objects.items[("secrets", NS, "key")]["data"] = {"api-key": base64.b64encode(b"k").decode()}
    s.objects.account("team", "key")
    binding = await s.accounts.bind(TEAM)
    s.objects.conflicts = 1  # someone else writes the account meanwhile: read again, retry
    await s.accounts.hold(binding)
    await s.accounts.hold(await s.accounts.bind(TEAM))  # idempotent
    assert s.objects.finalizers("yottaaccounts", "team") == [IN_USE_FINALIZER]
    assert s.objects.finalizers("secrets", "key") == ["other/keep", IN_USE_FINALIZER]
    assert sum("(conflict)" in line for line in s.w.log) == 1
    await s.accounts.release(TEAM, users_left=1)
    assert IN_USE_FINALIZER in s.objects.finalizers("secrets", "key")
    assert s.objects.items[("yottaaccounts", NS, "team")]["status"]["gpuPods"] == 1
    await s.accounts.release(TEAM, users_left=0)
    assert s.objects.finalizers("yottaaccounts", "team") == []
    assert s.objects.finalizers("secrets", "key") == ["other/keep"]


async def test_an_account_being_deleted_cannot_be_held_by_a_new_user(worlds: Worlds) -> None:
    s = setup(worlds, None)
    s.objects.secret("key", "k")
    s.objects.account("team", "key")
    s.objects.items[("yottaaccounts", NS, "team")]["metadata"]["deletionTimestamp"] = "now"
    with pytest.raises(AccountUnavailable, match="is being deleted"):
        await s.accounts.hold(await s.accounts.bind(TEAM))
    assert s.objects.finalizers("yottaaccounts", "team") == []
    # Held before the deletion began: holding again is fine (nothing to add).
    s.objects.items[("yottaaccounts", NS, "team")]["metadata"]["finalizers"] = [IN_USE_FINALIZER]
    await s.accounts.hold(await s.accounts.bind(TEAM))
    assert s.objects.finalizers("secrets", "key") == [IN_USE_FINALIZER]


# ---------------------------------------------------------------- the reconciler


async def test_account_not_found_makes_no_api_call_and_stays_pending(worlds: Worlds) -> None:
    body = gpupod(accountRef={"kind": "YottaAccount", "name": "team"})
    s = setup(worlds, body)
    with pytest.raises(kopf.TemporaryError):
        await reconciler.reconcile(s.w.rt, body, 0)
    await s.w.flush_events()
    assert s.w.kube.status["phase"] == "Pending"
    synced = condition(s.w.kube.obj, "Synced")
    assert (synced["status"], synced["reason"]) == ("False", "AccountNotFound")
    assert "spec.accountRef: YottaAccount team does not exist" in synced["message"]
    assert "Warning/AccountNotFound" in s.w.event_reasons()
    assert not any(op.startswith(("create", "tenant", "observe", "look_up")) for op in s.w.log)
    assert "account" not in s.w.kube.status


async def test_create_pins_the_account_with_the_marker_and_holds_it_before_the_post(
    worlds: Worlds,
) -> None:
    body = gpupod(accountRef={"kind": "YottaAccount", "name": "team"})
    s = setup(worlds, body)
    s.objects.secret("key", "tenant-key")
    s.objects.account("team", "key")
    await reconciler.reconcile(s.w.rt, body, 0)
    marker = s.w.kube.patches[0]
    assert marker["createPending"]["remoteName"] == REMOTE_NAME
    assert marker["account"] == TEAM.pin(fingerprint("tenant-key"))
    log = s.w.log
    held = log.index("finalizers secrets/key ['gpupod.dev/in-use']")
    assert log.index("patch +createPending") < held < log.index("tenant create with tenant-key")
    assert "create" not in log  # the operator's own provider was never used
    assert s.w.kube.status["podId"] == "t1"


def _pinned(fp: str, **status: Any) -> dict[str, Any]:
    account = {"kind": "Operator", "name": "", "keyFingerprint": fp}
    return gpupod({"podId": "p1", "remoteName": REMOTE_NAME, "account": account, **status})


async def test_not_found_under_another_key_is_not_gone(worlds: Worlds) -> None:
    """Deleting: the pod is "not found" with a key it was not created with. No release (the
    finalizer stays), AccountChanged with an Event; the same answer under the pinned key
    releases."""
    body = _pinned("sha256:not-this-key")
    body["metadata"]["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    s = setup(worlds, body, Fns(observe=returns(None)))
    with pytest.raises(kopf.TemporaryError, match="not visible with the current key"):
        await reconciler.finalize(s.w.rt, body, 0)
    await s.w.flush_events()
    synced = condition(s.w.kube.obj, "Synced")
    assert (synced["status"], synced["reason"]) == ("False", "AccountChanged")
    assert "Warning/AccountChanged" in s.w.event_reasons()
    assert not any(op.startswith(("delete", "create")) for op in s.w.log)
    # The same pod pinned to the current key: gone is gone.
    body = _pinned(fingerprint("test-key"))
    body["metadata"]["deletionTimestamp"] = "2026-12-01T00:00:00Z"
    s = setup(worlds, body, Fns(observe=returns(None)))
    await reconciler.finalize(s.w.rt, body, 0)
    await s.w.flush_events()
    assert "Normal/Deleted" in s.w.event_reasons()


async def test_a_lost_pod_under_another_key_is_never_recreated_nor_lost(worlds: Worlds) -> None:
    body = _pinned("sha256:not-this-key", specHash=None, phase="Running")
    s = setup(worlds, body, Fns(observe=returns(None)))
    with pytest.raises(kopf.TemporaryError):
        await reconciler.reconcile(s.w.rt, body, 0)
    assert s.w.kube.status["phase"] == "Running" and s.w.kube.status["podId"] == "p1"
    assert condition(s.w.kube.obj, "Synced")["reason"] == "AccountChanged"
    assert "create" not in s.w.log


async def test_a_pod_visible_with_a_rotated_key_is_pinned_to_it(worlds: Worlds) -> None:
    body = _pinned("sha256:old-key")
    s = setup(worlds, body, Fns(observe=returns(pod("p1"))))
    await reconciler.reconcile(s.w.rt, body, 0)
    await s.w.flush_events()
    assert s.w.kube.status["account"]["keyFingerprint"] == fingerprint("test-key")
    assert "Normal/KeyRotated" in s.w.event_reasons()


async def test_the_last_of_several_deletions_releases_the_account(worlds: Worlds) -> None:
    """Three GpuPods of one account deleted at once: each sees the others still there, yet
    the last one to finish removes the in-use finalizers (Registry.release / users)."""
    s = setup(worlds, None)
    s.objects.secret("key", "k")
    s.objects.account("team", "key")
    await s.accounts.hold(await s.accounts.bind(TEAM))
    bodies = []
    for i in range(3):
        body = gpupod({"account": TEAM.pin(fingerprint("k"))})
        body["metadata"]["name"] = f"gp{i}"
        s.w.registry.upsert(body)
        bodies.append(body)
    for i, body in enumerate(bodies):
        s.w.rt.registry.release(NS, body["metadata"]["name"])
        users = s.w.rt.registry.users(TEAM)
        await s.accounts.release(TEAM, users_left=users)
        held = IN_USE_FINALIZER in s.objects.finalizers("secrets", "key")
        assert held is (i < 2)
    s.w.registry.remove(NS, "gp0")
    assert s.w.registry.users(TEAM) == 0


async def test_no_pod_is_created_with_a_secret_being_deleted_and_the_marker_goes(
    worlds: Worlds,
) -> None:
    """The namespace is being deleted between resolution and the POST: the Secret cannot be
    held any more, so nothing is created, and the marker is undone (nothing was sent), so the
    GpuPod's own deletion needs no key."""
    body = gpupod(accountRef={"kind": "YottaAccount", "name": "team"})
    s = setup(worlds, body)
    s.objects.secret("key", "tenant-key")
    s.objects.account("team", "key")
    meta = s.objects.items[("secrets", NS, "key")]["metadata"]
    meta.update(deletionTimestamp="2026-12-01T00:00:00Z", finalizers=["other/keep"])
    with pytest.raises(kopf.TemporaryError, match="is being deleted"):
        await reconciler.reconcile(s.w.rt, body, 0)
    assert not any(op.startswith("tenant create") for op in s.w.log)
    assert "patch +createPending" in s.w.log and "patch -createPending" in s.w.log
    assert "createPending" not in s.w.kube.status and "account" not in s.w.kube.status
    assert s.w.kube.status["phase"] == "Pending"
    assert condition(s.w.kube.obj, "Synced")["reason"] == "AccountNotFound"
