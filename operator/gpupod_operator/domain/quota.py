"""GpuQuota: whether a GpuPod fits, the reservation that holds its capacity, and the status.

Admission is exact because the decision and the usage change are ONE write: the controller
reads the quota, `admit` decides on that view and returns the new status, which is written
with the quota's resourceVersion as a precondition (controller/quota.py); a concurrent
admission makes the write fail and the decision is taken again on the fresh view. `used` is
never counted on its own: it is always the sum of the reservations, one per GpuPod UID, so an
admission repeated after a crash finds its reservation and counts nothing twice.

Waiting GpuPods are admitted oldest first: a GpuPod is admitted only if it still fits after
every older waiting GpuPod that fits has been served (older ones that do not fit do not block
younger, smaller ones).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

ZERO = Decimal(0)
CENT = Decimal("0.01")


def money(value: Decimal) -> str:
    """USD as the status shows it: at least two decimals, no float rounding, no exponent."""
    value = value.normalize()
    return str(value.quantize(CENT) if value == value.quantize(CENT) else value)


@dataclass(frozen=True)
class Amounts:
    gpus: int = 0
    pods: int = 0
    price: Decimal = ZERO

    def __add__(self, other: Amounts) -> Amounts:
        return Amounts(self.gpus + other.gpus, self.pods + other.pods, self.price + other.price)

    def to_status(self) -> dict[str, Any]:
        return {"gpus": self.gpus, "pods": self.pods, "pricePerHour": money(self.price)}


@dataclass(frozen=True)
class Hard:
    gpus: int | None = None
    pods: int | None = None
    price: Decimal | None = None

    @classmethod
    def parse(cls, hard: Mapping[str, Any] | None) -> Hard:
        hard = hard or {}
        price = hard.get("pricePerHour")
        return cls(hard.get("gpus"), hard.get("pods"), Decimal(price) if price else None)

    def exceeded(self, amounts: Amounts) -> list[str]:
        """The dimensions `amounts` goes over ([] when it fits)."""
        over = []
        if self.gpus is not None and amounts.gpus > self.gpus:
            over.append("gpus")
        if self.pods is not None and amounts.pods > self.pods:
            over.append("pods")
        if self.price is not None and amounts.price > self.price:
            over.append("pricePerHour")
        return over

    def as_dict(self) -> dict[str, str]:
        out = {}
        if self.gpus is not None:
            out["gpus"] = str(self.gpus)
        if self.pods is not None:
            out["pods"] = str(self.pods)
        if self.price is not None:
            out["pricePerHour"] = money(self.price)
        return out


@dataclass(frozen=True)
class Reservation:
    uid: str
    name: str
    amounts: Amounts
    since: str
    estimated: bool = False

    @classmethod
    def parse(cls, r: Mapping[str, Any]) -> Reservation:
        return cls(
            uid=r["uid"],
            name=r.get("name") or "",
            amounts=Amounts(
                int(r.get("gpus") or 0),
                int(r.get("pods") or 0),
                Decimal(r.get("pricePerHour") or 0),
            ),
            since=r.get("since") or "",
            estimated=bool(r.get("estimated")),
        )

    def to_status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"uid": self.uid, "name": self.name, **self.amounts.to_status()}
        out["estimated"] = self.estimated
        if self.since:
            out["since"] = self.since
        return out


@dataclass(frozen=True)
class Quota:
    name: str
    namespace: str
    resource_version: str
    hard: Hard
    reservations: dict[str, Reservation]
    prices: dict[str, Decimal]  # GPU type -> USD per GPU-hour, as last quoted

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> Quota:
        meta, status = body["metadata"], body.get("status") or {}
        reservations = [Reservation.parse(r) for r in status.get("reservations") or []]
        return cls(
            name=meta["name"],
            namespace=meta["namespace"],
            resource_version=meta.get("resourceVersion") or "",
            hard=Hard.parse((body.get("spec") or {}).get("hard")),
            reservations={r.uid: r for r in reservations},
            prices={k: Decimal(v) for k, v in (status.get("prices") or {}).items()},
        )

    def used(self, without: str | None = None) -> Amounts:
        return sum((r.amounts for uid, r in self.reservations.items() if uid != without), Amounts())

    def status(
        self, reservations: Mapping[str, Reservation], prices: Mapping[str, Decimal]
    ) -> dict[str, Any]:
        """The status to write for these reservations (used recomputed from them)."""
        kept = sorted(reservations.values(), key=lambda r: (r.since, r.uid))
        return {
            "used": sum((r.amounts for r in kept), Amounts()).to_status(),
            "reservations": [r.to_status() for r in kept],
            "prices": {k: money(v) for k, v in sorted(prices.items())},
        }


@dataclass(frozen=True)
class Request:
    """What one GpuPod asks of the quotas of its namespace."""

    uid: str
    name: str
    created: str  # creationTimestamp: the order of admission
    gpu_type: str | None
    gpus: int
    price: Decimal | None  # the estimate; None: no price known for the GPU type

    @property
    def amounts(self) -> Amounts:
        return Amounts(self.gpus, 1, self.price or ZERO)

    @property
    def order(self) -> tuple[str, str]:
        return (self.created, self.uid)


def estimate(gpu_type: str | None, gpus: int, prices: Mapping[str, Decimal]) -> Decimal | None:
    """pricePerHour before the create: the last quoted price per GPU-hour times the count."""
    per_gpu = prices.get(gpu_type or "")
    return None if per_gpu is None else per_gpu * gpus


def learn(
    prices: Mapping[str, Decimal], gpu_type: str | None, single_card: Any
) -> dict[str, Decimal]:
    """The price table with one more quote (unchanged when the quote says nothing)."""
    out = dict(prices)
    if gpu_type and single_card is not None:
        out[gpu_type] = Decimal(str(single_card))
    return out


@dataclass(frozen=True)
class Admitted:
    status: dict[str, Any] | None  # None: already admitted, nothing to write


@dataclass(frozen=True)
class Refused:
    reason: str
    message: str


Outcome = Admitted | Refused


def _usage(quota: Quota, used: Amounts, request: Request) -> str:
    hard = quota.hard.as_dict()
    need = request.amounts.to_status()
    have = used.to_status()
    parts = [f"{k} {have[k]}/{v} used (this GpuPod needs {need[k]})" for k, v in hard.items()]
    return ", ".join(parts)


def admit(
    quota: Quota,
    request: Request,
    waiting: Iterable[Request] = (),
    now: dt.datetime | None = None,
    prices: Mapping[str, Decimal] | None = None,
) -> Outcome:
    """Admit `request` into `quota` (the view just read), or say why it waits.

    A reservation already held by this UID with the same amounts is reused (Admitted with
    nothing to write): after a crash between the admission and the create, or a second
    reconcile of the same GpuPod. With other amounts (a Recreate with a new gpuCount) the
    GpuPod is admitted anew, its old reservation not counted."""
    table = {**quota.prices, **(prices or {})}
    if request.price is None:  # the quota may remember a quote this process has not seen
        request = replace(request, price=estimate(request.gpu_type, request.gpus, table))
    held = quota.reservations.get(request.uid)
    if held is not None and (held.amounts.gpus, held.amounts.pods) == (request.gpus, 1):
        return Admitted(None)
    if quota.hard.price is not None and request.price is None:
        return Refused(
            "QuotaExceeded",
            f"GpuQuota {quota.name} limits pricePerHour, and no price is known yet for GPU type "
            f"{request.gpu_type}: the provider's GPU type list does not quote it (or could not "
            "be read). It is learned from the first pod of that type the operator sees: run "
            "one outside this quota, or remove hard.pricePerHour",
        )
    used = quota.used(without=request.uid)
    over = quota.hard.exceeded(used + request.amounts)
    if over:
        return Refused(
            "QuotaExceeded",
            f"GpuQuota {quota.name} is full: {_usage(quota, used, request)}; waiting until "
            "capacity frees (oldest first)",
        )
    ahead = sorted(
        (
            w
            for w in waiting
            if w.order < request.order
            and w.uid not in quota.reservations
            and (w.price is not None or quota.hard.price is None)
        ),
        key=lambda w: w.order,
    )
    served = used
    for w in ahead:
        if not quota.hard.exceeded(served + w.amounts):
            served = served + w.amounts
    if quota.hard.exceeded(served + request.amounts):
        return Refused(
            "QuotaExceeded",
            f"GpuQuota {quota.name}: {_usage(quota, used, request)}; older GpuPods waiting "
            "for this quota go first",
        )
    since = (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    reservation = Reservation(
        request.uid, request.name, request.amounts, since, estimated=request.price is not None
    )
    return Admitted(quota.status({**quota.reservations, request.uid: reservation}, table))


def release(quota: Quota, uid: str) -> dict[str, Any] | None:
    """The status without `uid`'s reservation; None when it holds none."""
    if uid not in quota.reservations:
        return None
    kept = {k: v for k, v in quota.reservations.items() if k != uid}
    return quota.status(kept, quota.prices)


