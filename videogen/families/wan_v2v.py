"""Wan video-to-video (`WanVideoToVideoPipeline`): a source clip re-noised part-way, then denoised as Wan.

Any Wan text-to-video model does it when given `--video` (the published V2V checkpoints are the T2V ones);
a folder saved as a `WanVideoToVideoPipeline` needs the clip. `--strength` (0.8 by default) acts only through
the number of steps: the last int(steps * strength) of the schedule are run, from the source's latents
re-noised to the first of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from videogen import clips, images
from videogen.errors import UserError
from videogen.families.wan import Wan
from videogen.spec import RenderSpec

if TYPE_CHECKING:
    import torch
else:
    from videogen.lazy import torch

DEFAULT_STRENGTH = 0.8  # WanVideoToVideoPipeline.__call__


def strength_of(spec: RenderSpec) -> float:
    return DEFAULT_STRENGTH if spec.strength is None else spec.strength


def steps_run(steps: int, strength: float) -> int:
    return min(int(steps * strength), steps)


def check(index: dict[str, Any], spec: RenderSpec) -> None:
    if spec.video is None:
        if spec.strength is not None:
            raise UserError("--strength is for video-to-video: give the source clip with --video")
        return
    if index.get("expand_timesteps"):
        raise UserError("--video: this Wan 2.2 TI2V model takes per-token timesteps, which video-to-video does not "
                        "give; use a Wan 2.1 or Wan 2.2 A14B text-to-video model")
    assert spec.steps
    if steps_run(spec.steps, strength_of(spec)) == 0:
        raise UserError(f"--strength {strength_of(spec):g} with --steps {spec.steps} runs no step "
                        f"(int(steps * strength) = 0): raise --strength to {1 / spec.steps:g} or more")


def to_video(frames: Any) -> torch.Tensor:
    """uint8 frames [F,H,W,3] -> [1,3,F,H,W] in [-1,1], per frame as images.to_tensor (diffusers' processor)."""
    from PIL import Image

    return torch.cat([images.to_tensor(Image.fromarray(f)) for f in frames]).permute(1, 0, 2, 3).unsqueeze(0)


def start(model: Wan, scheduler: Any, noise: torch.Tensor, spec: RenderSpec
          ) -> tuple[torch.Tensor, torch.Tensor, int, dict[str, Any]]:
    """The tail of the schedule, and the source's latents (posterior mode) noised to its first timestep."""
    assert spec.steps
    strength = strength_of(spec)
    skip = spec.steps - steps_run(spec.steps, strength)
    skip *= getattr(scheduler, "order", 1)
    timesteps = scheduler.timesteps[skip:]
    source = model.encode_video(to_video(clips.load_clip(spec, "video")))
    first = timesteps[:1]
    if hasattr(scheduler, "add_noise"):
        latents = scheduler.add_noise(source, noise, first)
    else:  # flow-matching Euler
        latents = scheduler.scale_noise(source, first, noise)
    return timesteps, latents, skip, {"strength": strength, "steps_run": len(timesteps)}


class WanV2V(Wan):
    pipelines = ("WanVideoToVideoPipeline",)
    tasks = ("v2v",)
    required_inputs = frozenset({"video"})

    @classmethod
    def task_of(cls, index: dict[str, Any]) -> str:
        return "v2v"
