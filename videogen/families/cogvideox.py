"""CogVideoX 1.0 and 1.5, text- and image-to-video: T5 text, [B,F,C,H,W] latents, v-prediction DDIM/DPM."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from videogen import vae as vae_ops
from videogen.errors import UserError
from videogen.families.base import Defaults, Family, Geometry, read_config
from videogen.images import load_fitted, to_tensor
from videogen.sampling import Conditioning, Plan, StepInfo
from videogen.schedulers import describe
from videogen.spec import RenderSpec
from videogen.text import warn_unknown

MAX_TEXT_TOKENS = 226  # T5 length of the CogVideoX pipelines, equal to the transformer's max_text_seq_length
IMAGE_OFFSET = 2.0  # the offset ("ofs") embedding value CogVideoXImageToVideoPipeline gives 1.5-I2V


@dataclass(frozen=True)
class SizeLimited(Geometry):
    """Geometry of a model whose position tables bound the size: 5b-I2V's learned table takes exactly its sample
    size, 1.5's RoPE table (sliced, not interpolated) takes at most that."""

    height: int = 0
    width: int = 0
    exact: bool = False

    def problems(self, frames: int, height: int, width: int) -> list[str]:
        out = super().problems(frames, height, width)
        if self.exact and (height, width) != (self.height, self.width):
            out.append(f"this model's learned position table takes only --height {self.height} --width {self.width}")
        elif height > self.height or width > self.width:
            out.append(f"this model's position table takes at most --height {self.height} --width {self.width}")
        return out


