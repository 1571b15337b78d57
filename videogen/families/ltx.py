"""LTX-Video 0.9.x, text- and image-to-video: T5 text, packed token latents, flow matching with a resolution shift."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from videogen.families.base import Defaults, Family, Geometry, read_config
from videogen.images import load_fitted, to_tensor
from videogen.lazy import no_grad
from videogen.sampling import Conditioning, Plan, StepInfo
from videogen.spec import RenderSpec
from videogen.vae import LatentFormat, vae_geometry

if TYPE_CHECKING:
    import torch
else:
    from videogen.lazy import torch

# The negative prompt of LTX-Video's own inference script and of diffusers' LTX examples.
LTX_NEGATIVE_PROMPT = "worst quality, inconsistent motion, blurry, jittery, distorted"
SIZE_MULTIPLE = 32  # LTXPipeline refuses other sizes, whatever the VAE's stride
# The timestep-conditioned decoder (0.9.1 and later) is run at these; LTXPipeline's defaults.
DECODE_TIMESTEP = 0.0
DECODE_NOISE_SCALE = 0.0


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


def with_first_frame(image_latents: torch.Tensor, noise: torch.Tensor, p: int, pt: int) -> tuple[torch.Tensor,
                                                                                               torch.Tensor]:
    """Image-to-video: the noise [B,C,F,H,W] with its first latent frame replaced by the image's latents, and the
    packed mask, 1 on that frame's tokens (which stay clean, at timestep 0)."""
    mask = torch.zeros_like(noise[:, :1])
    mask[:, :, 0] = 1.0
    latents = image_latents.repeat(1, 1, noise.shape[2], 1, 1) * mask + noise * (1 - mask)
    return latents, pack(mask, p, pt).squeeze(-1)


def normalised(vae: Any, z: torch.Tensor) -> torch.Tensor:
    """Latents in model space by the VAE's per-channel buffers (the LTX pipelines leave the scaling factor out)."""
    shape = (1, -1, 1, 1, 1)
    return (z - vae.latents_mean.view(shape).to(z)) / vae.latents_std.view(shape).to(z)


