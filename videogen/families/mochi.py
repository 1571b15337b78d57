"""Mochi 1 text-to-video: T5 text, AsymmDiT, a linear-then-quadratic sigma schedule, guidance in float32."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from videogen import vae as vae_ops
from videogen.errors import UserError
from videogen.families.base import Defaults, Family, Geometry, initial_noise, read_config
from videogen.sampling import Conditioning, Plan, StepInfo
from videogen.schedulers import describe, make_scheduler
from videogen.spec import RenderSpec
from videogen.text import warn_unknown

MAX_TEXT_TOKENS = 256  # MochiPipeline's max_sequence_length
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
    pipelines = ("MochiPipeline",)
    tasks = ("t2v",)
    # MochiPipeline.__call__ defaults; Mochi renders at 30 fps (genmo's save_video).
    defaults = Defaults(frames=19, height=480, width=848, steps=64, guidance=4.5, fps=30)

    def __init__(self, path: Path, index: dict[str, Any], device: torch.device, dtype: torch.dtype):
        super().__init__(path, index, device, dtype)
        self.tokenizer = self.load("tokenizer")
        self.text_encoder = self.load("text_encoder", dtype)
        self.transformer = self.load("transformer", dtype)
        self.vae = self.load("vae", torch.float32)
        self.scheduler = self.load("scheduler")
        # Genmo's own code encodes an empty negative prompt as all-zero ids and mask.
        self.zero_empty = bool(index.get("force_zeros_for_empty_prompt", False))
        self.temporal, self.spatial = self.compression(dict(self.vae.config))

    @staticmethod
    def compression(vae_config: dict[str, Any]) -> tuple[int, int]:
        """(temporal, spatial) factors of the AsymmVAE: the products of its expansions (6 and 8 for Mochi 1)."""
        return (math.prod(vae_config.get("temporal_expansions", (1, 2, 3))),
                math.prod(vae_config.get("spatial_expansions", (2, 2, 2))))

    @classmethod
    def geometry(cls, path: Path, index: dict[str, Any]) -> Geometry:
        temporal, spatial = cls.compression(read_config(path, "vae"))
        multiple = spatial * int(read_config(path, "transformer").get("patch_size", 2))
        return Geometry(temporal, multiple, multiple)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"text_encoder": self.text_encoder, "transformer": self.transformer, "vae": self.vae}

    @torch.no_grad()
    def embed(self, text: str, length: int) -> dict[str, torch.Tensor]:
        tok = self.tokenizer([text], padding="max_length", max_length=length, truncation=True,
                             add_special_tokens=True, return_tensors="pt")
        ids, mask = tok.input_ids, tok.attention_mask.bool()
        if self.zero_empty and text == "":
            ids, mask = torch.zeros_like(ids), torch.zeros_like(mask)
        device = next(self.text_encoder.parameters()).device
        states = self.text_encoder(ids.to(device), attention_mask=mask.to(device))[0]
        return {"encoder_hidden_states": states.to(device=self.device, dtype=self.dtype),
                "encoder_attention_mask": mask.to(self.device)}

    def encode(self, spec: RenderSpec) -> tuple[Conditioning, Conditioning | None]:
        length = spec.max_sequence_length or MAX_TEXT_TOKENS
        warn_unknown(self.tokenizer, [spec.prompt])
        cond = Conditioning("cond", self.embed(spec.prompt, length))
        if (spec.guidance or 1.0) <= 1.0:
            return cond, None
        return cond, Conditioning("uncond", self.embed(spec.negative_prompt or "", length))

    def plan(self, spec: RenderSpec, cond: Conditioning, uncond: Conditioning | None) -> Plan:
        assert spec.frames and spec.height and spec.width and spec.steps and spec.seed is not None
        if spec.scheduler not in (None, "euler"):
            raise UserError("Mochi samples with its flow-matching Euler scheduler only (--scheduler euler)")
        if spec.steps < 2:  # the schedule's linear half would be empty (MochiPipeline fails the same way)
            raise UserError("Mochi needs --steps 2 or more")
        scheduler = make_scheduler(self.scheduler, spec.scheduler, spec.flow_shift)
        scheduler.set_timesteps(sigmas=linear_quadratic_sigmas(spec.steps), device=self.device)
        s, t = self.spatial, self.temporal
        shape = (1, self.transformer.config.in_channels, (spec.frames - 1) // t + 1, spec.height // s, spec.width // s)
        transformer = self.transformer

        def predict(x: torch.Tensor, t: torch.Tensor, c: Conditioning, step: StepInfo) -> torch.Tensor:
            with transformer.cache_context(c.name, **step.cache_kwargs()):
                out = transformer(hidden_states=x, timestep=t.expand(x.shape[0]).to(x.dtype), return_dict=False,
                                  **c.tensors)[0]
            return out.float()  # guidance and the scheduler step run in float32, as in genmo's code

        def step(out: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            return scheduler.step(out, t, x.float(), return_dict=False)[0].to(x.dtype)

        guidance = float(spec.guidance or 1.0)
        # MochiPipeline runs [uncond, cond] as one batch: so does videogen, for the same frames.
        return Plan(latents=initial_noise(shape, spec.seed, self.device).to(self.dtype), scheduler=scheduler,
                    timesteps=scheduler.timesteps, predict=predict, cond=cond, uncond=uncond,
                    guidance=lambda _t: guidance, batch_cfg=True, step=step,
                    info={"scheduler": describe(scheduler), "sigma_schedule": "linear-quadratic"})

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, spec: RenderSpec) -> torch.Tensor:
        return vae_ops.to_frames(vae_ops.decode(self.vae, latents, per_frame=False))[0]
