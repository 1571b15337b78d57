"""`--offload auto`: the fastest offload mode whose predicted peak fits the GPU's free memory, with a margin.

It is the default. On a CPU it means no offload (the weights are already in the memory the render uses) and
nothing is traced. On a CUDA GPU the render is planned (videogen.plan.planner) before any weight is read, and the
run record keeps the prediction per stage next to what `torch.cuda.max_memory_allocated` measured.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch

from videogen.plan.planner import GIB, OFFLOAD_MODES

log = logging.getLogger("videogen")

# The prediction counts tensor storages; a run also needs the CUDA context, the caching allocator's rounding
# and fragmentation, and library workspaces (cuBLAS, attention kernels): a fixed reserve plus a fraction.
RESERVE_BYTES = GIB // 2
MARGIN = 0.10
# Engine stages (Engine.render's timings) -> the planner's stages.
STAGES = {"encode": "text_encoder", "denoise": "denoise", "decode": "decode"}
NOT_ON_CPU = "not measured on CPU (torch.cuda.max_memory_allocated needs a CUDA device)"


def fits(peak_gib: float, free_bytes: int) -> bool:
    return peak_gib * GIB * (1 + MARGIN) + RESERVE_BYTES <= free_bytes


def choose_offload(plan: dict[str, Any], free_bytes: int, tiling: bool | None = None) -> tuple[str, bool]:
    """(offload, vae_tiling): the fastest mode that fits, untiled unless only the tiled decode fits.

    `tiling` fixes the VAE tiling (the user chose it); None lets the plan choose. When nothing fits, the mode
    with the lowest peak (sequential, tiled unless fixed): the run may still fail, and the caller says so.
    """
    choices = (False, True) if tiling is None else (tiling,)
    for mode in OFFLOAD_MODES:
        row = plan["offload"][mode]
        for tiled in choices:
            if fits(row["gpu_peak_gib_tiled" if tiled else "gpu_peak_gib_untiled"], free_bytes):
                return mode, tiled
    return "sequential", choices[-1]


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


@dataclass
class Memory:
    """What the engine runs with (offload, tiling), why, and the plan behind it; the record's `memory` section."""

    offload: str
    vae_tiling: bool
    chosen_by: str
    free_gib: float | None = None
    planning: bool = False  # plan each render (on CUDA, or when --offload auto was asked for by name)
    plans: dict[tuple[Any, ...], dict[str, Any]] = field(default_factory=dict)  # plan_key -> plan

    def plan_for(self, spec: Any, info: Any, dtype: torch.dtype) -> dict[str, Any] | None:
        """The plan of this render (cached per shape), or None when this engine does not plan."""
        if not self.planning:
            return None
        spec = _sized(spec, info)
        key = plan_key(spec)
        if key not in self.plans:
            try:
                self.plans[key] = plan_render(spec, info, dtype)
            except Exception as e:  # advice only: a render is never stopped by its prediction
                log.warning("cannot predict this render's memory (%s: %s)", type(e).__name__, e)
                return None
        return self.plans[key]

    def predicted(self, plan: dict[str, Any] | None) -> dict[str, Any] | str:
        if plan is None:
            return "not planned (the plan is made on a CUDA device, or on any device with --offload auto)"
        row = plan["offload"][self.offload]
        stages = row["stages_gib"]["tiled" if self.vae_tiling else "untiled"]
        return {**stages, "peak": max(stages.values()), "excludes": plan["method"]["excludes"]}

    def record(self, plan: dict[str, Any] | None, measured: dict[str, float] | None) -> dict[str, Any]:
        out: dict[str, Any] = {"offload": self.offload, "vae_tiling": self.vae_tiling, "chosen_by": self.chosen_by}
        if self.free_gib is not None:
            out["gpu_free_gib_at_load"] = self.free_gib
        out["predicted_gpu_gib"] = self.predicted(plan)
        out["measured_gpu_gib"] = NOT_ON_CPU if measured is None else {
            **measured, "counter": "torch.cuda.max_memory_allocated, reset at the start of each stage"}
        return out


