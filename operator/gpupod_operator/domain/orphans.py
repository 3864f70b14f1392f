"""Which remote pods are orphans, and when one may be deleted: pure decisions for the sweep in
`controller.orphans`.

An orphan is a live remote pod whose name carries THIS cluster's tag (`spec.parse_remote_name`)
while no GpuPod with the UID in its name exists, no GpuPod records or adopts its pod ID, no
GpuPod's create marker names it, and it was not released on purpose (`deletionPolicy: Orphan`,
an Observe adoption). Pods of other clusters, of the console and under the older name format
never match the first rule, so they are never touched.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from gpupod_operator.domain.spec import parse_remote_name
from gpupod_operator.yotta import Pod, PodStatus

_GONE = frozenset({PodStatus.TERMINATED, PodStatus.TERMINATING})


@dataclass(frozen=True)
class Known:
    """What the cluster says is wanted. For a sound decision it must be read AFTER the remote
    list was sent: a GpuPod that created a listed pod existed before the list, so it is in a
    later read unless it is gone, and a release is recorded before its finalizer goes."""

    uids: frozenset[str] = frozenset()  # GpuPods that exist
    pod_ids: frozenset[str] = frozenset()  # pod IDs a GpuPod records or adopts
    pending_names: frozenset[str] = frozenset()  # remote names under a create marker
    released_uids: frozenset[str] = frozenset()  # GpuPods that released their pod on purpose
    released_pod_ids: frozenset[str] = frozenset()


def ours(pods: Iterable[Pod], tag: str) -> list[Pod]:
    """Live pods named by this cluster (`tag`: `spec.cluster_tag` of its cluster id)."""
    return [
        p
        for p in pods
        if p.status not in _GONE
        and (identity := parse_remote_name(p.name)) is not None
        and identity.cluster_tag == tag
    ]


def orphans(pods: Iterable[Pod], tag: str, known: Known) -> list[Pod]:
    """The pods of this cluster that nothing in `known` accounts for."""
    found = []
    for pod in ours(pods, tag):
        identity = parse_remote_name(pod.name)
        assert identity is not None
        if (
            identity.uid in known.uids
            or identity.uid in known.released_uids
            or pod.id in known.pod_ids
            or pod.id in known.released_pod_ids
            or pod.name in known.pending_names
        ):
            continue
        found.append(pod)
    return sorted(found, key=lambda p: p.id)


@dataclass
class Sightings:
    """When each orphan was first seen, in memory: a restart starts every grace again, which
    errs on the side of keeping a pod a little longer, never of deleting one too early."""

    first_seen: dict[str, dt.datetime] = field(default_factory=dict)

    def update(self, orphan_ids: Iterable[str], now: dt.datetime) -> list[str]:
        """Record this round's orphans; returns those seen for the first time (to report once).
        A pod that is no longer an orphan is forgotten: if it becomes one again, its grace
        starts again."""
        current = set(orphan_ids)
        new = sorted(current - self.first_seen.keys())
        self.first_seen = {k: v for k, v in self.first_seen.items() if k in current}
        self.first_seen.update({k: now for k in new})
        return new

    def due(self, now: dt.datetime, grace: dt.timedelta) -> list[str]:
        """Orphans seen for at least `grace` (delete mode terminates these)."""
        return sorted(k for k, seen in self.first_seen.items() if now - seen >= grace)

    def forget(self, pod_id: str) -> None:
        self.first_seen.pop(pod_id, None)


def prunable(
    released: dict[str, str | None], listed: dict[str, Pod]
) -> tuple[list[str], dict[str, str]]:
    """Released entries (GpuPod UID -> pod ID) whose pod is gone, so the record stays small:
    (UIDs listed as TERMINATED, {UID: pod ID} of those not listed, which only a GET can tell
    gone). An entry without a pod ID (a release during an unconfirmed create) is kept."""
    gone, unlisted = [], {}
    for uid, pod_id in sorted(released.items()):
        if not pod_id:
            continue
        pod = listed.get(pod_id)
        if pod is None:
            unlisted[uid] = pod_id
        elif pod.status == PodStatus.TERMINATED:
            gone.append(uid)
    return gone, unlisted
