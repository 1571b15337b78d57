"""`--offload auto`: the fastest offload mode whose predicted peak fits the GPU's free memory, with a margin."""

from __future__ import annotations

from typing import Any

from videogen.plan.planner import GIB, OFFLOAD_MODES

# The prediction counts tensor storages; a run also needs the CUDA context, the caching allocator's rounding
# and fragmentation, and library workspaces (cuBLAS, attention kernels): a fixed reserve plus a fraction.
RESERVE_BYTES = GIB // 2
MARGIN = 0.10


def fits(peak_gib: float, free_bytes: int) -> bool:
    return peak_gib * GIB * (1 + MARGIN) + RESERVE_BYTES <= free_bytes


def choose_offload(plan: dict[str, Any], free_bytes: int) -> tuple[str, bool]:
    """(offload, vae_tiling): the fastest mode that fits, untiled unless only the tiled decode fits.

    When nothing fits, the mode with the lowest peak (sequential, tiled): the run may still fail, and the caller
    should say so (`fits` is false for every mode in the plan).
    """
    for mode in OFFLOAD_MODES:
        row = plan["offload"][mode]
        if fits(row["gpu_peak_gib_untiled"], free_bytes):
            return mode, False
        if fits(row["gpu_peak_gib_tiled"], free_bytes):
            return mode, True
    return "sequential", True


def mark_fits(plan: dict[str, Any], free_bytes: int) -> None:
    """Add `fits` per offload mode (for the plan's own tiling choice) and the recommendation."""
    tiled = bool(plan["settings"].get("vae_tiling"))
    for row in plan["offload"].values():
        row["fits"] = fits(row["gpu_peak_gib_tiled" if tiled else "gpu_peak_gib_untiled"], free_bytes)
    offload, vae_tiling = choose_offload(plan, free_bytes)
    row = plan["offload"][offload]
    plan["recommended"] = {"offload": offload, "vae_tiling": vae_tiling,
                           "fits": fits(row["gpu_peak_gib_tiled" if vae_tiling else "gpu_peak_gib_untiled"],
                                        free_bytes)}
