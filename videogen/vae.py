"""VAE facts read from configs, the latent format a family declares, (de)normalisation and decoding to frames.

A VAE is either a video VAE (5-D, with temporal compression) or an image VAE applied frame by frame;
which one is a property of the VAE class, so every family and the built-in model share this code.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch
else:
    from videogen.lazy import torch


# Image VAEs: decoded frame by frame, no temporal compression.
PER_FRAME_VAES = {"AutoencoderKL", "AutoencoderTiny"}
RGB_FACTORS = Path(__file__).parent / "families" / "latent_rgb.json"

Layout = Literal["BCFHW", "BFCHW", "tokens"]
Stats = Literal["config", "weights", "none"]


@dataclass(frozen=True)
class VaeGeometry:
    temporal: int
    spatial: int
    per_frame: bool


def vae_geometry(config: dict[str, Any]) -> VaeGeometry:
    """Temporal and spatial strides of a VAE, told from the keys of its config as its class computes them."""
    if config.get("_class_name", "") in PER_FRAME_VAES:
        blocks = config.get("block_out_channels") or config.get("encoder_block_out_channels") or [0]
        return VaeGeometry(temporal=1, spatial=2 ** (len(blocks) - 1), per_frame=True)
    if "scale_factor_spatial" in config:
        return VaeGeometry(int(config["scale_factor_temporal"]), int(config["scale_factor_spatial"]), False)
    if config.get("temperal_downsample") is not None:
        down = config["temperal_downsample"]
        return VaeGeometry(2 ** sum(bool(d) for d in down), 2 ** len(down), False)
    if "temporal_expansions" in config:  # asymmetric VAE: strides are the products of its expansions
        return VaeGeometry(math.prod(config["temporal_expansions"]), math.prod(config["spatial_expansions"]), False)
    if "spatio_temporal_scaling" in config:  # patchified VAE: patch size times 2 per scaling stage
        scaling = sum(bool(s) for s in config["spatio_temporal_scaling"])
        spatial = config.get("spatial_compression_ratio") or config.get("patch_size", 4) * 2**scaling
        temporal = config.get("temporal_compression_ratio") or config.get("patch_size_t", 1) * 2**scaling
        return VaeGeometry(int(temporal), int(spatial), False)
    if "temporal_compression_ratio" in config:
        spatial = config.get("spatial_compression_ratio") or 2 ** (len(config["block_out_channels"]) - 1)
        return VaeGeometry(int(config["temporal_compression_ratio"]), int(spatial), False)
    raise ValueError(f"unknown VAE class {config.get('_class_name')!r}")


@functools.cache
def _rgb_table() -> dict[str, Any]:
    return json.loads(RGB_FACTORS.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class LatentFormat:
    """How a family's latents look: what a family declares, and all shared code needs to handle them.

    layout: the loop's tensor layout, [B,C,F,H,W], [B,F,C,H,W] or packed tokens (the family unpacks those).
    stats: where per-channel mean/std come from: the VAE config, buffers in the VAE weights, or none.
    scaled: whether the VAE's `scaling_factor` (and `shift_factor`) also applies.
    rgb: keys in families/latent_rgb.json of [C,3] matrices and biases mapping model-space latents to RGB in
    about [-1, 1] (cheap previews); the one whose C is this model's channel count applies.
    """

    channels: int
    layout: Layout
    temporal: int
    spatial: int
    stats: Stats = "config"
    scaled: bool = True
    rgb: tuple[str, ...] = ()

    def with_model(self, channels: int, geo: VaeGeometry) -> LatentFormat:
        """This format for one model folder: its own channel count and strides (tiny test models differ)."""
        from dataclasses import replace

        return replace(self, channels=channels, temporal=geo.temporal, spatial=geo.spatial)

    def _rgb(self) -> dict[str, Any] | None:
        table = _rgb_table()
        return next((table[k] for k in self.rgb if len(table[k]["factors"]) == self.channels), None)

    @property
    def latent_rgb_factors(self) -> list[list[float]] | None:
        """[C,3] latent-to-RGB matrix, or None when none is known for latents of this many channels."""
        entry = self._rgb()
        return entry["factors"] if entry else None

    @property
    def latent_rgb_bias(self) -> list[float] | None:
        entry = self._rgb()
        return entry["bias"] if entry else None

    def _stats(self, vae: Any, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.stats == "weights":
            mean, std = vae.latents_mean, vae.latents_std
        elif self.stats == "config":
            mean, std = getattr(vae.config, "latents_mean", None), getattr(vae.config, "latents_std", None)
            if mean is None or std is None:
                return None
        else:
            return None
        shape = (1, -1) + (1,) * (like.ndim - 2)
        return (torch.as_tensor(mean).view(shape).to(like.device, like.dtype),
                torch.as_tensor(std).view(shape).to(like.device, like.dtype))

    def _scale(self, vae: Any) -> tuple[float | None, float]:
        if not self.scaled:
            return None, 0.0
        scale = getattr(vae.config, "scaling_factor", None)
        return (None if scale in (None, 1.0) else float(scale)), float(getattr(vae.config, "shift_factor", None) or 0.0)

    def denormalize(self, vae: Any, latents: torch.Tensor) -> torch.Tensor:
        """Model latents [B,C,...] -> VAE latents: mean/std and scale, in the order the diffusers pipelines use."""
        stats, (scale, shift) = self._stats(vae, latents), self._scale(vae)
        if stats is not None:
            mean, std = stats
            # x / (1/std) + mean when no scale applies, to match the pipelines to the last bit
            return latents / (1.0 / std) + mean if scale is None else latents * std / scale + mean
        return (latents if scale is None else latents / scale) + shift

    def normalize(self, vae: Any, latents: torch.Tensor) -> torch.Tensor:
        """VAE latents -> model latents (the inverse of `denormalize`)."""
        stats, (scale, shift) = self._stats(vae, latents), self._scale(vae)
        if stats is not None:
            mean, std = stats
            return (latents - mean) * (1.0 / std) if scale is None else (latents - mean) * scale / std
        return (latents - shift) * (1.0 if scale is None else scale)


def decode(vae: Any, z: torch.Tensor, per_frame: bool) -> torch.Tensor:
    """VAE latents [B,C,F,h,w] -> video [B,C,F,H,W] in [-1, 1] (unclamped)."""
    z = z.to(vae.dtype)
    if not per_frame:
        return vae.decode(z, return_dict=False)[0]
    b, c, f, h, w = z.shape
    flat = z.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
    x = vae.decode(flat, return_dict=False)[0]
    return x.reshape(b, f, *x.shape[1:]).permute(0, 2, 1, 3, 4)


def encode(vae: Any, video: torch.Tensor, per_frame: bool, generator: torch.Generator | None = None,
           mode: bool = True) -> torch.Tensor:
    """Video [B,C,F,H,W] in [-1, 1] -> VAE latents; the posterior mode, or a sample from `generator`."""
    x = video.to(vae.dtype)
    if per_frame:
        b, c, f, h, w = x.shape
        x = x.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
    dist = vae.encode(x).latent_dist
    z = dist.mode() if mode else dist.sample(generator)
    if per_frame:
        z = z.reshape(b, f, *z.shape[1:]).permute(0, 2, 1, 3, 4)
    return z


def fit_latent_rgb(latents: torch.Tensor, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares [C,3] factors and bias with video ~ latents @ factors + bias, per latent pixel.

    latents [B,C,F,h,w] (model space); video [B,3,F',H,W] in [-1, 1], pooled down to the latent grid.
    """
    b, c, f, h, w = latents.shape
    pooled = torch.nn.functional.adaptive_avg_pool3d(video.float(), (f, h, w))
    x = latents.float().permute(0, 2, 3, 4, 1).reshape(-1, c)
    y = pooled.permute(0, 2, 3, 4, 1).reshape(-1, 3)
    design = torch.cat([x, torch.ones(len(x), 1)], dim=1)
    solution = torch.linalg.lstsq(design, y).solution
    return solution[:c], solution[c]


def to_frames(video: torch.Tensor) -> torch.Tensor:
    """[B,C,F,H,W] in [-1, 1] -> [B,F,H,W,C] float32 in [0, 1], on the CPU."""
    return (video / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 4, 1).float().cpu()


def to_uint8(frames: torch.Tensor) -> torch.Tensor:
    return (frames * 255).round().to(torch.uint8)
