"""CogVideoX 1.0 and 1.5, text- and image-to-video: T5 text, [B,F,C,H,W] latents, v-prediction DDIM/DPM."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from videogen.families.base import Defaults, Family, Geometry, read_config
from videogen.images import load_fitted, to_tensor
from videogen.lazy import no_grad
from videogen.sampling import X0, Conditioning, Plan, StepInfo
from videogen.spec import RenderSpec
from videogen.vae import LatentFormat, vae_geometry

if TYPE_CHECKING:
    import torch
else:
    from videogen.lazy import torch

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
    title = "CogVideoX"
    pipelines = ("CogVideoXPipeline", "CogVideoXImageToVideoPipeline")
    tasks = ("t2v", "i2v")
    # The pipelines' defaults for 2b/5b (480x720 from the transformer's sample size, 49 frames) and the documented
    # 8 fps. 1.5 models (81 frames, 16 fps, 768x1360) get theirs from their presets.
    defaults = Defaults(frames=49, height=480, width=720, steps=50, guidance=6.0, fps=8)
    # 16 channels at 4x8 strides in [B,F,C,H,W]; only the VAE's scaling factor (no published RGB factors).
    latent = LatentFormat(channels=16, layout="BFCHW", temporal=4, spatial=8, stats="none")
    max_text_tokens = 226  # T5 length of the CogVideoX pipelines, equal to the transformer's max_text_seq_length
    accepts = frozenset({"dynamic_guidance"})
    _fixed = ("CogVideoX samples with its own v-prediction scheduler (DDIM or DPM, from the model folder): "
              "--scheduler and --flow-shift do not apply")
    refusals = {"scheduler": _fixed, "flow_shift": _fixed}
    # The VAE runs in the model's dtype, as in the CogVideoX pipelines: in float32 its 3-D decoder needs
    # twice the memory, and the official settings are bfloat16 throughout.

    def __init__(self, path: Path, index: dict[str, Any], device: torch.device, dtype: torch.dtype):
        super().__init__(path, index, device, dtype)
        self.i2v = self.task_of(index) == "i2v"

    @classmethod
    def geometry(cls, path: Path, index: dict[str, Any]) -> Geometry:
        geo = vae_geometry(read_config(path, "vae"))
        tr = read_config(path, "transformer")
        multiple = geo.spatial * tr.get("patch_size", 2)
        # The VAE decodes latent frames in pairs: only an odd latent count, 2*temporal*k + 1 frames, comes back whole.
        learned = bool(tr.get("use_learned_positional_embeddings"))
        if learned or (tr.get("use_rotary_positional_embeddings") and tr.get("patch_size_t")):
            return SizeLimited(2 * geo.temporal, multiple, multiple, height=tr["sample_height"] * geo.spatial,
                               width=tr["sample_width"] * geo.spatial, exact=learned)
        return Geometry(2 * geo.temporal, multiple, multiple)

    @classmethod
    def task_of(cls, index: dict[str, Any]) -> str:
        return "i2v" if index.get("_class_name") == "CogVideoXImageToVideoPipeline" else "t2v"

    @no_grad
    def embed(self, text: str, length: int) -> dict[str, torch.Tensor]:
        """T5 states of the padded prompt; no mask anywhere, as the CogVideoX pipelines run it."""
        ids = self.tokens(text, length).input_ids.to(self.device_of(self.text_encoder))
        return {"encoder_hidden_states": self.text_encoder(ids)[0].to(device=self.device, dtype=self.dtype)}

    def padding(self, spec: RenderSpec) -> int:
        """Latent frames padded in front: 1.5's temporal patch of 2 needs an even count."""
        assert spec.frames
        pt = self.transformer.config.patch_size_t
        return (-((spec.frames - 1) // self.format.temporal + 1)) % pt if pt else 0

    def latent_shape(self, spec: RenderSpec) -> tuple[int, ...]:
        b, f, *rest = super().latent_shape(spec)
        return (b, f + self.padding(spec), *rest)

    def plan(self, spec: RenderSpec, cond: Conditioning, uncond: Conditioning | None) -> Plan:
        assert spec.steps
        scheduler = type(self.scheduler).from_config(self.scheduler.config)  # schedulers keep per-run state
        scheduler.set_timesteps(spec.steps, device=self.device)
        shape = self.latent_shape(spec)
        # Seed N: drawn as the pipelines draw it: image latent sample, noise, then DPM's steps.
        generator = self.generator(spec)
        image_latents = self.encode_image(spec, generator, shape) if self.i2v else None
        latents = self.noise(shape, generator) * scheduler.init_noise_sigma

        config = self.transformer.config
        rotary = self.rotary(spec, shape[1]) if config.use_rotary_positional_embeddings else None
        ofs = None if config.ofs_embed_dim is None else latents.new_full((1,), IMAGE_OFFSET)

        def predict(x: torch.Tensor, t: torch.Tensor, c: Conditioning, _step: StepInfo) -> torch.Tensor:
            x = scheduler.scale_model_input(x, t)
            if image_latents is not None:  # the image rides along as extra channels
                x = torch.cat([x, image_latents.expand(x.shape[0], -1, -1, -1, -1)], dim=2)
            return self.transformer(hidden_states=x.to(self.dtype), timestep=t.expand(x.shape[0]), ofs=ofs,
                                    image_rotary_emb=rotary, return_dict=False, **c.tensors)[0].float()

        return self.make_plan(spec, scheduler, latents, predict, cond, uncond, guidance=self.guidance(spec),
                              batch_cfg=True, step=self.dpm_step(scheduler, generator), x0=self.v_x0(scheduler),
                              info={"dynamic_guidance": bool(spec.dynamic_guidance),
                                    "padded_latent_frames": self.padding(spec),
                                    "image_offset": IMAGE_OFFSET if ofs is not None else None})

    @staticmethod
    def v_x0(scheduler: Any) -> X0:
        """v-prediction: x0 = sqrt(abar_t) * x_t - sqrt(1 - abar_t) * v."""
        def x0(out: torch.Tensor, t: torch.Tensor, x: torch.Tensor, _i: int) -> torch.Tensor:
            abar = scheduler.alphas_cumprod[int(t)].to(x.device, torch.float32)
            return abar.sqrt() * x.float() - (1 - abar).sqrt() * out.float()

        return x0

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
        grid = (spec.height // (self.format.spatial * p), spec.width // (self.format.spatial * p))
        base_h, base_w = c.sample_height // p, c.sample_width // p
        if pt is None:
            return get_3d_rotary_pos_embed(embed_dim=c.attention_head_dim, crops_coords=crop_region(grid, base_w, base_h),
                                           grid_size=grid, temporal_size=frames, device=self.device)
        return get_3d_rotary_pos_embed(embed_dim=c.attention_head_dim, crops_coords=None, grid_size=grid,
                                       temporal_size=(frames + pt - 1) // pt, grid_type="slice",
                                       max_size=(base_h, base_w), device=self.device)

    @no_grad
    def encode_image(self, spec: RenderSpec, generator: torch.Generator, shape: tuple[int, ...]) -> torch.Tensor:
        """The first frame as scaled latents [1,F,C,h,w]: the image's sample, then zeros for the other frames."""
        assert spec.image and spec.height and spec.width
        pixels = to_tensor(load_fitted(spec.image, spec.width, spec.height)).to(self.device, self.vae.dtype)
        z = self.vae.encode(pixels.unsqueeze(2)).latent_dist.sample(generator).float().permute(0, 2, 1, 3, 4)
        factor = self.vae.config.scaling_factor
        z = 1 / factor * z if self.vae.config.get("invert_scale_latents") else factor * z
        return torch.cat([z, z.new_zeros((1, shape[1] - 1, *shape[2:]))], dim=1)

    def video_latents(self, latents: torch.Tensor, spec: RenderSpec) -> torch.Tensor:
        return latents[:, self.padding(spec):].permute(0, 2, 1, 3, 4)  # the padding frames dropped
