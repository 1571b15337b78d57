"""Benchmark models: a small random Wan (CPU), and where the built-in model lives."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from tiny import save_tiny_wan, tiny_umt5, word_tokenizer  # noqa: E402

BUILTIN = ROOT / "videogen" / "mini" / "model"


def builtin_model() -> Path | None:
    """The built-in model's folder, once it has been trained and exported."""
    return BUILTIN if (BUILTIN / "model_index.json").is_file() else None


def save_small_wan(folder: Path) -> Path:
    """A random Wan 2.1 pipeline large enough that the network, not Python, dominates a step on a CPU
    (4 blocks of width 128, VAE base width 8), yet renders 17 frames of 128x128 in seconds."""
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel

    if (folder / "model_index.json").is_file():
        return folder
    torch.manual_seed(0)
    tokenizer = word_tokenizer(max_length=32)
    pipe = WanPipeline(
        tokenizer=tokenizer, text_encoder=tiny_umt5(len(tokenizer), d_model=64),
        transformer=WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=4, attention_head_dim=32, in_channels=16, out_channels=16,
            text_dim=64, freq_dim=256, ffn_dim=512, num_layers=4, cross_attn_norm=True,
            qk_norm="rms_norm_across_heads", rope_max_seq_len=64).eval(),
        vae=AutoencoderKLWan(base_dim=8, z_dim=16, dim_mult=[1, 1, 2, 2], num_res_blocks=1,
                             temperal_downsample=[False, True, True]).eval(),
        scheduler=UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0),
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def save_tiny(folder: Path) -> Path:
    """The test suite's tiny random Wan (tests/tiny.py), with a 32-token tokenizer."""
    return folder if (folder / "model_index.json").is_file() else save_tiny_wan(folder)
