"""Tiny random CogVideoX components (configs after diffusers' own CogVideoX tests), saved with save_pretrained.

Variants follow the real checkpoints: "2b" (sin-cos positions, DDIM), "5b" (rotary, DPM), "5b-i2v" (rotary plus a
learned position table, image channels), "1.5" (temporal patch 2, latent frame padding) and "1.5-i2v" (offset
embedding, inverted latent scale).
"""

from __future__ import annotations

from pathlib import Path

import torch
from tiny import word_tokenizer
from tiny_ltx import tiny_t5

VARIANTS = ("2b", "5b", "5b-i2v", "1.5", "1.5-i2v")


def tiny_cogvideox_components(variant: str = "2b", scheduler: str | None = None, height: int = 16, width: int = 32,
                               seed: int = 0) -> dict:
    """`height` x `width`: the pixel size the transformer is made for (its sample size; the VAE compresses 8x)."""
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXDDIMScheduler,
        CogVideoXDPMScheduler,
        CogVideoXTransformer3DModel,
    )

    assert variant in VARIANTS, variant
    i2v = variant.endswith("i2v")
    v15 = variant.startswith("1.5")
    torch.manual_seed(seed)
    tokenizer = word_tokenizer()
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2, attention_head_dim=16, in_channels=8 if i2v else 4, out_channels=4,
        time_embed_dim=2, text_embed_dim=32, num_layers=1, sample_width=width // 8, sample_height=height // 8,
        sample_frames=9, patch_size=2, patch_size_t=2 if v15 else None, temporal_compression_ratio=4,
        max_text_seq_length=226, use_rotary_positional_embeddings=variant != "2b",
        use_learned_positional_embeddings=variant == "5b-i2v", ofs_embed_dim=2 if variant == "1.5-i2v" else None,
    )
    vae = AutoencoderKLCogVideoX(
        in_channels=3, out_channels=3, down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8), latent_channels=4,
        layers_per_block=1, norm_num_groups=2, temporal_compression_ratio=4, scaling_factor=0.7,
        invert_scale_latents=variant == "1.5-i2v",
    )
    # The real schedulers' settings (v-prediction, zero terminal SNR, trailing spacing); 2b ships DDIM, the rest DPM.
    kind = scheduler or ("ddim" if variant == "2b" else "dpm")
    cls = CogVideoXDDIMScheduler if kind == "ddim" else CogVideoXDPMScheduler
    sched = cls(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                prediction_type="v_prediction", rescale_betas_zero_snr=True, set_alpha_to_one=True,
                timestep_spacing="trailing", snr_shift_scale=1.0 if v15 else 3.0)
    return {"transformer": transformer.eval(), "vae": vae.eval(), "scheduler": sched,
            "text_encoder": tiny_t5(len(tokenizer)), "tokenizer": tokenizer}


def save_tiny_cogvideox(folder: Path, variant: str = "2b", **kwargs) -> Path:
    from diffusers import CogVideoXImageToVideoPipeline, CogVideoXPipeline

    cls = CogVideoXImageToVideoPipeline if variant.endswith("i2v") else CogVideoXPipeline
    cls(**tiny_cogvideox_components(variant, **kwargs)).save_pretrained(folder, safe_serialization=True)
    return folder
