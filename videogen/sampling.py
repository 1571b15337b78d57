"""The one sampling loop, shared by every model family, and classifier-free guidance."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class Conditioning:
    """What a family's network needs besides latents and timestep (text embeddings, image latents...)."""

    name: str  # "cond" or "uncond": also the cache context a step cache keys its state on
    tensors: dict[str, torch.Tensor]

    @staticmethod
    def concat(items: list[Conditioning]) -> Conditioning:
        keys = items[0].tensors.keys()
        return Conditioning("+".join(c.name for c in items), {k: torch.cat([c.tensors[k] for c in items]) for k in keys})


@dataclass(frozen=True)
class StepInfo:
    """Where the loop is; adapters hand it to diffusers' cache hooks through `cache_context`."""

    index: int
    total: int
    sigma: float | None

    def cache_kwargs(self) -> dict[str, Any]:
        return {"step_index": self.index, "sigma": self.sigma, "num_inference_steps": self.total}


Predict = Callable[[torch.Tensor, torch.Tensor, Conditioning, StepInfo], torch.Tensor]
StepCallback = Callable[[int, int, torch.Tensor], None]


@dataclass
class Plan:
    """Everything the loop needs; built by a family adapter, so the loop never knows the family.

    `predict(latents, t, cond, step)` returns the model output in the scheduler's convention.
    `guidance(t)` is the guidance scale at timestep t (two-expert models change it mid-run).
    `step(output, t, latents)` advances the sampler; by default the scheduler's own `step`.
    `after_step(latents, i)` lets an adapter re-impose conditioning (e.g. a clean first frame).
    """

    latents: torch.Tensor
    scheduler: Any
    timesteps: torch.Tensor
    predict: Predict
    cond: Conditioning
    uncond: Conditioning | None
    guidance: Callable[[torch.Tensor], float]
    batch_cfg: bool = False
    step: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    after_step: Callable[[torch.Tensor, int], torch.Tensor] | None = None
    # Where the scheduler starts in its own timesteps; None lets it find the first timestep itself (as
    # diffusers' img2img-style pipelines do when they start part-way through the schedule).
    begin_index: int | None = 0
    info: dict[str, Any] = field(default_factory=dict)


def cfg(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022): uncond + scale * (cond - uncond)."""
    return uncond + scale * (cond - uncond)


def guided_prediction(plan: Plan, x: torch.Tensor, t: torch.Tensor, step: StepInfo,
                      pair: Conditioning | None = None) -> torch.Tensor:
    """`pair`: [uncond, cond] concatenated once per render by `sample` (it does not change between steps)."""
    scale = plan.guidance(t)
    if plan.uncond is None or scale == 1.0:
        return plan.predict(x, t, plan.cond, step)
    if plan.batch_cfg:
        pair = pair or Conditioning.concat([plan.uncond, plan.cond])
        both = plan.predict(torch.cat([x, x]), t, pair, step)
        uncond, cond = both.chunk(2)
        return cfg(cond, uncond, scale)
    cond = plan.predict(x, t, plan.cond, step)
    uncond = plan.predict(x, t, plan.uncond, step)
    return cfg(cond, uncond, scale)


def sample(plan: Plan, callback: StepCallback | None = None) -> torch.Tensor:
    """Run the sampler over `plan.timesteps`; returns the final latents."""
    step = plan.step or (lambda out, t, x: plan.scheduler.step(out, t, x, return_dict=False)[0])
    if hasattr(plan.scheduler, "set_begin_index") and plan.begin_index is not None:
        plan.scheduler.set_begin_index(plan.begin_index)
    x = plan.latents
    total = len(plan.timesteps)
    sigmas = getattr(plan.scheduler, "sigmas", None)
    pair = Conditioning.concat([plan.uncond, plan.cond]) if plan.batch_cfg and plan.uncond is not None else None
    for i, t in enumerate(plan.timesteps):
        sigma = float(sigmas[i]) if sigmas is not None and i < len(sigmas) else None
        out = guided_prediction(plan, x, t, StepInfo(i, total, sigma), pair)
        x = step(out, t, x)
        if plan.after_step is not None:
            x = plan.after_step(x, i)
        if callback is not None:
            callback(i, total, x)
    return x
