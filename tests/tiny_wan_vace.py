"""Tiny random Wan VACE and Wan video-to-video models in diffusers format (saved with save_pretrained)."""

from __future__ import annotations

from pathlib import Path

import torch
from tiny import save_components, tiny_wan_components


def tiny_vace_transformer(seed: int):
    """Two transformer blocks, a VACE block on each; control channels: inactive + reactive latents + 8x8 mask."""
    from diffusers import WanVACETransformer3DModel

    torch.manual_seed(seed)
    return WanVACETransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
        text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32, vace_layers=[0, 1], vace_in_channels=16 * 2 + 8 * 8,
    ).eval()


def save_tiny_wan_vace(folder: Path, experts: int = 1, scheduler: str = "unipc") -> Path:
    """Wan 2.1 VACE (one transformer) or Wan 2.2 VACE (two experts split at boundary_ratio 0.875)."""
    from diffusers import WanVACEPipeline

    parts = tiny_wan_components(scheduler=scheduler)
    parts["transformer"] = tiny_vace_transformer(1)
    if experts == 2:
        parts["transformer_2"] = tiny_vace_transformer(2)
        WanVACEPipeline(**parts, boundary_ratio=0.875).save_pretrained(folder, safe_serialization=True)
    else:
        WanVACEPipeline(**parts).save_pretrained(folder, safe_serialization=True)
    return folder


def save_tiny_wan_v2v(folder: Path, scheduler: str = "unipc") -> Path:
    """A Wan text-to-video model saved as a WanVideoToVideoPipeline (the same components, another index)."""
    parts = tiny_wan_components(scheduler=scheduler)
    return save_components(folder, "WanVideoToVideoPipeline", parts)
