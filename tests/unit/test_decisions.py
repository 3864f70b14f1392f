"""Every branch of the reconcile and delete decisions, without I/O."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from gpupod_operator.domain import decisions as d
from gpupod_operator.domain.spec import DeletionPolicy, UpdatePolicy
from gpupod_operator.yotta import Pod

T0 = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
NAME = "ns-gp-1234abcd"


def pod(status: str, id_: str = "900000000000000001", **extra: Any) -> Pod:
    return Pod.model_validate({"id": id_, "name": NAME, "status": status, **extra})


def desired(**kw: Any) -> d.Desired:
    return d.Desired(spec_hash="h1", **kw)


def recorded(**kw: Any) -> d.Recorded:
    kw.setdefault("spec_hash", "h1" if kw.get("pod_id") else None)
    return d.Recorded(remote_name=NAME, **kw)


def test_new_gpupod_is_created() -> None:
    assert d.reconcile(desired(), recorded()) == d.Create()


def test_pending_marker_means_look_up_before_any_create() -> None:
    assert d.reconcile(desired(), recorded(pending_since=T0)) == d.LookUp()


def test_pending_marker_and_nothing_found_creates() -> None:
    lookup = d.NameLookup([], T0 + d.CREATE_SETTLE)  # settled: see the create_settle tests
    assert d.reconcile(desired(), recorded(pending_since=T0), lookup=lookup) == d.Create()


def test_pending_marker_and_found_adopts_the_oldest_and_drops_duplicates() -> None:
    older = pod("RUNNING", "1", createdAt=1000)
    newer = pod("INITIALIZE", "2", createdAt=2000)
    lookup = d.NameLookup([newer, older], T0)
    action = d.reconcile(desired(), recorded(pending_since=T0), lookup=lookup)
    assert action == d.Adopt(pod=older, duplicates=[newer])


def test_lookup_ignores_terminated_pods_of_a_previous_incarnation() -> None:
    lookup = d.NameLookup([pod("TERMINATED", "1"), pod("TERMINATING", "2")], T0 + d.CREATE_SETTLE)
    assert d.reconcile(desired(), recorded(pending_since=T0), lookup=lookup) == d.Create()


def test_lookup_adopts_a_failed_pod_rather_than_creating_another() -> None:
    failed = pod("FAILED", "7")
    lookup = d.NameLookup([failed], T0)
    assert d.reconcile(desired(), recorded(pending_since=T0), lookup=lookup) == d.Adopt(failed)


def test_known_pod_is_observed_first() -> None:
    assert d.reconcile(desired(), recorded(pod_id="1")) == d.Observe()


@pytest.mark.parametrize("status", ["INITIALIZE", "RUNNING", "PAUSED", "PAUSING"])
def test_in_sync_states_are_done(status: str) -> None:
    p = pod(status)
    paused = status in ("PAUSED", "PAUSING")
    assert d.reconcile(desired(paused=paused), recorded(pod_id=p.id), d.Observed(p)) == d.Done(p)


def test_pause_when_running() -> None:
    p = pod("RUNNING")
    assert d.reconcile(desired(paused=True), recorded(pod_id=p.id), d.Observed(p)) == d.Pause(p.id)


def test_pause_waits_for_running() -> None:
    p = pod("INITIALIZE")
    action = d.reconcile(desired(paused=True), recorded(pod_id=p.id), d.Observed(p))
    assert isinstance(action, d.Wait) and action.reason == "WaitingToPause"


def test_resume_when_paused() -> None:
    p = pod("PAUSED")
    assert d.reconcile(desired(), recorded(pod_id=p.id), d.Observed(p)) == d.Resume(p.id)


def test_resume_waits_while_pausing() -> None:
    p = pod("PAUSING")
    action = d.reconcile(desired(), recorded(pod_id=p.id), d.Observed(p))
    assert isinstance(action, d.Wait) and action.reason == "WaitingToResume"


def test_pod_gone_is_lost_not_recreated() -> None:
    action = d.reconcile(desired(), recorded(pod_id="1"), d.Observed(None))
    assert isinstance(action, d.Stop) and action.phase == "Lost"


def test_pod_terminated_out_of_band_is_reported_not_recreated() -> None:
    p = pod("TERMINATED")
    action = d.reconcile(desired(), recorded(pod_id=p.id), d.Observed(p))
    assert isinstance(action, d.Stop) and action.phase == "Terminated"


def test_failed_pod_is_reported() -> None:
    p = pod("FAILED")
    action = d.reconcile(desired(), recorded(pod_id=p.id), d.Observed(p))
    assert isinstance(action, d.Stop) and action.phase == "Failed"


def test_spec_change_with_reject_is_refused_not_applied() -> None:
    p = pod("RUNNING")
    action = d.reconcile(desired(), recorded(pod_id=p.id, spec_hash="old"), d.Observed(p))
    assert isinstance(action, d.Stop) and action.reason == "UpdateRejected"


def test_recreate_deletes_then_waits_then_forgets() -> None:
    want = desired(update_policy=UpdatePolicy.RECREATE)
    rec = recorded(pod_id="1", spec_hash="old")
    running = pod("RUNNING", "1")
    assert isinstance(d.reconcile(want, rec, d.Observed(running)), d.Delete)
    assert isinstance(d.reconcile(want, rec, d.Observed(pod("TERMINATING", "1"))), d.Wait)
    assert d.reconcile(want, rec, d.Observed(pod("TERMINATED", "1"))) == d.Forget()
    assert d.reconcile(want, rec, d.Observed(None)) == d.Forget()
    # after Forget the record has no pod: the next step creates the new one
    assert d.reconcile(want, recorded()) == d.Create()


def test_recreate_also_replaces_a_failed_pod() -> None:
    want = desired(update_policy=UpdatePolicy.RECREATE)
    action = d.reconcile(
        want, recorded(pod_id="1", spec_hash="old"), d.Observed(pod("FAILED", "1"))
    )
    assert isinstance(action, d.Delete)


def test_same_spec_with_recreate_does_nothing() -> None:
    p = pod("RUNNING")
    want = desired(update_policy=UpdatePolicy.RECREATE)
    assert d.reconcile(want, recorded(pod_id=p.id), d.Observed(p)) == d.Done(p)


# ---------------------------------------------------------------- delete


def test_delete_without_remote_pod_releases_at_once() -> None:
    action = d.finalize(desired(), recorded(), T0)
    assert isinstance(action, d.Release) and action.reason == "NeverCreated"


def test_orphan_releases_without_touching_the_pod() -> None:
    action = d.finalize(desired(deletion_policy=DeletionPolicy.ORPHAN), recorded(pod_id="5"), T0)
    assert isinstance(action, d.Release) and "5" in action.message


def test_delete_observes_deletes_waits_releases() -> None:
    rec = recorded(pod_id="1")
    assert d.finalize(desired(), rec, T0) == d.Observe()
    assert isinstance(d.finalize(desired(), rec, T0, d.Observed(pod("RUNNING", "1"))), d.Delete)
    assert isinstance(d.finalize(desired(), rec, T0, d.Observed(pod("PAUSED", "1"))), d.Delete)
    assert isinstance(d.finalize(desired(), rec, T0, d.Observed(pod("TERMINATING", "1"))), d.Wait)
    assert isinstance(d.finalize(desired(), rec, T0, d.Observed(pod("TERMINATED", "1"))), d.Release)
    assert isinstance(d.finalize(desired(), rec, T0, d.Observed(None)), d.Release)


def test_delete_with_unconfirmed_create_looks_up_first() -> None:
    rec = recorded(pending_since=T0)
    assert d.finalize(desired(), rec, T0) == d.LookUp()
    found = pod("RUNNING", "3")
    assert d.finalize(desired(), rec, T0, lookup=d.NameLookup([found], T0)) == d.Adopt(found)


def test_delete_with_unconfirmed_create_waits_for_the_list_to_settle() -> None:
    rec = recorded(pending_since=T0)
    early = d.NameLookup([], T0 + dt.timedelta(seconds=1))
    assert isinstance(d.finalize(desired(), rec, T0, lookup=early), d.Wait)
    late = d.NameLookup([], T0 + d.CREATE_SETTLE)
    action = d.finalize(desired(), rec, T0, lookup=late)
    assert isinstance(action, d.Release) and action.reason == "NeverCreated"


def test_a_replacement_once_started_completes_even_if_the_spec_reverts() -> None:
    # The old pod's delete went out (replacing recorded), then the user reverted the spec.
    reverted = desired(update_policy=UpdatePolicy.RECREATE)
    rec = recorded(pod_id="1", spec_hash="h1", replacing=True)
    assert isinstance(d.reconcile(reverted, rec, d.Observed(pod("TERMINATING", "1"))), d.Wait)
    assert d.reconcile(reverted, rec, d.Observed(pod("TERMINATED", "1"))) == d.Forget()
    # ...and a delete that did not take is sent again rather than forgotten
    again = d.reconcile(desired(), rec, d.Observed(pod("RUNNING", "1")))
    assert isinstance(again, d.Delete) and again.replace


def test_orphaning_an_unconfirmed_create_names_the_pod_that_may_exist() -> None:
    action = d.finalize(
        desired(deletion_policy=DeletionPolicy.ORPHAN), recorded(pending_since=T0), T0
    )
    assert isinstance(action, d.Release) and NAME in action.message


def test_a_create_in_doubt_is_created_again_only_after_its_settle_time() -> None:
    # A marker without a pod ID, e.g. left by the previous leader: its POST may still be
    # running (up to the create timeout) when this process looks.
    rec = recorded(pending_since=T0)
    settle = d.create_settle(15.0)
    assert settle == dt.timedelta(seconds=15) + d.CREATE_SETTLE
    assert d.reconcile(desired(), rec, settle=settle) == d.LookUp()
    early = d.NameLookup([], T0 + settle - dt.timedelta(seconds=1))
    waiting = d.reconcile(desired(), rec, lookup=early, settle=settle)
    assert isinstance(waiting, d.Wait) and waiting.reason == "CheckingCreate" and waiting.unsure
    found = pod("RUNNING", "3")
    early_hit = d.NameLookup([found], T0 + dt.timedelta(seconds=1))
    assert d.reconcile(desired(), rec, lookup=early_hit, settle=settle) == d.Adopt(found)
    late = d.NameLookup([], T0 + settle)
    assert d.reconcile(desired(), rec, lookup=late, settle=settle) == d.Create()


def test_deleting_a_create_in_doubt_waits_out_the_create_timeout_too() -> None:
    rec = recorded(pending_since=T0)
    settle = d.create_settle(15.0)
    mid = d.NameLookup([], T0 + d.CREATE_SETTLE)
    assert isinstance(d.finalize(desired(), rec, T0, lookup=mid, settle=settle), d.Wait)
    late = d.NameLookup([], T0 + settle)
    assert isinstance(d.finalize(desired(), rec, T0, lookup=late, settle=settle), d.Release)
