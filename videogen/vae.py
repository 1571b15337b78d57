"""VAE facts read from configs, latent (de)normalisation in one place, and decoding to frames.

A VAE is either a video VAE (5-D, with temporal compression) or an image VAE applied frame by frame;
which one is a property of the VAE class, so every family and the built-in model share this code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

# Image VAEs: decoded frame by frame, no temporal compression.
PER_FRAME_VAES = {"AutoencoderKL", "AutoencoderTiny"}


@dataclass(frozen=True)
class VaeGeometry:
    temporal: int
    spatial: int
    per_frame: bool


def vae_geometry(config: dict[str, Any]) -> VaeGeometry:
    cls = config.get("_class_name", "")
    if cls in PER_FRAME_VAES:
        blocks = config.get("block_out_channels") or config.get("encoder_block_out_channels") or [0]
        return VaeGeometry(temporal=1, spatial=2 ** (len(blocks) - 1), per_frame=True)
    if "scale_factor_spatial" in config:  # Wan
        return VaeGeometry(int(config["scale_factor_temporal"]), int(config["scale_factor_spatial"]), False)
    down = config.get("temperal_downsample")
    if down is not None:
        return VaeGeometry(2 ** sum(bool(d) for d in down), 2 ** len(down), False)
    raise ValueError(f"unknown VAE class {cls!r}")


def _stats(vae: Any, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    cfg = vae.config
    mean, std = getattr(cfg, "latents_mean", None), getattr(cfg, "latents_std", None)
    if mean is None or std is None:
        return None
    shape = (1, len(mean)) + (1,) * (latents.ndim - 2)
    return (torch.tensor(mean).view(shape).to(latents.device, latents.dtype),
            torch.tensor(std).view(shape).to(latents.device, latents.dtype))


def denormalize(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    """Model latents -> VAE latents: per-channel mean/std when the config has them, else scale and shift."""
    stats = _stats(vae, latents)
    if stats is not None:
        mean, std = stats
        # x / (1/std) + mean, in this order, to match diffusers' pipelines to the last bit
        return latents / (1.0 / std) + mean
    scale = getattr(vae.config, "scaling_factor", 1.0) or 1.0
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return latents / scale + shift


def normalize(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    """VAE latents -> model latents (the inverse of `denormalize`)."""
    stats = _stats(vae, latents)
    if stats is not None:
        mean, std = stats
        return (latents - mean) * (1.0 / std)
    scale = getattr(vae.config, "scaling_factor", 1.0) or 1.0
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return (latents - shift) * scale


def decode(vae: Any, latents: torch.Tensor, per_frame: bool) -> torch.Tensor:
    """Model latents [B,C,F,h,w] -> video [B,C,F,H,W] in [-1, 1] (unclamped)."""
    z = denormalize(vae, latents.to(vae.dtype))
    if not per_frame:
        return vae.decode(z, return_dict=False)[0]
    b, c, f, h, w = z.shape
    flat = z.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
    x = vae.decode(flat, return_dict=False)[0]
    return x.reshape(b, f, *x.shape[1:]).permute(0, 2, 1, 3, 4)


def encode(vae: Any, video: torch.Tensor, per_frame: bool, generator: torch.Generator | None = None,
           mode: bool = True) -> torch.Tensor:
    """Video [B,C,F,H,W] in [-1, 1] -> model latents; the posterior mode, or a sample from `generator`."""
    x = video.to(vae.dtype)
    if per_frame:
        b, c, f, h, w = x.shape
        x = x.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
    dist = vae.encode(x).latent_dist
    z = dist.mode() if mode else dist.sample(generator)
    if per_frame:
        z = z.reshape(b, f, *z.shape[1:]).permute(0, 2, 1, 3, 4)
    return normalize(vae, z)


def to_frames(video: torch.Tensor) -> torch.Tensor:
    """[B,C,F,H,W] in [-1, 1] -> [B,F,H,W,C] float32 in [0, 1], on the CPU."""
    return (video / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 4, 1).float().cpu()


def to_uint8(frames: torch.Tensor) -> torch.Tensor:
    return (frames * 255).round().to(torch.uint8)
