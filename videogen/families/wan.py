"""Wan 2.1 / 2.2 (and the built-in model, which is a small Wan): UMT5 text, flow matching.

One adapter for every `WanPipeline` checkpoint: Wan 2.1 text-to-video, Wan 2.2 A14B (two experts split at
`boundary_ratio`) and Wan 2.2 TI2V-5B (`expand_timesteps`: per-token timesteps, optional clean first frame).
The image-to-video pipeline builds on it in wan_i2v.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from videogen import images
from videogen.errors import UserError
from videogen.families.base import Defaults, Family, Geometry, read_config
from videogen.lazy import no_grad
from videogen.loading import components
from videogen.sampling import Conditioning, Plan, StepInfo
from videogen.spec import RenderSpec
from videogen.text import prompt_clean
from videogen.vae import LatentFormat, vae_geometry

if TYPE_CHECKING:
    import torch
else:
    from videogen.lazy import torch

# Wan's official negative prompt (Wan2.1 repository, shared config), used by the Wan presets.
WAN_NEGATIVE_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，"
    "丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，"
    "静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)
# Wan 2.2 TI2V-5B's own settings (Wan2.2 repository, configs/wan_ti2v_5B.py): 1280x704, 121 frames at 24 fps.
TI2V_DEFAULTS = Defaults(frames=121, height=704, width=1280, steps=50, guidance=5.0, fps=24)


def two_experts(index: dict[str, Any]) -> bool:
    return index.get("boundary_ratio") is not None and "transformer_2" in components(index)


class Wan(Family):
    name = "wan"
    title = "Wan"
    pipelines = ("WanPipeline",)
    tasks = ("t2v", "ti2v", "v2v")
    inputs = frozenset({"video", "strength"})  # video-to-video (WanVideoToVideoPipeline) on any Wan T2V model
    takes_sigmas = True  # --sigmas reach the scheduler (Family.new_scheduler)
    # WanPipeline.__call__ defaults; Wan renders at 16 fps.
    defaults = Defaults(frames=81, height=480, width=832, steps=50, guidance=5.0, fps=16)
    # Wan 2.1's VAE: 16 channels, 4x8 strides, mean/std in its config (Wan 2.2 TI2V: 48 channels, 4x16; the
    # built-in model: 4 channels, 1x4); RGB factors for each.
    # WanPipeline applies the statistics alone, whatever scaling_factor an image VAE's config carries.
    latent = LatentFormat(channels=16, layout="BCFHW", temporal=4, spatial=8, stats="config", scaled=False,
                          rgb=("wan2.1", "wan2.2", "builtin"))
    max_text_tokens = 512  # UMT5 length of WanPipeline
    block_attributes = ("blocks",)
    vae_float32 = True  # Wan's decoder loses detail in half precision, and it is small
    extra_modules = ("transformer_2",)

    def __init__(self, path: Path, index: dict[str, Any], device: torch.device, dtype: torch.dtype):
        super().__init__(path, index, device, dtype)
        # Wan 2.2 A14B: the low-noise expert, used below boundary_ratio * num_train_timesteps.
        self.transformer_2 = self.load("transformer_2", dtype) if "transformer_2" in self.components else None
        self.boundary_ratio: float | None = index.get("boundary_ratio") if self.transformer_2 is not None else None
        # Wan 2.2 TI2V-5B: one timestep per token, so a clean first frame can sit at timestep 0.
        self.expand_timesteps = bool(index.get("expand_timesteps"))

    @classmethod
    def geometry(cls, path: Path, index: dict[str, Any]) -> Geometry:
        geo = vae_geometry(read_config(path, "vae"))
        patch = read_config(path, "transformer").get("patch_size", [1, 2, 2])
        return Geometry(geo.temporal, geo.spatial * patch[1], geo.spatial * patch[2], latent_frames=patch[0])

    @classmethod
    def task_of(cls, index: dict[str, Any]) -> str:
        return "ti2v" if index.get("expand_timesteps") else "t2v"

    @classmethod
    def defaults_for(cls, index: dict[str, Any]) -> Defaults:
        return TI2V_DEFAULTS if index.get("expand_timesteps") else cls.defaults

    @classmethod
    def accepts_for(cls, index: dict[str, Any]) -> frozenset[str]:
        return cls.accepts | {"guidance_2"} if two_experts(index) else cls.accepts

    @classmethod
    def check_spec(cls, path: Path, index: dict[str, Any], spec: RenderSpec) -> None:
        if index.get("expand_timesteps") and spec.last_image is not None:
            raise UserError("this Wan 2.2 TI2V model takes a first frame (--image) but no --last-image")
        if "strength" in cls.inputs:
            from videogen.families import wan_v2v

            wan_v2v.check(index, spec)

    def text_length(self, spec: RenderSpec) -> int:
        return spec.max_sequence_length or min(int(self.tokenizer.model_max_length), self.max_text_tokens)

    def prompt_tokens(self, text: str) -> int:
        return super().prompt_tokens(prompt_clean(text))

    @no_grad
    def embed(self, text: str, length: int) -> dict[str, torch.Tensor]:
        """UMT5 states, zeroed past the prompt's real length (as WanPipeline cuts and re-pads them)."""
        tok = self.tokens(prompt_clean(text), length, return_attention_mask=True)
        device = self.device_of(self.text_encoder)
        states = self.text_encoder(tok.input_ids.to(device), tok.attention_mask.to(device)).last_hidden_state
        keep = tok.attention_mask.gt(0).to(states.device).unsqueeze(-1)
        return {"encoder_hidden_states": (states * keep).to(device=self.device, dtype=self.dtype)}

    def guidances(self, spec: RenderSpec) -> tuple[float, float]:
        """(high-noise, low-noise) guidance; the second is --guidance-2, defaulting to --guidance."""
        g = float(spec.guidance or 1.0)
        return g, g if spec.guidance_2 is None else float(spec.guidance_2)

    def guided(self, spec: RenderSpec) -> bool:
        # diffusers skips the negative pass unless --guidance > 1 even when --guidance-2 > 1; the official Wan 2.2
        # code guides each expert by its own scale, so either one above 1 needs the negative prompt here.
        return max(self.guidances(spec)) > 1.0

    def image_conditioning(self, spec: RenderSpec) -> dict[str, torch.Tensor]:
        """TI2V: the first frame's latents (posterior mode), re-imposed on latent frame 0 at every step."""
        if not self.expand_timesteps or spec.image is None:
            return {}
        assert spec.width and spec.height
        frame = images.to_tensor(images.load_fitted(spec.image, spec.width, spec.height, "--image"))
        return {"first_frame": self.encode_video(frame.unsqueeze(2))}

    def plan(self, spec: RenderSpec, cond: Conditioning, uncond: Conditioning | None) -> Plan:
        scheduler = self.new_scheduler(spec)
        shape = self.latent_shape(spec)
        timesteps, latents, skip, start_info = self.start(scheduler, self.noise(shape, self.generator(spec)), spec)
        high, low = self.guidances(spec)
        boundary = (None if self.boundary_ratio is None
                    else self.boundary_ratio * scheduler.config.num_train_timesteps)

        def expert(t: torch.Tensor) -> tuple[torch.nn.Module, float]:
            return (self.transformer, high) if boundary is None or t >= boundary else (self.transformer_2, low)

        # TI2V: mask 0 on the clean first latent frame, 1 elsewhere; token timesteps are mask * t.
        first = cond.tensors.get("first_frame")
        mask = None
        if self.expand_timesteps:
            mask = torch.ones((1, 1, *shape[2:]), dtype=torch.float32, device=self.device)
            if first is not None:
                mask[:, :, 0] = 0
        patch = self.transformer.config.patch_size

        def predict(x: torch.Tensor, t: torch.Tensor, c: Conditioning, _step: StepInfo) -> torch.Tensor:
            if "condition" in c.tensors:  # I2V: mask and image latents as extra input channels
                x = torch.cat([x, c.tensors["condition"]], dim=1)
            if mask is None:
                timestep = t.expand(x.shape[0])
            else:
                timestep = (mask[0, 0, :, :: patch[1], :: patch[2]] * t).flatten().unsqueeze(0).expand(x.shape[0], -1)
            return expert(t)[0](hidden_states=x.to(self.dtype), timestep=timestep,
                                encoder_hidden_states=c.tensors["encoder_hidden_states"],
                                **self.network_inputs(c), return_dict=False)[0]

        after_step = None
        if mask is not None and first is not None:
            # The scheduler is elementwise, so pinning frame 0 after every step (and from the start) equals
            # diffusers' mixing of the model input and of the final latents.
            def after_step(x: torch.Tensor, _i: int) -> torch.Tensor:
                return (1 - mask) * first + mask * x

            latents = after_step(latents, -1)
        info: dict[str, Any] = {"sigmas": [round(float(v), 6) for v in scheduler.sigmas], **start_info}
        if boundary is not None:
            info.update(boundary_timestep=boundary, guidance_2=low)
        if mask is not None:
            info.update(per_token_timesteps=True, clean_first_frame=first is not None)
        return self.make_plan(spec, scheduler, latents, predict, cond, uncond, network=lambda t: expert(t)[0],
                              guidance=lambda t: expert(t)[1], batch_cfg=spec.batch_cfg, after_step=after_step,
                              timesteps=timesteps, skip=skip, info=info)

    def start(self, scheduler: Any, noise: torch.Tensor, spec: RenderSpec
              ) -> tuple[torch.Tensor, torch.Tensor, int, dict[str, Any]]:
        """(timesteps, first latents, schedule positions skipped, record facts): pure noise from the first step,
        or for video-to-video the source clip re-noised to a later one."""
        if spec.video is None:
            return scheduler.timesteps, noise, 0, {}
        from videogen.families import wan_v2v

        return wan_v2v.start(self, scheduler, noise, spec)

    def network_inputs(self, c: Conditioning) -> dict[str, Any]:
        """The transformer's inputs besides latents, timestep and text (I2V: the CLIP image states)."""
        return {"encoder_hidden_states_image": c.tensors.get("encoder_hidden_states_image")}