def correct(
    quota: Quota, uid: str, price: Decimal, prices: Mapping[str, Decimal]
) -> dict[str, Any] | None:
    """The status with `uid`'s estimate replaced by the price the provider quoted, and the
    quotes remembered; None when there is nothing to change."""
    table = {**quota.prices, **prices}
    reservations = dict(quota.reservations)
    held = reservations.get(uid)
    if held is not None and (held.estimated or held.amounts.price != price):
        fixed = replace(held, amounts=replace(held.amounts, price=price), estimated=False)
        reservations[uid] = fixed
    if reservations == quota.reservations and table == quota.prices:
        return None
    return quota.status(reservations, table)


@dataclass(frozen=True)
class Upkeep:
    """What a periodic pass writes to one quota."""

    status: dict[str, Any] | None
    dropped: list[str] = field(default_factory=list)


def upkeep(
    quota: Quota,
    gone: Iterable[str],
    prices: Mapping[str, Decimal],
    spend: Decimal | None,
    waiting: int,
    current: Mapping[str, Any],
) -> Upkeep:
    """Drop the reservations of GpuPods that no longer exist, remember prices, and report
    spend and the number waiting; status None when `current` already says all that."""
    dropped = [uid for uid in gone if uid in quota.reservations]
    kept = {k: v for k, v in quota.reservations.items() if k not in dropped}
    status = quota.status(kept, {**quota.prices, **prices})
    status["waiting"] = waiting
    if spend is not None:
        status["spend"] = money(spend)
    changed = any(current.get(k) != v for k, v in status.items())
    return Upkeep(status if changed else None, dropped)


def tightest(quotas: Iterable[Quota]) -> dict[str, tuple[float, float | None]]:
    """Per dimension, (used, hard) of the namespace's most restrictive quota: the metrics."""
    out: dict[str, tuple[float, float | None]] = {}
    for q in quotas:
        used = q.used()
        for key, u, h in (
            ("gpus", float(used.gpus), q.hard.gpus),
            ("pods", float(used.pods), q.hard.pods),
            ("pricePerHour", float(used.price), q.hard.price),
        ):
            hard = None if h is None else float(h)
            prev = out.get(key)
            if prev is None or (hard is not None and (prev[1] is None or hard < prev[1])):
                out[key] = (u, hard)
    return out
