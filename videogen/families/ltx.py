"""LTX-Video 0.9.x, text- and image-to-video: T5 text, packed token latents, flow matching with a resolution shift."""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from videogen import vae as vae_ops
from videogen.errors import UserError
from videogen.families.base import Defaults, Family, Geometry, read_config
from videogen.images import load_fitted, to_tensor
from videogen.sampling import Conditioning, Plan, StepInfo
from videogen.schedulers import describe, make_scheduler
from videogen.spec import RenderSpec
from videogen.text import warn_unknown

# The negative prompt of LTX-Video's own inference script and of diffusers' LTX examples.
LTX_NEGATIVE_PROMPT = "worst quality, inconsistent motion, blurry, jittery, distorted"
MAX_TEXT_TOKENS = 128  # T5 length of LTXPipeline
SIZE_MULTIPLE = 32  # LTXPipeline refuses other sizes, whatever the VAE's stride
# The timestep-conditioned decoder (0.9.1 and later) is run at these; LTXPipeline's defaults.
DECODE_TIMESTEP = 0.0
DECODE_NOISE_SCALE = 0.0


def vae_compression(config: dict[str, Any]) -> tuple[int, int]:
    """(temporal, spatial) compression of an AutoencoderKLLTXVideo, from its config as the class computes it."""
    scaling = sum(bool(s) for s in config.get("spatio_temporal_scaling", (True, True, True, False)))
    spatial = config.get("spatial_compression_ratio") or config.get("patch_size", 4) * 2**scaling
    temporal = config.get("temporal_compression_ratio") or config.get("patch_size_t", 1) * 2**scaling
    return int(temporal), int(spatial)


def resolution_shift(seq_len: int, config: Any) -> float:
    """The flow shift `mu` for a sequence length: linear between (base_seq, base_shift) and (max_seq, max_shift)."""
    base_len, max_len = config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096)
    base, top = config.get("base_shift", 0.5), config.get("max_shift", 1.15)
    slope = (top - base) / (max_len - base_len)
    return seq_len * slope + (base - slope * base_len)