class LTX(Family):
    name = "ltx"
    title = "LTX-Video"
    # a one-step schedule is [1.0]: the scheduler's stretch to shift_terminal divides 0 by 0 (LTXPipeline gets NaN too)
    min_steps = 2
    # LTXConditionPipeline folders (0.9.5 on the Hub) hold the same components; they are driven as LTXPipeline.
    pipelines = ("LTXPipeline", "LTXImageToVideoPipeline", "LTXConditionPipeline")
    tasks = ("ti2v", "i2v")  # one checkpoint does both: the image is optional unless the folder says I2V
    # LTXPipeline.__call__ defaults, except fps: LTX-Video renders 24 fps (its model card and examples). The
    # frame rate also conditions the model (RoPE), so it follows --fps; diffusers' own default there is 25.
    defaults = Defaults(frames=161, height=512, width=704, steps=50, guidance=3.0, fps=24)
    # 128 channels at 8x32 strides, packed into tokens; per-channel mean/std are buffers in the VAE's weights.
    latent = LatentFormat(channels=128, layout="tokens", temporal=8, spatial=32, stats="weights",
                          rgb=("ltx-video",))
    max_text_tokens = 128  # T5 length of LTXPipeline
    # The VAE runs in the model's dtype, as in the LTX pipelines (official settings are bfloat16 throughout).

    def __init__(self, path: Path, index: dict[str, Any], device: torch.device, dtype: torch.dtype):
        super().__init__(path, index, device, dtype)
        self.patch, self.patch_t = self.transformer.config.patch_size, self.transformer.config.patch_size_t

    @classmethod
    def geometry(cls, path: Path, index: dict[str, Any]) -> Geometry:
        geo = vae_geometry(read_config(path, "vae"))
        multiple = math.lcm(SIZE_MULTIPLE, geo.spatial * read_config(path, "transformer").get("patch_size", 1))
        return Geometry(geo.temporal, multiple, multiple)

    @classmethod
    def task_of(cls, index: dict[str, Any]) -> str:
        return "i2v" if index.get("_class_name") == "LTXImageToVideoPipeline" else "ti2v"

    @no_grad
    def embed(self, text: str, length: int) -> dict[str, torch.Tensor]:
        """T5 states of the padded prompt (run without a mask, as LTXPipeline does) and the mask for cross-attention."""
        tok = self.tokens(text, length)
        states = self.text_encoder(tok.input_ids.to(self.device_of(self.text_encoder)))[0]
        return {"encoder_hidden_states": states.to(device=self.device, dtype=self.dtype),
                "encoder_attention_mask": tok.attention_mask.bool().to(self.device)}

    def sigmas(self, spec: RenderSpec, scheduler: Any) -> Any:
        import numpy as np

        assert spec.steps
        return np.linspace(1.0, 1.0 / spec.steps, spec.steps)  # LTXPipeline's, shifted by sequence length

    def plan(self, spec: RenderSpec, cond: Conditioning, uncond: Conditioning | None) -> Plan:
        assert spec.fps
        shape = self.latent_shape(spec)
        frames, height, width = shape[2:]
        scheduler = self.new_scheduler(spec, mu=resolution_shift(frames * height * width, self.scheduler.config))
        # Seed N: drawn as LTXImageToVideoPipeline draws it (image latent sample, then noise).
        generator = self.generator(spec)
        image_latents = self.encode_image(spec, generator) if spec.image else None
        noise = self.noise(shape, generator)
        first = None  # 1 on the first latent frame's tokens, which the image fixes (i2v only)
        if image_latents is None:
            latents = noise
        else:
            latents, first = with_first_frame(image_latents, noise, self.patch, self.patch_t)
        latents = pack(latents, self.patch, self.patch_t)
        rope_scale = (self.format.temporal / spec.fps, self.format.spatial, self.format.spatial)

        def predict(x: torch.Tensor, t: torch.Tensor, c: Conditioning, _step: StepInfo) -> torch.Tensor:
            timestep = t.expand(x.shape[0])
            if first is not None:  # the image's tokens are clean: timestep 0 there
                timestep = timestep.unsqueeze(-1) * (1 - first)
            return self.transformer(hidden_states=x.to(self.dtype), timestep=timestep, num_frames=frames,
                                    height=height, width=width, rope_interpolation_scale=rope_scale,
                                    return_dict=False, **c.tensors)[0].float()

        def step_keep_first(out: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            """The scheduler step everywhere but on the image's tokens, which stay as they are."""
            moved = scheduler.step(out, t, x, return_dict=False)[0]
            return torch.where(first.unsqueeze(-1).bool(), x, moved)

        return self.make_plan(spec, scheduler, latents, predict, cond, uncond, batch_cfg=True,
                              step=step_keep_first if first is not None else None, info={"frame_rate": spec.fps})

    @no_grad
    def encode_image(self, spec: RenderSpec, generator: torch.Generator) -> torch.Tensor:
        """The first frame, fitted to the render size, as normalised latents [1,C,1,h,w] sampled from `generator`."""
        assert spec.image and spec.height and spec.width
        pixels = to_tensor(load_fitted(spec.image, spec.width, spec.height)).to(self.device, self.vae.dtype)
        return normalised(self.vae, self.vae.encode(pixels.unsqueeze(2)).latent_dist.sample(generator).float())

    def video_latents(self, latents: torch.Tensor, spec: RenderSpec) -> torch.Tensor:
        return unpack(latents, *self.latent_shape(spec)[2:], self.patch, self.patch_t)

    def vae_decode(self, z: torch.Tensor, spec: RenderSpec) -> torch.Tensor:
        timestep = None
        if self.vae.config.timestep_conditioning:
            # With a noise scale of 0 the decoder's input noise (1-s)*z + s*noise leaves z as it is.
            assert DECODE_NOISE_SCALE == 0.0
            timestep = torch.tensor([DECODE_TIMESTEP], device=z.device, dtype=z.dtype)
        # 0.9.1's decoder adds noise drawn from the global RNG (diffusers gives it no generator): seeded from the
        # render's seed, and restored after, so that the video is reproducible from its record.
        with torch.random.fork_rng(devices=[z.device] if z.device.type == "cuda" else []):
            torch.manual_seed(spec.seed or 0)
            return self.vae.decode(z.to(self.vae.dtype), timestep, return_dict=False)[0]