def _label(spec: Any, name: str) -> str | None:
    """Where an engine field's value came from (flag, preset, record), or None for the built-in default."""
    return spec.extras.get("where", {}).get(name)


def plan_key(spec: Any) -> tuple[Any, ...]:
    """The spec fields a plan depends on."""
    return tuple(getattr(spec, k) for k in ("frames", "height", "width", "guidance", "guidance_2", "true_guidance",
                                            "batch_cfg", "quantize", "max_sequence_length", "fps"))


def _sized(spec: Any, info: Any) -> Any:
    """Sizes from the model's defaults where the spec leaves them open (an engine is loaded before its renders)."""
    from videogen.resolve import model_defaults

    defaults = model_defaults(info, spec)
    return spec.replace(**{k: defaults[k][0] for k in ("frames", "height", "width", "guidance", "fps", "batch_cfg")
                           if getattr(spec, k) is None and k in defaults})


def plan_render(spec: Any, info: Any, dtype: torch.dtype) -> dict[str, Any]:
    """The plan of one render of the loaded model, from its folder's configs."""
    from videogen.plan.cards import card_from_folder
    from videogen.plan.planner import plan
    from videogen.plan.run import settings_of

    card = card_from_folder(info.source.path)
    return plan(card, settings_of(spec, card, dtype))


def resolve(spec: Any, info: Any, device: torch.device, dtype: torch.dtype) -> tuple[Any, Memory]:
    """The spec with a concrete offload mode and tiling, and the Memory that says how they were chosen."""
    offload_label, tiling_label = _label(spec, "offload"), _label(spec, "vae_tiling")
    on_cuda = device.type == "cuda"
    if spec.offload != "auto":
        return spec, Memory(spec.offload, bool(spec.vae_tiling), offload_label or "--offload", planning=on_cuda)
    if not on_cuda:
        memory = Memory("none", bool(spec.vae_tiling), "auto: no offload on a CPU, where the weights already are",
                        planning=offload_label is not None)  # asked for by name: the record holds the prediction
        if memory.planning:
            log.info("--offload auto: --offload none (on a CPU the weights are already in the memory it renders in)")
        return spec.replace(offload="none"), memory
    free, _total = torch.cuda.mem_get_info(device)
    sized = _sized(spec, info)
    try:
        plan = plan_render(sized, info, dtype)
    except Exception as e:  # the planner is advice: a model it cannot trace renders as it would without it
        log.warning("--offload auto: cannot plan this model (%s: %s); rendering with --offload none",
                    type(e).__name__, e)
        return spec.replace(offload="none"), Memory("none", bool(spec.vae_tiling), "auto: no plan (see warning)",
                                                    round(free / GIB, 3))
    fixed = bool(spec.vae_tiling) if tiling_label is not None else None
    offload, tiled = choose_offload(plan, free, fixed)
    row = plan["offload"][offload]
    peak = row["gpu_peak_gib_tiled" if tiled else "gpu_peak_gib_untiled"]
    fit = fits(peak, free)
    memory = Memory(offload, tiled, f"auto: the fastest mode whose predicted peak fits {free / GIB:.2f} GiB free "
                    f"(peak + {MARGIN:.0%} + {RESERVE_BYTES / GIB:g} GiB)" + ("" if fit else "; none fits"),
                    round(free / GIB, 3), planning=True)
    memory.plans[plan_key(sized)] = plan
    log.info("--offload auto: --offload %s%s, predicted GPU peak %.2f GiB of %.2f GiB free%s", offload,
             " --vae-tiling" if tiled and fixed is None else "", peak, free / GIB,
             "" if fit else " (nothing fits: expect out-of-memory; try fewer frames or a smaller size)")
    return spec.replace(offload=offload, vae_tiling=tiled), memory
