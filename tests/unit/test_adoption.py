"""spec.adopt without I/O: who owns a claimed pod, and every adoption branch of the decisions."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from gpupod_operator.domain import decisions as d
from gpupod_operator.domain.adoption import Adoption, Claim, owned_elsewhere, owner
from gpupod_operator.domain.spec import DeletionPolicy, UpdatePolicy
from gpupod_operator.domain.status import Observed
from gpupod_operator.yotta import Pod

T0 = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
POD_ID = "900000000000000001"


def pod(status: str, id_: str = POD_ID) -> Pod:
    return Pod.model_validate({"id": id_, "name": "made-in-the-console", "status": status})


def claim(name: str, created: str, uid: str, adopts: bool = True) -> Claim:
    return Claim("ns", name, uid, created, adopts)


def desired(**adopt: Any) -> d.Desired:
    return d.Desired(spec_hash="h1", adopt=Adoption(POD_ID, **adopt))


def recorded(**kw: Any) -> d.Recorded:
    kw.setdefault("spec_hash", "h1" if kw.get("pod_id") else None)
    return d.Recorded(remote_name="ns-gp-x", **kw)


# ------------------------------------------------------------------ ownership


def test_the_oldest_adopter_owns_and_a_tie_is_broken_by_uid() -> None:
    a = claim("a", "2026-11-27T12:00:01Z", "bbbb")
    b = claim("b", "2026-11-27T12:00:00Z", "cccc")
    c = claim("c", "2026-11-27T12:00:00Z", "aaaa")
    assert owner([a, b, c]) == c
    # every claimant reaches the same verdict from its own side
    assert owned_elsewhere(a, [b, c]) == "ns/c"
    assert owned_elsewhere(b, [a, c]) == "ns/c"
    assert owned_elsewhere(c, [a, b]) is None


def test_the_gpupod_that_created_the_pod_always_owns_it() -> None:
    creator = claim("made-it", "2026-11-27T13:00:00Z", "ffff", adopts=False)
    older_adopter = claim("adopter", "2026-11-27T12:00:00Z", "0000")
    assert owned_elsewhere(older_adopter, [creator]) == "ns/made-it"
    assert owned_elsewhere(creator, [older_adopter]) is None


def test_a_claimant_alone_owns_and_its_own_claim_in_the_index_does_not_count_twice() -> None:
    me = claim("me", "2026-11-27T12:00:00Z", "1111")
    assert owned_elsewhere(me, []) is None
    assert owned_elsewhere(me, [me]) is None


# ------------------------------------------------------------------ reconcile


def test_adoption_first_reads_the_pod_by_id_and_never_creates() -> None:
    assert d.reconcile(desired(), recorded()) == d.Observe()


@pytest.mark.parametrize("status", ["RUNNING", "PAUSED", "INITIALIZE", "FAILED"])
def test_a_live_pod_is_taken_over(status: str) -> None:
    seen = pod(status)
    assert d.reconcile(desired(), recorded(), Observed(seen)) == d.TakeOver(seen)


@pytest.mark.parametrize(
    ("seen", "says"),
    [
        (None, "does not exist"),
        (pod("TERMINATED"), "TERMINATED"),
        (pod("TERMINATING"), "TERMINATING"),
    ],
)
def test_an_unknown_or_terminated_pod_is_an_adoption_failure_never_a_create(
    seen: Pod | None, says: str
) -> None:
    action = d.reconcile(desired(), recorded(), Observed(seen))
    assert isinstance(action, d.Stop) and action.reason == "AdoptionFailed"
    assert (
        POD_ID in action.message
        and says in action.message
        and "nothing was created" in action.message
    )
    assert action.phase == "Failed"


def test_a_pod_owned_elsewhere_is_refused_before_it_is_even_read() -> None:
    action = d.reconcile(desired(owned_by="ns/first"), recorded())
    assert isinstance(action, d.Stop) and action.reason == "AlreadyOwned"
    assert "ns/first" in action.message and POD_ID in action.message


def test_an_adopter_that_lost_the_race_forgets_the_id_without_touching_the_pod() -> None:
    action = d.reconcile(desired(owned_by="ns/first"), recorded(pod_id=POD_ID))
    assert action == d.Disown(POD_ID)


def test_manage_then_acts_like_on_any_pod() -> None:
    mine = recorded(pod_id=POD_ID)
    paused = d.Desired(spec_hash="h1", paused=True, adopt=Adoption(POD_ID))
    assert d.reconcile(paused, mine, Observed(pod("RUNNING"))) == d.Pause(POD_ID)
    assert d.reconcile(desired(), mine, Observed(pod("PAUSED"))) == d.Resume(POD_ID)
    assert d.finalize(desired(), mine, T0, Observed(pod("RUNNING"))) == d.Delete(
        POD_ID, reason="the GpuPod is being deleted"
    )


def test_observe_never_pauses_or_resumes() -> None:
    mine = recorded(pod_id=POD_ID)
    paused = d.Desired(spec_hash="h1", paused=True, adopt=Adoption(POD_ID, observe=True))
    running = pod("RUNNING")
    assert d.reconcile(paused, mine, Observed(running)) == d.Done(running)
    stopped = pod("PAUSED")
    assert d.reconcile(desired(observe=True), mine, Observed(stopped)) == d.Done(stopped)


def test_an_adopted_pod_is_never_replaced_on_a_spec_change() -> None:
    changed = d.Desired(spec_hash="h2", update_policy=UpdatePolicy.RECREATE, adopt=Adoption(POD_ID))
    action = d.reconcile(changed, recorded(pod_id=POD_ID), Observed(pod("RUNNING")))
    assert isinstance(action, d.Stop) and action.reason == "UpdateRejected"


# ------------------------------------------------------------------ finalize


def test_observe_releases_at_once_and_keeps_the_pod_on_record() -> None:
    action = d.finalize(desired(observe=True), recorded(pod_id=POD_ID), T0)
    assert isinstance(action, d.Release) and action.keeps_pod
    assert POD_ID in action.message and "left running" in action.message


def test_a_gpupod_that_does_not_own_the_pod_is_released_without_touching_it() -> None:
    for pod_id in (None, POD_ID):
        action = d.finalize(desired(owned_by="ns/first"), recorded(pod_id=pod_id), T0)
        assert isinstance(action, d.Release) and action.reason == "NotOwned"
        assert not action.keeps_pod and "ns/first" in action.message


def test_a_failed_adoption_is_released_as_never_created() -> None:
    action = d.finalize(desired(), recorded(), T0)
    assert action == d.Release("NeverCreated", "no remote pod was ever created")


def test_deletion_policy_orphan_keeps_the_pod_on_record() -> None:
    orphan = d.Desired(spec_hash="h1", deletion_policy=DeletionPolicy.ORPHAN)
    action = d.finalize(orphan, recorded(pod_id=POD_ID), T0)
    assert isinstance(action, d.Release) and action.reason == "Orphaned" and action.keeps_pod


def test_the_registry_never_offers_an_adopted_name_to_the_duplicate_sweep() -> None:
    # Console names need not be unique: another pod named like an adopted one is not a
    # duplicate of ours, and the poller's duplicate sweep must never delete it.
    from gpupod_operator.controller.registry import Registry

    registry = Registry()
    meta = {"namespace": "ns", "creationTimestamp": "2026-11-27T12:00:00Z"}
    registry.upsert(
        {
            "metadata": {**meta, "name": "adopter", "uid": "u1"},
            "spec": {"adopt": {"podId": POD_ID}},
            "status": {"podId": POD_ID, "remoteName": "made-in-the-console"},
        }
    )
    registry.upsert(
        {
            "metadata": {**meta, "name": "creator", "uid": "u2"},
            "spec": {},
            "status": {"podId": "2", "remoteName": "ns-creator-x"},
        }
    )
    assert set(registry.remote_names()) == {"ns-creator-x"}
    assert [c.name for c in registry.claims(POD_ID)] == ["adopter"]


def test_a_confirmed_adopter_keeps_the_pod_against_an_older_unconfirmed_claim() -> None:
    # The older claim was not visible when the owner confirmed (its watch event was late):
    # a confirmed owner is never displaced, so nothing acts on the pod for two GpuPods.
    confirmed = Claim("ns", "owner", "ffff", "2026-11-27T12:00:09Z", True, confirmed=True)
    older = claim("older", "2026-11-27T12:00:00Z", "0000")
    assert owned_elsewhere(older, [confirmed]) == "ns/owner"
    assert owned_elsewhere(confirmed, [older]) is None


@pytest.mark.parametrize(
    ("status", "confirmed"),
    [
        ({}, False),
        ({"podId": POD_ID}, False),  # recorded, no outcome yet
        (
            {"podId": POD_ID, "conditions": [{"type": "Synced", "reason": "ConfirmingOwnership"}]},
            False,
        ),
        ({"podId": POD_ID, "conditions": [{"type": "Synced", "reason": "Reconciled"}]}, True),
        ({"podId": "1", "conditions": [{"type": "Synced", "reason": "Reconciled"}]}, False),
    ],
)
def test_claim_of_a_body_is_confirmed_only_after_the_second_look(
    status: dict[str, Any], confirmed: bool
) -> None:
    from gpupod_operator.domain.adoption import claim_of

    body = {
        "metadata": {"namespace": "ns", "name": "a", "uid": "u", "creationTimestamp": "t"},
        "spec": {"adopt": {"podId": POD_ID}},
        "status": status,
    }
    assert claim_of(body) == Claim("ns", "a", "u", "t", True, confirmed)


def test_observe_never_acts_for_a_guardrail_either() -> None:
    from gpupod_operator.domain import cost

    limits = cost.Limits.of({"maxPricePerHour": "0.10", "lifetime": {"maxRunDuration": "1s"}})
    mine = d.Recorded(remote_name="x", pod_id=POD_ID, spec_hash="h1", running_seconds=3600)
    running = Pod.model_validate(
        {"id": POD_ID, "name": "x", "status": "RUNNING", "singleCardPrice": 9.0, "gpuCount": 1}
    )
    observe = d.Desired(spec_hash="h1", limits=limits, adopt=Adoption(POD_ID, observe=True))
    assert d.reconcile(observe, mine, Observed(running)) == d.Done(running)
    manage = d.Desired(spec_hash="h1", limits=limits, adopt=Adoption(POD_ID))
    assert isinstance(d.reconcile(manage, mine, Observed(running)), d.Delete | d.Pause)
