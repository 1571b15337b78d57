"""A tiny random Mochi 1 in diffusers format (T5 text encoder, AsymmDiT, AsymmVAE), built offline."""

from __future__ import annotations

from pathlib import Path

import torch
from tiny import word_tokenizer


def tiny_mochi_components(seed: int = 0, scaling_factor: float = 1.0) -> dict:
    from diffusers import AutoencoderKLMochi, FlowMatchEulerDiscreteScheduler, MochiTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    tokenizer = word_tokenizer(max_length=256)
    torch.manual_seed(seed)
    text_encoder = T5EncoderModel(T5Config(
        vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, relative_attention_max_distance=16, dropout_rate=0.0))
    transformer = MochiTransformer3DModel(
        patch_size=2, num_attention_heads=2, attention_head_dim=8, num_layers=2, pooled_projection_dim=16,
        in_channels=12, out_channels=None, qk_norm="rms_norm", text_embed_dim=32, time_embed_dim=4,
        activation_fn="swiglu", max_sequence_length=16)
    # the decoder's group norms take 32 groups, hence 32 channels
    vae = AutoencoderKLMochi(latent_channels=12, out_channels=3, encoder_block_out_channels=(32, 32, 32, 32),
                             decoder_block_out_channels=(32, 32, 32, 32), layers_per_block=(1, 1, 1, 1, 1),
                             scaling_factor=scaling_factor)
    # Mochi's own scheduler config: its transformer counts time the other way round (invert_sigmas).
    scheduler = FlowMatchEulerDiscreteScheduler(invert_sigmas=True)
    return {"transformer": transformer.eval(), "vae": vae.eval(), "scheduler": scheduler,
            "text_encoder": text_encoder.eval(), "tokenizer": tokenizer}


def save_tiny_mochi(folder: Path, scaling_factor: float = 1.0) -> Path:
    """`scaling_factor`: Mochi 1's VAE has 1.0; another value shows whether decoding divides by it."""
    from diffusers import MochiPipeline

    # zeroing the empty negative prompt, as genmo's code does, so the tests exercise that path
    MochiPipeline(**tiny_mochi_components(scaling_factor=scaling_factor), force_zeros_for_empty_prompt=True).save_pretrained(
        folder, safe_serialization=True)
    return folder
