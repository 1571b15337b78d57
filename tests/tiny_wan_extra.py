"""Tiny random Wan models beyond 2.1 text-to-video: 2.1 I2V / FLF2V (with a tiny CLIP), 2.2 A14B T2V / I2V
(two experts), 2.2 TI2V-5B (expand_timesteps, with a tiny Wan 2.2-style residual VAE). Saved with save_pretrained."""

from __future__ import annotations

from pathlib import Path

import torch
from tiny import tiny_umt5, word_tokenizer

CLIP_TOKENS = 5  # (16 / 8)^2 patches + the class token


def tiny_transformer(seed: int, in_channels: int = 16, out_channels: int = 16, image_dim: int | None = None,
                     pos_embed_seq_len: int | None = None):
    from diffusers import WanTransformer3DModel

    torch.manual_seed(seed)
    model = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=in_channels,
        out_channels=out_channels, text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=32, image_dim=image_dim,
        added_kv_proj_dim=24 if image_dim else None, pos_embed_seq_len=pos_embed_seq_len,
    ).eval()
    if pos_embed_seq_len is not None:  # it starts at zero: make it matter, so a first/last mix-up shows
        with torch.no_grad():
            model.condition_embedder.image_embedder.pos_embed.normal_(0, 0.5)
    return model


def tiny_clip():
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(5)
    cfg = CLIPVisionConfig(hidden_size=16, intermediate_size=32, projection_dim=16, num_hidden_layers=2,
                           num_attention_heads=2, image_size=16, patch_size=8)
    processor = CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
    return CLIPVisionModel(cfg).eval(), processor


def wan21_vae():
    from diffusers import AutoencoderKLWan

    torch.manual_seed(3)
    return AutoencoderKLWan(base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                            temperal_downsample=[False, True, True]).eval()


def wan22_vae():
    """Wan 2.2's VAE in miniature: residual, 2x2 pixel patches, spatial stride 16."""
    from diffusers import AutoencoderKLWan

    torch.manual_seed(4)
    return AutoencoderKLWan(base_dim=8, decoder_base_dim=8, z_dim=8, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                            temperal_downsample=[False, True, True], is_residual=True, in_channels=12,
                            out_channels=12, patch_size=2, scale_factor_spatial=16,
                            latents_mean=[0.1 * i - 0.3 for i in range(8)],
                            latents_std=[1.0 + 0.2 * i for i in range(8)]).eval()


def text_parts() -> dict:
    from diffusers import UniPCMultistepScheduler

    torch.manual_seed(1)
    tokenizer = word_tokenizer()
    return {"tokenizer": tokenizer, "text_encoder": tiny_umt5(len(tokenizer)),
            "scheduler": UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                                 flow_shift=3.0)}


def save_wan21_i2v(folder: Path, flf2v: bool = False) -> Path:
    """Wan 2.1 I2V (or FLF2V): 16 noise + 4 mask + 16 image-latent channels in, CLIP features to cross-attention."""
    from diffusers import WanImageToVideoPipeline

    encoder, processor = tiny_clip()
    transformer = tiny_transformer(10, in_channels=36, image_dim=16,
                                   pos_embed_seq_len=2 * CLIP_TOKENS if flf2v else None)
    WanImageToVideoPipeline(**text_parts(), vae=wan21_vae(), transformer=transformer, image_encoder=encoder,
                            image_processor=processor).save_pretrained(folder, safe_serialization=True)
    return folder


def save_wan22_a14b(folder: Path, i2v: bool = False) -> Path:
    """Wan 2.2 A14B: a high-noise and a low-noise expert with different weights, split at boundary_ratio."""
    from diffusers import WanImageToVideoPipeline, WanPipeline

    channels = 36 if i2v else 16
    experts = {"transformer": tiny_transformer(20, in_channels=channels),
               "transformer_2": tiny_transformer(21, in_channels=channels)}
    # The official ratios (0.9 for I2V, 0.875 for T2V); with 3 steps at shift 3 (t = 999, 857, 600)
    # the first step runs the high-noise expert and the others the low-noise one.
    if i2v:
        pipe = WanImageToVideoPipeline(**text_parts(), vae=wan21_vae(), **experts, boundary_ratio=0.9)
    else:
        pipe = WanPipeline(**text_parts(), vae=wan21_vae(), **experts, boundary_ratio=0.875)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def save_wan22_ti2v(folder: Path) -> Path:
    """Wan 2.2 TI2V-5B: a WanPipeline with expand_timesteps and the stride-16 VAE."""
    from diffusers import WanPipeline

    WanPipeline(**text_parts(), vae=wan22_vae(), transformer=tiny_transformer(30, in_channels=8, out_channels=8),
                expand_timesteps=True).save_pretrained(folder, safe_serialization=True)
    return folder


def make_image(path: Path, width: int, height: int, seed: int = 0) -> Path:
    """A smooth colour image with structure (gradients and a disc), so CLIP and the VAE see something."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    cx, cy = rng.uniform(0.3, 0.7, 2)
    disc = ((x - cx) ** 2 + (y - cy) ** 2 < 0.05).astype(float)
    rgb = np.stack([x, y, disc], axis=-1) * rng.uniform(0.5, 1.0, 3) + rng.uniform(0, 0.3, 3)
    Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8)).save(path)
    return path