def crop_region(grid: tuple[int, int], base_w: int, base_h: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Where a (h, w) token grid sits, resized to cover and centred, in the base grid that RoPE 1.0 was trained on."""
    h, w = grid
    if h / w > base_h / base_w:
        rh, rw = base_h, int(round(base_h / h * w))
    else:
        rw, rh = base_w, int(round(base_w / w * h))
    top, left = int(round((base_h - rh) / 2.0)), int(round((base_w - rw) / 2.0))
    return (top, left), (top + rh, left + rw)


class CogVideoX(Family):
    name = "cogvideox"
    pipelines = ("CogVideoXPipeline", "CogVideoXImageToVideoPipeline")
    tasks = ("t2v", "i2v")
    takes_dynamic_guidance = True
    # The pipelines' defaults for 2b/5b (480x720 from the transformer's sample size, 49 frames) and the documented
    # 8 fps. 1.5 models (81 frames, 16 fps, 768x1360) get theirs from their presets.
    defaults = Defaults(frames=49, height=480, width=720, steps=50, guidance=6.0, fps=8)

    def __init__(self, path: Path, index: dict[str, Any], device: torch.device, dtype: torch.dtype):
        super().__init__(path, index, device, dtype)
        self.tokenizer = self.load("tokenizer")
        self.text_encoder = self.load("text_encoder", dtype)
        self.transformer = self.load("transformer", dtype)
        # The VAE runs in the model's dtype, as in the CogVideoX pipelines: in float32 its 3-D decoder needs
        # twice the memory, and the official settings are bfloat16 throughout.
        self.vae = self.load("vae", dtype)
        self.scheduler = self.load("scheduler")
        self.temporal, self.spatial = self.vae_compression(dict(self.vae.config))
        self.i2v = self.task_of(index) == "i2v"
        self._negative_cache: dict[tuple[str, int], torch.Tensor] = {}

    @staticmethod
    def vae_compression(config: dict[str, Any]) -> tuple[int, int]:
        return int(config.get("temporal_compression_ratio", 4)), 2 ** (len(config["block_out_channels"]) - 1)

    @classmethod
    def geometry(cls, path: Path, index: dict[str, Any]) -> Geometry:
        temporal, spatial = cls.vae_compression(read_config(path, "vae"))
        tr = read_config(path, "transformer")
        multiple = spatial * tr.get("patch_size", 2)
        # The VAE decodes latent frames in pairs: only an odd latent count, 2*temporal*k + 1 frames, comes back whole.
        learned = bool(tr.get("use_learned_positional_embeddings"))
        if learned or (tr.get("use_rotary_positional_embeddings") and tr.get("patch_size_t")):
            return SizeLimited(2 * temporal, multiple, multiple, height=tr["sample_height"] * spatial,
                               width=tr["sample_width"] * spatial, exact=learned)
        return Geometry(2 * temporal, multiple, multiple)

    @classmethod
    def task_of(cls, index: dict[str, Any]) -> str:
        return "i2v" if index.get("_class_name") == "CogVideoXImageToVideoPipeline" else "t2v"

    @classmethod
    def check_spec(cls, path: Path, index: dict[str, Any], spec: RenderSpec) -> None:
        if spec.scheduler is not None or spec.flow_shift is not None:
            raise UserError("CogVideoX samples with its own v-prediction scheduler (DDIM or DPM, from the model "
                            "folder): --scheduler and --flow-shift do not apply")
        if spec.guidance_2 is not None:
            raise UserError("--guidance-2 is for two-expert models (Wan 2.2 A14B) only; this CogVideoX model has one")

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"text_encoder": self.text_encoder, "transformer": self.transformer, "vae": self.vae}

    @torch.no_grad()
    def embed(self, texts: list[str], length: int) -> torch.Tensor:
        """T5 states of the padded prompt; no mask anywhere, as the CogVideoX pipelines run it."""
        tok = self.tokenizer(texts, padding="max_length", max_length=length, truncation=True,
                             add_special_tokens=True, return_tensors="pt")
        device = next(self.text_encoder.parameters()).device
        return self.text_encoder(tok.input_ids.to(device))[0].to(device=self.device, dtype=self.dtype)

    def encode(self, spec: RenderSpec) -> tuple[Conditioning, Conditioning | None]:
        length = spec.max_sequence_length or MAX_TEXT_TOKENS
        warn_unknown(self.tokenizer, [spec.prompt])
        cond = Conditioning("cond", {"encoder_hidden_states": self.embed([spec.prompt], length)})
        if (spec.guidance or 1.0) <= 1.0:
            return cond, None
        key = (spec.negative_prompt or "", length)
        if key not in self._negative_cache:  # the same negative prompt across a batch is encoded once
            self._negative_cache = {key: self.embed([key[0]], length)}
        return cond, Conditioning("uncond", {"encoder_hidden_states": self._negative_cache[key]})

    def latent_frames(self, spec: RenderSpec) -> tuple[int, int]:
        """(latent frames, frames padded in front): 1.5's temporal patch of 2 needs an even count."""
        assert spec.frames
        frames = (spec.frames - 1) // self.temporal + 1
        pt = self.transformer.config.patch_size_t
        pad = (-frames) % pt if pt else 0
        return frames + pad, pad

    def plan(self, spec: RenderSpec, cond: Conditioning, uncond: Conditioning | None) -> Plan:
        assert spec.steps and spec.seed is not None and spec.height and spec.width
        scheduler = type(self.scheduler).from_config(self.scheduler.config)  # schedulers keep per-run state
        scheduler.set_timesteps(spec.steps, device=self.device)
        frames, pad = self.latent_frames(spec)
        config = self.transformer.config
        channels = config.in_channels // 2 if self.i2v else config.in_channels
        shape = (1, frames, channels, spec.height // self.spatial, spec.width // self.spatial)

        # Seed N: one CPU generator, drawn as the pipelines draw it: image latent sample, noise, then DPM's steps.
        generator = torch.Generator("cpu").manual_seed(spec.seed)
        image_latents = self.encode_image(spec, generator, shape) if self.i2v else None
        noise = torch.randn(shape, generator=generator, dtype=torch.float32).to(self.device)
        latents = noise * scheduler.init_noise_sigma

        rotary = self.rotary(spec, frames) if config.use_rotary_positional_embeddings else None
        ofs = None if config.ofs_embed_dim is None else latents.new_full((1,), IMAGE_OFFSET)
        transformer = self.transformer

        def predict(x: torch.Tensor, t: torch.Tensor, c: Conditioning, step: StepInfo) -> torch.Tensor:
            x = scheduler.scale_model_input(x, t)
            if image_latents is not None:  # the image rides along as extra channels
                x = torch.cat([x, image_latents.expand(x.shape[0], -1, -1, -1, -1)], dim=2)
            with transformer.cache_context(c.name, **step.cache_kwargs()):
                out = transformer(hidden_states=x.to(self.dtype), timestep=t.expand(x.shape[0]), ofs=ofs,
                                  image_rotary_emb=rotary, return_dict=False, **c.tensors)[0]
            return out.float()

        return Plan(latents=latents, scheduler=scheduler, timesteps=scheduler.timesteps, predict=predict,
                    cond=cond, uncond=uncond, guidance=self.guidance(spec), batch_cfg=True,
                    step=self.dpm_step(scheduler, generator),
                    info={"scheduler": describe(scheduler), "dynamic_guidance": bool(spec.dynamic_guidance),
                          "padded_latent_frames": pad, "image_offset": IMAGE_OFFSET if ofs is not None else None})

    @staticmethod
    def guidance(spec: RenderSpec) -> Callable[[torch.Tensor], float]:
        """Constant guidance, or with `dynamic_guidance` (diffusers' use_dynamic_cfg) CogVideoX's cosine ramp."""
        scale, n = float(spec.guidance or 1.0), spec.steps or 1
        if not spec.dynamic_guidance:
            return lambda _t: scale
        # As the pipelines compute it, from the raw timestep (0..999) against the step count.
        return lambda t: 1 + scale * (1 - math.cos(math.pi * ((n - t.item()) / n) ** 5.0)) / 2

    @staticmethod
    def dpm_step(scheduler: Any, generator: torch.Generator) -> Callable[..., torch.Tensor] | None:
        """For CogVideoXDPMScheduler: a two-step solver that needs the previous x0 estimate and timestep, and that
        draws fresh noise from the render's generator at every step. None (the plain step) for DDIM."""
        if "old_pred_original_sample" not in inspect.signature(scheduler.step).parameters:
            return None
        state: dict[str, Any] = {"x0": None, "t": None}

        def step(out: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            x, state["x0"] = scheduler.step(out, state["x0"], t, state["t"], x, eta=0.0, generator=generator,
                                            return_dict=False)
            state["t"] = t
            return x

        return step

    def rotary(self, spec: RenderSpec, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """3-D RoPE tables: 1.0 fits the token grid into its base grid; 1.5 slices a fixed-size table."""
        from diffusers.models.embeddings import get_3d_rotary_pos_embed

        assert spec.height and spec.width
        c = self.transformer.config
        p, pt = c.patch_size, c.patch_size_t
        grid = (spec.height // (self.spatial * p), spec.width // (self.spatial * p))
        base_h, base_w = c.sample_height // p, c.sample_width // p
        if pt is None:
            return get_3d_rotary_pos_embed(embed_dim=c.attention_head_dim, crops_coords=crop_region(grid, base_w, base_h),
                                           grid_size=grid, temporal_size=frames, device=self.device)
        return get_3d_rotary_pos_embed(embed_dim=c.attention_head_dim, crops_coords=None, grid_size=grid,
                                       temporal_size=(frames + pt - 1) // pt, grid_type="slice",
                                       max_size=(base_h, base_w), device=self.device)

    @torch.no_grad()
    def encode_image(self, spec: RenderSpec, generator: torch.Generator, shape: tuple[int, ...]) -> torch.Tensor:
        """The first frame as scaled latents [1,F,C,h,w]: the image's sample, then zeros for the other frames."""
        assert spec.image and spec.height and spec.width
        pixels = to_tensor(load_fitted(spec.image, spec.width, spec.height)).to(self.device, self.vae.dtype)
        z = self.vae.encode(pixels.unsqueeze(2)).latent_dist.sample(generator).float().permute(0, 2, 1, 3, 4)
        factor = self.vae.config.scaling_factor
        z = 1 / factor * z if self.vae.config.get("invert_scale_latents") else factor * z
        return torch.cat([z, z.new_zeros((1, shape[1] - 1, *shape[2:]))], dim=1)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, spec: RenderSpec) -> torch.Tensor:
        _, pad = self.latent_frames(spec)
        z = latents[:, pad:].permute(0, 2, 1, 3, 4)  # drop the padding frames; [B,C,F,h,w] for the VAE
        z = 1 / self.vae.config.scaling_factor * z
        video = self.vae.decode(z.to(self.vae.dtype), return_dict=False)[0]
        return vae_ops.to_frames(video)[0]
