"""The poller with several accounts: one List per account per round, each GpuPod matched within
its pinned account, and "not found" under a changed key reported, never written as Lost."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from gpupod_operator.controller.accounts import Accounts, Binding
from gpupod_operator.controller.events import EventRecorder
from gpupod_operator.controller.metrics import Metrics
from gpupod_operator.controller.poller import Poller
from gpupod_operator.controller.registry import Registry
from gpupod_operator.controller.status_writer import StatusWriter
from gpupod_operator.domain.accounts import AccountId, fingerprint
from gpupod_operator.provider import YottaProvider
from tests.unit.fakes import Clock, FakeKube, FakeYotta, Posted, gpupod, remote

TEAM = AccountId("YottaAccount", "ns", "team")


class TwoAccounts(Accounts):
    """The operator's key and TEAM, whose current key is `team_key`."""

    def __init__(self, operator: YottaProvider, team: YottaProvider) -> None:
        super().__init__(None, None, operator)
        self.team, self.team_key = team, "team-key"

    async def bind(self, account: AccountId) -> Binding:
        if account == TEAM:
            return Binding(TEAM, fingerprint(self.team_key), self.team)
        return await super().bind(account)


def _world() -> tuple[Poller, Registry, FakeKube, FakeYotta, FakeYotta, TwoAccounts, Posted]:
    clock, registry, kube, posted = Clock(), Registry(), FakeKube(), Posted()
    operator, team = FakeYotta(), FakeYotta()
    metrics = Metrics(CollectorRegistry())
    events = EventRecorder(posted)
    accounts = TwoAccounts(
        YottaProvider(operator, snapshot_ttl=30, clock=clock),
        YottaProvider(team, snapshot_ttl=30, clock=clock),
    )
    poller = Poller(
        accounts.operator,
        StatusWriter(kube, registry, events, metrics),
        events,
        registry,
        metrics,
        interval=30,
        fast_interval=2,
        clock=clock,
        accounts=accounts,
    )
    return poller, registry, kube, operator, team, accounts, posted


def _add(registry: Registry, kube: FakeKube, name: str, pod_id: str, pin: dict[str, str]) -> None:
    status = {"podId": pod_id, "remoteName": f"r-{name}", "phase": "Initializing", "account": pin}
    registry.upsert(kube.add(gpupod(name, status)))


async def test_one_list_per_account_and_pods_matched_within_their_account() -> None:
    poller, registry, kube, operator, team, _accounts, _posted = _world()
    operator.pods["1"] = remote("1", "r-mine")
    team.pods["2"] = remote("2", "r-theirs")
    operator.pods["2"] = remote("2", "r-theirs", status="FAILED")  # same ID, other account
    _add(registry, kube, "mine", "1", AccountId.operator().pin(fingerprint("k")))
    _add(registry, kube, "theirs", "2", TEAM.pin(fingerprint("team-key")))
    await poller.poll_once()
    assert operator.calls == ["list"] and team.calls == ["list"]
    assert kube.objects["mine"]["status"]["phase"] == "Running"
    assert kube.objects["theirs"]["status"]["phase"] == "Running"  # from its own account


async def test_not_found_under_a_changed_key_is_account_changed_not_lost() -> None:
    poller, registry, kube, _operator, team, accounts, posted = _world()
    _add(registry, kube, "gp", "7", TEAM.pin(fingerprint("team-key")))
    team.pods["7"] = remote("7", "r-gp")
    await poller.poll_once()
    accounts.team_key = "another-accounts-key"  # the Secret now holds a key of another account
    del team.pods["7"]  # which does not see the pod
    registry.upsert(kube.objects["gp"])
    await poller.poll_once()
    await poller._events.flush()
    status = kube.objects["gp"]["status"]
    assert status["phase"] == "Running" and status["podId"] == "7"
    synced = next(c for c in status["conditions"] if c["type"] == "Synced")
    assert (synced["status"], synced["reason"]) == ("False", "AccountChanged")
    assert "AccountChanged" in posted.reasons("gp") and "RemotePodLost" not in posted.reasons("gp")
    # The pod visible again (the key put back): Synced recovers by itself.
    accounts.team_key = "team-key"
    team.pods["7"] = remote("7", "r-gp")
    registry.upsert(kube.objects["gp"])
    await poller.poll_once()
    synced = next(c for c in kube.objects["gp"]["status"]["conditions"] if c["type"] == "Synced")
    assert synced["status"] == "True"
