"""Account resolution, namespace selection and the pin (domain.accounts): pure, no cluster."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from gpupod_operator.domain import accounts as acc
from gpupod_operator.domain import decisions as d
from gpupod_operator.domain.accounts import AccountId, AccountUnavailable
from gpupod_operator.domain.spec import AccountRef
from gpupod_operator.domain.status import Observed
from gpupod_operator.yotta import Pod

NS = "team-a"
YA_DEFAULT = AccountId("YottaAccount", NS, "default")
CYA_DEFAULT = AccountId("ClusterYottaAccount", "", "default")
T0 = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def _cya(allowed: dict[str, Any] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"apiKeySecretRef": {"name": "k", "key": "api-key"}}
    if allowed is not None:
        spec["allowedNamespaces"] = allowed
    return {"spec": spec}


YA = {"spec": {"apiKeySecretRef": {"name": "k", "key": "api-key"}}}


def _ref(kind: str, name: str) -> AccountRef:
    return AccountRef.model_validate({"kind": kind, "name": name})


def test_omitted_ref_prefers_the_namespace_default_then_the_cluster_default_then_operator() -> None:
    everything = {YA_DEFAULT: YA, CYA_DEFAULT: _cya({"names": [NS]})}
    assert acc.resolve(None, NS, everything, {}, []) == YA_DEFAULT
    assert acc.resolve(None, NS, {CYA_DEFAULT: _cya({"names": [NS]})}, {}, []) == CYA_DEFAULT
    # A cluster default that does not allow the namespace is skipped, not an error.
    only_other = {CYA_DEFAULT: _cya({"names": ["team-b"]})}
    assert acc.resolve(None, NS, only_other, {}, []) == AccountId.operator()
    assert acc.resolve(None, NS, {}, {}, [NS, "x"]) == AccountId.operator()


def test_an_account_being_deleted_takes_no_new_gpupods() -> None:
    going = {"metadata": {"deletionTimestamp": "2026-12-01T00:00:00Z"}, **YA}
    assert acc.resolve(None, NS, {YA_DEFAULT: going}, {}, []) == AccountId.operator()
    with pytest.raises(AccountUnavailable, match="is being deleted"):
        acc.resolve(_ref("YottaAccount", "default"), NS, {YA_DEFAULT: going}, {}, [])


def test_operator_key_limited_by_default_account_namespaces() -> None:
    with pytest.raises(AccountUnavailable) as e:
        acc.resolve(None, NS, {}, {}, ["platform"])
    assert e.value.reason == "AccountNotAllowed"
    assert "YottaAccount named default" in str(e.value)


def test_explicit_ref_missing_or_not_allowed() -> None:
    with pytest.raises(AccountUnavailable) as e:
        acc.resolve(_ref("YottaAccount", "mine"), NS, {}, {}, [])
    assert "YottaAccount mine does not exist in namespace team-a" in str(e.value)
    assert e.value.reason == "AccountNotFound"
    cya = AccountId("ClusterYottaAccount", "", "shared")
    with pytest.raises(AccountUnavailable) as e:
        acc.resolve(_ref("ClusterYottaAccount", "shared"), NS, {cya: _cya(None)}, {}, [])
    assert e.value.reason == "AccountNotAllowed"
    assert "spec.allowedNamespaces" in str(e.value)
    allowed = {cya: _cya({"selector": {"matchLabels": {"tier": "gpu"}}})}
    assert (
        acc.resolve(_ref("ClusterYottaAccount", "shared"), NS, allowed, {"tier": "gpu"}, []) == cya
    )


@pytest.mark.parametrize(
    ("allowed", "labels", "expected"),
    [
        (None, {}, False),
        ({"names": []}, {}, False),
        ({"names": [NS]}, {}, True),
        ({"selector": {}}, {}, True),
        ({"selector": {"matchLabels": {"a": "1"}}}, {"a": "1", "b": "2"}, True),
        ({"selector": {"matchLabels": {"a": "1"}}}, {"a": "2"}, False),
        (
            {"selector": {"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}]}},
            {"a": "1"},
            True,
        ),
        (
            {
                "selector": {
                    "matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]
                }
            },
            {"a": "1"},
            False,
        ),
        ({"selector": {"matchExpressions": [{"key": "a", "operator": "Exists"}]}}, {}, False),
        ({"selector": {"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}}, {}, True),
        (
            {"selector": {"matchExpressions": [{"key": "a", "operator": "Bogus"}]}},
            {"a": "1"},
            False,
        ),
    ],
)
def test_namespace_allowed(
    allowed: dict[str, Any] | None, labels: dict[str, str], expected: bool
) -> None:
    assert acc.namespace_allowed(allowed, NS, labels) is expected


def test_source_and_key_of_secret() -> None:
    ya = {
        "spec": {"apiKeySecretRef": {"name": "s", "key": "k"}, "rateLimit": {"qps": 3, "burst": 5}}
    }
    source = acc.source_of(YA_DEFAULT, ya, "gpupod-system")
    assert (source.secret_namespace, source.secret_name, source.qps, source.burst) == (
        NS,
        "s",
        3.0,
        5,
    )
    assert source.api_url is None
    cya = {"spec": {"apiKeySecretRef": {"name": "s", "key": "k"}, "apiUrl": "http://x"}}
    assert acc.source_of(CYA_DEFAULT, cya, "gpupod-system").secret_namespace == "gpupod-system"
    assert acc.source_of(CYA_DEFAULT, cya, "gpupod-system").api_url == "http://x"
    with pytest.raises(AccountUnavailable, match="does not exist"):
        acc.source_of(YA_DEFAULT, None, "gpupod-system")
    assert acc.key_of(source, {"k": " the-key\n"}) == "the-key"
    for data in (None, {}, {"k": ""}):
        with pytest.raises(AccountUnavailable) as e:
            acc.key_of(source, data)
        assert e.value.reason == "AccountNotFound"
        assert "kubectl -n team-a create secret generic s --from-literal=k=" in str(e.value)


def test_fingerprint_is_short_stable_and_not_the_key() -> None:
    fp = acc.fingerprint("sk-very-secret")
    assert fp == acc.fingerprint("sk-very-secret") != acc.fingerprint("sk-other")
    assert "secret" not in fp and len(fp) == len("sha256:") + 12


def test_pin_round_trip() -> None:
    pin = YA_DEFAULT.pin("sha256:abc")
    assert pin == {"kind": "YottaAccount", "name": "default", "keyFingerprint": "sha256:abc"}
    assert AccountId.pinned(pin, NS) == YA_DEFAULT
    assert AccountId.pinned(AccountId.operator().pin("f"), NS) == AccountId.operator()
    assert AccountId.pinned(CYA_DEFAULT.pin("f"), NS) == CYA_DEFAULT
    assert AccountId.pinned(None, NS) is None


GONE = Observed(None)
EMPTY = d.NameLookup([], T0)


@pytest.mark.parametrize(
    ("action", "observed", "lookup"),
    [
        (d.Stop("RemotePodLost", "m", "Lost"), GONE, None),
        (d.Forget(), GONE, None),
        (d.Create(), None, EMPTY),
        (d.Release("Deleted", "m"), GONE, None),
        (d.Release("NeverCreated", "m"), None, EMPTY),
    ],
)
def test_absence_under_another_key_proves_nothing(
    action: d.Action, observed: Observed | None, lookup: d.NameLookup | None
) -> None:
    wait = acc.absence_unproven(action, observed, lookup, account=YA_DEFAULT, changed=True)
    assert wait is not None and wait.reason == "AccountChanged"
    assert "Put the original API key back" in wait.message
    assert acc.absence_unproven(action, observed, lookup, account=YA_DEFAULT, changed=False) is None


def test_actions_not_resting_on_absence_pass() -> None:
    pod = Pod.model_validate({"id": "1", "status": "TERMINATED"})
    for action in (d.Release("Orphaned", "m"), d.Create(), d.Observe()):
        assert (
            acc.absence_unproven(action, Observed(pod), None, account=YA_DEFAULT, changed=True)
            is None
        )
    assert acc.key_changed("sha256:a", "sha256:b")
    assert not acc.key_changed(None, "sha256:b")
    assert not acc.key_changed("sha256:a", "sha256:a")