def pack(x: torch.Tensor, p: int, pt: int) -> torch.Tensor:
    """[B,C,F,H,W] -> tokens [B, F/pt * H/p * W/p, C*pt*p*p], the layout the transformer reads."""
    b, c, f, h, w = x.shape
    x = x.reshape(b, c, f // pt, pt, h // p, p, w // p, p)
    return x.permute(0, 2, 4, 6, 1, 3, 5, 7).flatten(4, 7).flatten(1, 3)


def unpack(x: torch.Tensor, frames: int, height: int, width: int, p: int, pt: int) -> torch.Tensor:
    """The inverse of `pack`, given the token grid (frames, height, width)."""
    b = x.shape[0]
    x = x.reshape(b, frames, height, width, -1, pt, p, p)
    return x.permute(0, 4, 1, 5, 2, 6, 3, 7).reshape(b, -1, frames * pt, height * p, width * p)


class LTX(Family):
    name = "ltx"
    # LTXConditionPipeline folders (0.9.5 on the Hub) hold the same components; they are driven as LTXPipeline.
    pipelines = ("LTXPipeline", "LTXImageToVideoPipeline", "LTXConditionPipeline")
    tasks = ("ti2v", "i2v")  # one checkpoint does both: the image is optional unless the folder says I2V
    # LTXPipeline.__call__ defaults, except fps: LTX-Video renders 24 fps (its model card and examples). The
    # frame rate also conditions the model (RoPE), so it follows --fps; diffusers' own default there is 25.
    defaults = Defaults(frames=161, height=512, width=704, steps=50, guidance=3.0, fps=24)

    def __init__(self, path: Path, index: dict[str, Any], device: torch.device, dtype: torch.dtype):
        super().__init__(path, index, device, dtype)
        self.tokenizer = self.load("tokenizer")
        self.text_encoder = self.load("text_encoder", dtype)
        self.transformer = self.load("transformer", dtype)
        # The VAE runs in the model's dtype, as in the LTX pipelines (official settings are bfloat16 throughout).
        self.vae = self.load("vae", dtype)
        self.scheduler = self.load("scheduler")
        self.temporal, self.spatial = vae_compression(dict(self.vae.config))
        self.patch, self.patch_t = self.transformer.config.patch_size, self.transformer.config.patch_size_t
        self._negative_cache: dict[tuple[str, int], dict[str, torch.Tensor]] = {}

    @classmethod
    def geometry(cls, path: Path, index: dict[str, Any]) -> Geometry:
        temporal, spatial = vae_compression(read_config(path, "vae"))
        multiple = math.lcm(SIZE_MULTIPLE, spatial * read_config(path, "transformer").get("patch_size", 1))
        return Geometry(temporal, multiple, multiple)

    @classmethod
    def task_of(cls, index: dict[str, Any]) -> str:
        return "i2v" if index.get("_class_name") == "LTXImageToVideoPipeline" else "ti2v"

    @classmethod
    def check_spec(cls, path: Path, index: dict[str, Any], spec: RenderSpec) -> None:
        if spec.guidance_2 is not None:
            raise UserError("--guidance-2 is for two-expert models (Wan 2.2 A14B) only; this LTX model has one")

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"text_encoder": self.text_encoder, "transformer": self.transformer, "vae": self.vae}

    @torch.no_grad()
    def embed(self, texts: list[str], length: int) -> dict[str, torch.Tensor]:
        """T5 states of the padded prompt (run without a mask, as LTXPipeline does) and the mask for cross-attention."""
        tok = self.tokenizer(texts, padding="max_length", max_length=length, truncation=True,
                             add_special_tokens=True, return_tensors="pt")
        device = next(self.text_encoder.parameters()).device
        states = self.text_encoder(tok.input_ids.to(device))[0]
        return {"encoder_hidden_states": states.to(device=self.device, dtype=self.dtype),
                "encoder_attention_mask": tok.attention_mask.bool().to(self.device)}

    def encode(self, spec: RenderSpec) -> tuple[Conditioning, Conditioning | None]:
        length = spec.max_sequence_length or MAX_TEXT_TOKENS
        warn_unknown(self.tokenizer, [spec.prompt])
        cond = Conditioning("cond", self.embed([spec.prompt], length))
        if (spec.guidance or 1.0) <= 1.0:
            return cond, None
        key = (spec.negative_prompt or "", length)
        if key not in self._negative_cache:  # the same negative prompt across a batch is encoded once
            self._negative_cache = {key: self.embed([key[0]], length)}
        return cond, Conditioning("uncond", self._negative_cache[key])

    def latent_grid(self, spec: RenderSpec) -> tuple[int, int, int]:
        assert spec.frames and spec.height and spec.width
        return (spec.frames - 1) // self.temporal + 1, spec.height // self.spatial, spec.width // self.spatial

    def plan(self, spec: RenderSpec, cond: Conditioning, uncond: Conditioning | None) -> Plan:
        assert spec.steps and spec.seed is not None and spec.fps and spec.height and spec.width
        frames, height, width = self.latent_grid(spec)
        scheduler = make_scheduler(self.scheduler, spec.scheduler, spec.flow_shift)
        n = spec.steps
        accepts = inspect.signature(scheduler.set_timesteps).parameters
        if "sigmas" in accepts:  # LTXPipeline: sigmas linspace(1, 1/N, N), shifted by sequence length when asked
            sigmas = np.linspace(1.0, 1.0 / n, n)
            extra = {"mu": resolution_shift(frames * height * width, scheduler.config)} if "mu" in accepts else {}
            scheduler.set_timesteps(sigmas=sigmas, device=self.device, **extra)
        else:
            scheduler.set_timesteps(n, device=self.device)

        # Seed N: one CPU generator, drawn as LTXImageToVideoPipeline draws it (image latent sample, then noise).
        generator = torch.Generator("cpu").manual_seed(spec.seed)
        shape = (1, self.transformer.config.in_channels, frames, height, width)
        image_latents = self.encode_image(spec, generator) if spec.image else None
        noise = torch.randn(shape, generator=generator, dtype=torch.float32).to(self.device)
        first = None  # 1 on the first latent frame's tokens, which the image fixes (i2v only)
        if image_latents is None:
            latents = noise
        else:
            mask = torch.zeros((1, 1, frames, height, width), device=self.device)
            mask[:, :, 0] = 1.0
            latents = image_latents.repeat(1, 1, frames, 1, 1) * mask + noise * (1 - mask)
            first = pack(mask, self.patch, self.patch_t).squeeze(-1)
        latents = pack(latents, self.patch, self.patch_t)

        transformer = self.transformer
        rope_scale = (self.temporal / spec.fps, self.spatial, self.spatial)

        def predict(x: torch.Tensor, t: torch.Tensor, c: Conditioning, step: StepInfo) -> torch.Tensor:
            timestep = t.expand(x.shape[0])
            if first is not None:  # the image's tokens are clean: timestep 0 there
                timestep = timestep.unsqueeze(-1) * (1 - first)
            with transformer.cache_context(c.name, **step.cache_kwargs()):
                out = transformer(hidden_states=x.to(self.dtype), timestep=timestep, num_frames=frames,
                                  height=height, width=width, rope_interpolation_scale=rope_scale,
                                  return_dict=False, **c.tensors)[0]
            return out.float()

        def step_keep_first(out: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            """The scheduler step everywhere but on the image's tokens, which stay as they are."""
            moved = scheduler.step(out, t, x, return_dict=False)[0]
            return torch.where(first.unsqueeze(-1).bool(), x, moved)

        guidance = float(spec.guidance or 1.0)
        return Plan(latents=latents, scheduler=scheduler, timesteps=scheduler.timesteps, predict=predict,
                    cond=cond, uncond=uncond, guidance=lambda _t: guidance, batch_cfg=True,
                    step=step_keep_first if first is not None else None,
                    info={"scheduler": describe(scheduler), "frame_rate": spec.fps})

    @torch.no_grad()
    def encode_image(self, spec: RenderSpec, generator: torch.Generator) -> torch.Tensor:
        """The first frame, fitted to the render size, as normalised latents [1,C,1,h,w] sampled from `generator`."""
        assert spec.image and spec.height and spec.width
        pixels = to_tensor(load_fitted(spec.image, spec.width, spec.height)).to(self.device, self.vae.dtype)
        z = self.vae.encode(pixels.unsqueeze(2)).latent_dist.sample(generator).float()
        mean, std = self.latent_stats(z)
        return (z - mean) / std  # LTXImageToVideoPipeline leaves the scaling factor out here

    def latent_stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel latent mean and std: buffers in LTX's VAE weights, not config entries."""
        shape = (1, -1, 1, 1, 1)
        return (self.vae.latents_mean.view(shape).to(like.device, like.dtype),
                self.vae.latents_std.view(shape).to(like.device, like.dtype))

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, spec: RenderSpec) -> torch.Tensor:
        z = unpack(latents, *self.latent_grid(spec), self.patch, self.patch_t)
        mean, std = self.latent_stats(z)
        z = z * std / self.vae.config.scaling_factor + mean
        timestep = None
        if self.vae.config.timestep_conditioning:
            # With a noise scale of 0 the decoder's input noise (1-s)*z + s*noise leaves z as it is.
            assert DECODE_NOISE_SCALE == 0.0
            timestep = torch.tensor([DECODE_TIMESTEP], device=z.device, dtype=z.dtype)
        # 0.9.1's decoder adds noise drawn from the global RNG (diffusers gives it no generator): seeded from the
        # render's seed, and restored after, so that the video is reproducible from its record.
        with torch.random.fork_rng(devices=[z.device] if z.device.type == "cuda" else []):
            torch.manual_seed(spec.seed or 0)
            video = self.vae.decode(z.to(self.vae.dtype), timestep, return_dict=False)[0]
        return vae_ops.to_frames(video)[0]
