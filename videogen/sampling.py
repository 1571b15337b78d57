"""The one sampling loop, shared by every model family, and classifier-free guidance."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
else:
    from videogen.lazy import torch



@dataclass(frozen=True)
class Conditioning:
    """What a family's network needs besides latents and timestep (text embeddings, image latents...).

    `info` carries facts about the encoding worth recording (e.g. a prompt cut at the token limit).
    """

    name: str  # "cond" or "uncond": also the cache context a step cache keys its state on
    tensors: dict[str, torch.Tensor]
    info: dict[str, Any] = field(default_factory=dict, compare=False)

    @staticmethod
    def concat(items: list[Conditioning]) -> Conditioning:
        keys = items[0].tensors.keys()
        return Conditioning("+".join(c.name for c in items), {k: torch.cat([c.tensors[k] for c in items]) for k in keys})


@dataclass(frozen=True)
class StepInfo:
    """Where the loop is; the loop hands it to diffusers' cache hooks through the network's `cache_context`."""

    index: int
    total: int
    sigma: float | None

    def cache_kwargs(self) -> dict[str, Any]:
        return {"step_index": self.index, "sigma": self.sigma, "num_inference_steps": self.total}


# The loop's latents: one tensor, or a tuple of tensors for a model that denoises several streams together (video
# and sound); the loop only hands them around, the family's predict, guide and step read them.
Latents = Any
# Type aliases name torch's Tensor as a string: evaluating it here would import torch (see videogen.lazy).
Predict = Callable[[Latents, "torch.Tensor", Conditioning, StepInfo], Latents]
# on_step(step_index, total, latents, x0): latents in the family's own layout after the step; x0 the clean-video
# estimate of that step as model-space latents [B,C,F,h,w] (what a latent format's RGB factors apply to).
StepCallback = Callable[[int, int, "torch.Tensor", "torch.Tensor | None"], None]
# x0(model_output, t, latents_before_the_step, step_index) -> the clean estimate, in the loop's layout
X0 = Callable[["torch.Tensor", "torch.Tensor", "torch.Tensor", int], "torch.Tensor"]


@dataclass
class Plan:
    """Everything the loop needs; built by a family adapter, so the loop never knows the family.

    `predict(latents, t, cond, step)` returns the model output in the scheduler's convention.
    `network(t)` is the module that computes at timestep t: the loop enters its cache context around every
    forward, so no adapter can forget it (two-expert models answer with the expert of that timestep).
    `guidance(t)` is the guidance scale at timestep t (two-expert models change it mid-run).
    `step(output, t, latents)` advances the sampler; by default the scheduler's own `step`.
    `after_step(latents, i)` lets an adapter re-impose conditioning (e.g. a clean first frame).
    `x0` gives the step's clean estimate, `to_video` maps loop latents to [B,C,F,h,w] (for step callbacks).
    `guide` replaces classifier-free guidance with the family's own combination of network passes.
    """

    latents: Latents
    scheduler: Any
    timesteps: torch.Tensor
    predict: Predict
    network: Callable[[torch.Tensor], Any]
    cond: Conditioning
    uncond: Conditioning | None
    guidance: Callable[[torch.Tensor], float]
    batch_cfg: bool = False
    step: Callable[[Latents, torch.Tensor, Latents], Latents] | None = None
    after_step: Callable[[torch.Tensor, int], torch.Tensor] | None = None
    x0: X0 | None = None
    # A family's own guidance, replacing classifier-free guidance: `guide(plan, x, t, step)` runs its network
    # passes through `forward` (so each keeps its cache context) and combines them its own way.
    guide: Callable[[Plan, Latents, torch.Tensor, StepInfo], Latents] | None = None
    to_video: Callable[[torch.Tensor], torch.Tensor] = lambda x: x
    # Schedule positions run before `timesteps` begins (video-to-video starts part-way): sigmas and x0 are
    # indexed from there, and the scheduler finds its own place from the first timestep, as diffusers'
    # img2img-style pipelines leave it.
    skip: int = 0
    info: dict[str, Any] = field(default_factory=dict)


def cfg(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022): uncond + scale * (cond - uncond)."""
    return uncond + scale * (cond - uncond)


def finite(x: Latents) -> bool:
    """Whether every value of the latents (each stream of a tuple) is finite."""
    return all(bool(torch.isfinite(part).all()) for part in (x if isinstance(x, tuple) else (x,)))


def forward(plan: Plan, x: Latents, t: torch.Tensor, c: Conditioning, step: StepInfo) -> Latents:
    """One network call inside the network's cache context (a step cache keys its state on `c.name`)."""
    module = plan.network(t)
    context = getattr(module, "cache_context", None)
    with context(c.name, **step.cache_kwargs()) if context is not None else contextlib.nullcontext():
        return plan.predict(x, t, c, step)


def guided_prediction(plan: Plan, x: torch.Tensor, t: torch.Tensor, step: StepInfo,
                      pair: Conditioning | None = None) -> torch.Tensor:
    """`pair`: [uncond, cond] concatenated once per render by `sample` (it does not change between steps)."""
    scale = plan.guidance(t)
    if plan.uncond is None or scale == 1.0:
        return forward(plan, x, t, plan.cond, step)
    if plan.batch_cfg:
        pair = pair or Conditioning.concat([plan.uncond, plan.cond])
        both = forward(plan, torch.cat([x, x]), t, pair, step)
        uncond, cond = both.chunk(2)
        return cfg(cond, uncond, scale)
    cond = forward(plan, x, t, plan.cond, step)
    uncond = forward(plan, x, t, plan.uncond, step)
    return cfg(cond, uncond, scale)


def sample(plan: Plan, callback: StepCallback | None = None) -> Latents:
    """Run the sampler over `plan.timesteps`; returns the final latents."""
    step = plan.step or (lambda out, t, x: plan.scheduler.step(out, t, x, return_dict=False)[0])
    if hasattr(plan.scheduler, "set_begin_index") and plan.skip == 0:
        plan.scheduler.set_begin_index(0)
    x = plan.latents
    total = len(plan.timesteps)
    sigmas = getattr(plan.scheduler, "sigmas", None)
    pair = Conditioning.concat([plan.uncond, plan.cond]) if plan.batch_cfg and plan.uncond is not None else None
    guide = plan.guide or (lambda p, x, t, s: guided_prediction(p, x, t, s, pair))
    for i, t in enumerate(plan.timesteps):
        at = plan.skip + i  # the step's position in the scheduler's whole schedule
        sigma = float(sigmas[at]) if sigmas is not None and at < len(sigmas) else None
        out = guide(plan, x, t, StepInfo(i, total, sigma))
        # the estimate is taken before the step (the step may keep state that x0 must not see)
        x0 = plan.x0(out, t, x, at) if callback is not None and plan.x0 is not None else None
        x = step(out, t, x)
        if plan.after_step is not None:
            x = plan.after_step(x, i)
            x0 = plan.after_step(x0, i) if x0 is not None else None
        if callback is not None:
            callback(i, total, x, plan.to_video(x0) if x0 is not None else None)
    return x
