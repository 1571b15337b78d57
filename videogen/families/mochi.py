"""Mochi 1 text-to-video: T5 text, AsymmDiT, a linear-then-quadratic sigma schedule, guidance in float32."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from videogen.families.base import Defaults, Family, Geometry, read_config
from videogen.lazy import no_grad
from videogen.sampling import Conditioning, Plan, StepInfo
from videogen.spec import RenderSpec
from videogen.vae import LatentFormat, vae_geometry

if TYPE_CHECKING:
    import torch
else:
    from videogen.lazy import torch

THRESHOLD_NOISE = 0.025  # where the schedule turns from linear to quadratic (genmo's infer.py)


def linear_quadratic_sigmas(steps: int, threshold: float = THRESHOLD_NOISE) -> list[float]:
    """Mochi's schedule (genmo, after Movie Gen): noise falls linearly to `threshold` over the first half of the
    steps, then quadratically to 0; returned as sigmas from 1 down (the last step's end, 0, not included)."""
    linear = steps // 2
    quadratic = steps - linear
    gap = linear - threshold * steps  # what the quadratic part must cover, in units of steps
    a = gap / (linear * quadratic**2)
    b = threshold / linear - 2 * gap / quadratic**2
    c = a * linear**2
    noise = [i * threshold / linear for i in range(linear)] + [a * i**2 + b * i + c for i in range(linear, steps)]
    return [1.0 - x for x in noise]


class Mochi(Family):
    name = "mochi"
    title = "Mochi"
    pipelines = ("MochiPipeline",)
    tasks = ("t2v",)
    max_text_tokens = 256  # MochiPipeline's max_sequence_length
    # 12 channels at 6x8 strides; mean/std in the VAE config, and MochiPipeline also divides by scaling_factor.
    latent = LatentFormat(channels=12, layout="BCFHW", temporal=6, spatial=8, stats="config", rgb=("mochi",))
    # MochiPipeline.__call__ defaults; Mochi renders at 30 fps (genmo's save_video).
    defaults = Defaults(frames=19, height=480, width=848, steps=64, guidance=4.5, fps=30)
    schedulers = ("euler",)  # its flow-matching Euler scheduler only
    min_steps = 2  # the schedule's linear half would be empty (MochiPipeline fails the same way)
    vae_float32 = True

    def __init__(self, path: Path, index: dict[str, Any], device: torch.device, dtype: torch.dtype):
        super().__init__(path, index, device, dtype)
        # Genmo's own code encodes an empty negative prompt as all-zero ids and mask.
        self.zero_empty = bool(index.get("force_zeros_for_empty_prompt", False))

    @classmethod
    def geometry(cls, path: Path, index: dict[str, Any]) -> Geometry:
        geo = vae_geometry(read_config(path, "vae"))
        multiple = geo.spatial * int(read_config(path, "transformer").get("patch_size", 2))
        return Geometry(geo.temporal, multiple, multiple)

    @no_grad
    def embed(self, text: str, length: int) -> dict[str, torch.Tensor]:
        tok = self.tokens(text, length)
        ids, mask = tok.input_ids, tok.attention_mask.bool()
        if self.zero_empty and text == "":
            ids, mask = torch.zeros_like(ids), torch.zeros_like(mask)
        device = self.device_of(self.text_encoder)
        states = self.text_encoder(ids.to(device), attention_mask=mask.to(device))[0]
        return {"encoder_hidden_states": states.to(device=self.device, dtype=self.dtype),
                "encoder_attention_mask": mask.to(self.device)}

    def sigmas(self, spec: RenderSpec, scheduler: Any) -> Any:
        assert spec.steps
        return linear_quadratic_sigmas(spec.steps)

    def plan(self, spec: RenderSpec, cond: Conditioning, uncond: Conditioning | None) -> Plan:
        scheduler = self.new_scheduler(spec)

        def predict(x: torch.Tensor, t: torch.Tensor, c: Conditioning, _step: StepInfo) -> torch.Tensor:
            out = self.transformer(hidden_states=x, timestep=t.expand(x.shape[0]).to(x.dtype), return_dict=False,
                                   **c.tensors)[0]
            return out.float()  # guidance and the scheduler step run in float32, as in genmo's code

        def step(out: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            return scheduler.step(out, t, x.float(), return_dict=False)[0].to(x.dtype)

        latents = self.noise(self.latent_shape(spec), self.generator(spec)).to(self.dtype)
        # MochiPipeline runs [uncond, cond] as one batch: so does videogen, for the same frames.
        return self.make_plan(spec, scheduler, latents, predict, cond, uncond, batch_cfg=True, step=step,
                              info={"sigma_schedule": "linear-quadratic"})
