"""Wan 2.1 text-to-video (and the built-in model, which is a small Wan): UMT5 text, flow matching."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from videogen import vae as vae_ops
from videogen.families.base import Defaults, Family, Geometry, initial_noise, read_config
from videogen.loading import components, load_component
from videogen.sampling import Conditioning, Plan, StepInfo
from videogen.schedulers import describe, make_scheduler
from videogen.spec import RenderSpec
from videogen.text import prompt_clean, warn_unknown

# Wan's official negative prompt (Wan2.1 repository, shared config), used by the Wan presets.
WAN_NEGATIVE_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，"
    "丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，"
    "静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)
MAX_TEXT_TOKENS = 512  # UMT5 length of WanPipeline


class Wan(Family):
    name = "wan"
    pipelines = ("WanPipeline",)
    tasks = ("t2v",)
    # WanPipeline.__call__ defaults; Wan renders at 16 fps.
    defaults = Defaults(frames=81, height=480, width=832, steps=50, guidance=5.0, fps=16)

    def __init__(self, path: Path, index: dict[str, Any], device: torch.device, dtype: torch.dtype):
        super().__init__(path, index, device, dtype)
        comps = components(index)
        self.tokenizer = load_component(path, "tokenizer", *comps["tokenizer"])
        self.text_encoder = load_component(path, "text_encoder", *comps["text_encoder"], dtype=dtype).eval()
        self.transformer = load_component(path, "transformer", *comps["transformer"], dtype=dtype).eval()
        # The VAE stays in float32: it is small, and Wan's decoder loses detail in half precision.
        self.vae = load_component(path, "vae", *comps["vae"], dtype=torch.float32).eval()
        self.scheduler = load_component(path, "scheduler", *comps["scheduler"])
        self.vae_geo = vae_ops.vae_geometry(dict(self.vae.config))
        self._negative_cache: dict[tuple[str, int], torch.Tensor] = {}

    @classmethod
    def geometry(cls, path: Path, index: dict[str, Any]) -> Geometry:
        geo = vae_ops.vae_geometry(read_config(path, "vae"))
        patch = read_config(path, "transformer").get("patch_size", [1, 2, 2])
        return Geometry(geo.temporal, geo.spatial * patch[1], geo.spatial * patch[2])

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"text_encoder": self.text_encoder, "transformer": self.transformer, "vae": self.vae}

    def max_tokens(self, spec: RenderSpec) -> int:
        return spec.max_sequence_length or min(int(self.tokenizer.model_max_length), MAX_TEXT_TOKENS)

    @torch.no_grad()
    def embed(self, texts: list[str], length: int) -> torch.Tensor:
        """UMT5 states, zeroed past each prompt's real length (as WanPipeline cuts and re-pads them)."""
        texts = [prompt_clean(t) for t in texts]
        tok = self.tokenizer(texts, padding="max_length", max_length=length, truncation=True,
                             add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
        device = next(self.text_encoder.parameters()).device
        states = self.text_encoder(tok.input_ids.to(device), tok.attention_mask.to(device)).last_hidden_state
        keep = tok.attention_mask.gt(0).to(states.device).unsqueeze(-1)
        return (states * keep).to(device=self.device, dtype=self.dtype)

    def encode(self, spec: RenderSpec) -> tuple[Conditioning, Conditioning | None]:
        length = self.max_tokens(spec)
        warn_unknown(self.tokenizer, [prompt_clean(spec.prompt)])
        cond = Conditioning("cond", {"encoder_hidden_states": self.embed([spec.prompt], length)})
        if (spec.guidance or 1.0) <= 1.0:
            return cond, None
        negative = spec.negative_prompt or ""
        key = (negative, length)
        if key not in self._negative_cache:  # the same negative prompt across a batch is encoded once
            self._negative_cache = {key: self.embed([negative], length)}
        return cond, Conditioning("uncond", {"encoder_hidden_states": self._negative_cache[key]})

    def plan(self, spec: RenderSpec, cond: Conditioning, uncond: Conditioning | None) -> Plan:
        assert spec.frames and spec.height and spec.width and spec.steps and spec.seed is not None
        scheduler = make_scheduler(self.scheduler, spec.scheduler, spec.flow_shift)
        scheduler.set_timesteps(spec.steps, device=self.device)
        s, t = self.vae_geo.spatial, self.vae_geo.temporal
        shape = (1, self.transformer.config.in_channels, (spec.frames - 1) // t + 1, spec.height // s, spec.width // s)
        transformer = self.transformer

        def predict(x: torch.Tensor, t: torch.Tensor, c: Conditioning, step: StepInfo) -> torch.Tensor:
            with transformer.cache_context(c.name, **step.cache_kwargs()):
                return transformer(hidden_states=x.to(self.dtype), timestep=t.expand(x.shape[0]),
                                   encoder_hidden_states=c.tensors["encoder_hidden_states"], return_dict=False)[0]

        guidance = float(spec.guidance or 1.0)
        return Plan(latents=initial_noise(shape, spec.seed, self.device), scheduler=scheduler,
                    timesteps=scheduler.timesteps, predict=predict, cond=cond, uncond=uncond,
                    guidance=lambda _t: guidance, batch_cfg=spec.batch_cfg,
                    info={"scheduler": describe(scheduler)})

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, spec: RenderSpec) -> torch.Tensor:
        return vae_ops.to_frames(vae_ops.decode(self.vae, latents, self.vae_geo.per_frame))[0]
