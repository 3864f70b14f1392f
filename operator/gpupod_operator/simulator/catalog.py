"""The simulator's GPU catalog: the v2 guide's 16 GPU codes (reference §5.3) over a few regions.

Prices are invented but plausible (USD per GPU-hour); only the RTX 5090's "0.65" comes from a
captured response. Every type is offered in us-east-1 so any example works there.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

REGIONS: dict[str, str] = {
    "us-east-1": "US East 1",
    "us-east-2": "US East 2",
    "us-west-1": "US West 1",
    "ap-southeast-1": "Asia Pacific (Singapore)",
}
DEFAULT_REGION = "us-east-1"
ALL = tuple(REGIONS)
US = ("us-east-1", "us-east-2", "us-west-1")
CPU_PRICE = Decimal("0.08")


@dataclass(frozen=True)
class GpuSpec:
    code: str
    display_name: str
    vram_gb: int
    price: Decimal
    ram_gb: int
    vcpu: int
    regions: tuple[str, ...]
    #: Regions listed with available=false: a pod placed only there ends FAILED.
    sold_out: tuple[str, ...] = ()


def _gpu(
    code: str,
    name: str,
    vram: int,
    price: str,
    regions: tuple[str, ...] = ALL,
    sold_out: tuple[str, ...] = (),
) -> GpuSpec:
    # Host RAM and vCPU per card scale roughly with the card class.
    ram = 64 if vram <= 48 else 128 if vram <= 96 else 256
    vcpu = 8 if vram <= 48 else 16 if vram <= 96 else 24
    return GpuSpec(code, name, vram, Decimal(price), ram, vcpu, regions, sold_out)


GPUS: dict[str, GpuSpec] = {
    g.code: g
    for g in (
        _gpu("NVIDIA_RTX_4090_24G", "RTX 4090", 24, "0.45"),
        _gpu("NVIDIA_RTX_5090_32G", "RTX 5090", 32, "0.65"),
        _gpu("NVIDIA_RTX_A6000_48G", "RTX A6000", 48, "0.50", US),
        _gpu("NVIDIA_RTX_6000_Ada_48G", "RTX 6000 Ada", 48, "0.80", US),
        _gpu("NVIDIA_A100_PCIe_40G", "A100 PCIe 40GB", 40, "1.10", US),
        _gpu("NVIDIA_A100_40G", "A100 SXM 40GB", 40, "1.20", US),
        _gpu("NVIDIA_A100_PCIe_80G", "A100 PCIe 80GB", 80, "1.40"),
        _gpu("NVIDIA_A100_80G", "A100 SXM 80GB", 80, "1.60"),
        _gpu("NVIDIA_H100_PCIe_80G", "H100 PCIe", 80, "2.10", US),
        _gpu("NVIDIA_H100_80G", "H100 SXM", 80, "2.40"),
        _gpu("NVIDIA_RTX_PRO_6000_96G", "RTX PRO 6000", 96, "1.70", US),
        _gpu("NVIDIA_H200_141G", "H200", 141, "3.20", ("us-east-1", "us-west-1")),
        _gpu("NVIDIA_B200_180G", "B200", 180, "4.50", ("us-east-1", "us-west-1")),
        _gpu(
            "NVIDIA_B300_262G",
            "B300",
            262,
            "5.90",
            ("us-east-1", "ap-southeast-1"),
            sold_out=("ap-southeast-1",),
        ),
        _gpu("AWS_Trainium_32G", "Trainium", 32, "0.90", ("us-east-1",)),
        _gpu("AMD_MI300X_192G", "MI300X", 192, "2.80", ("us-east-1", "us-east-2")),
    )
}


def vm_type_id(code: str, region: str) -> int:
    """Stable numeric id per (gpu type, region), like the API's vmTypeId."""
    return 100 + list(GPUS).index(code) * 10 + list(REGIONS).index(region)


def render_catalog(price_as_string: bool = True) -> list[dict[str, Any]]:
    """`GET /v2/vms/types` data: the documented fields plus display name, VRAM and price."""
    return [
        {
            "gpuType": g.code,
            "gpuDisplayName": g.display_name,
            "singleCardVramInGb": g.vram_gb,
            "singleCardPrice": str(g.price) if price_as_string else float(g.price),
            "regions": [
                {
                    "region": r,
                    "regionName": REGIONS[r],
                    "available": r not in g.sold_out,
                    "vmTypeId": vm_type_id(g.code, r),
                }
                for r in g.regions
            ],
        }
        for g in GPUS.values()
    ]
