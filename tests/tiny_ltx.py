"""Tiny random LTX-Video components (configs after diffusers' own LTX tests), saved with save_pretrained."""

from __future__ import annotations

from pathlib import Path

import torch
from tiny import word_tokenizer


def tiny_t5(vocab_size: int, d_model: int = 32):
    from transformers import T5Config, T5EncoderModel

    cfg = T5Config(vocab_size=vocab_size, d_model=d_model, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                   relative_attention_num_buckets=8, relative_attention_max_distance=16, dropout_rate=0.0)
    return T5EncoderModel(cfg).eval()


def tiny_ltx_components(seed: int = 0, timestep_conditioning: bool = True, dynamic_shift: bool = True) -> dict:
    from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXVideoTransformer3DModel

    torch.manual_seed(seed)
    tokenizer = word_tokenizer()
    transformer = LTXVideoTransformer3DModel(in_channels=8, out_channels=8, patch_size=1, patch_size_t=1,
                                             num_attention_heads=4, attention_head_dim=8, cross_attention_dim=32,
                                             num_layers=1, caption_channels=32)
    # Spatial and temporal compression 4; the decoder is conditioned on the timestep and injects noise like
    # 0.9.1's (diffusers draws that noise from the global RNG: the reference run seeds it).
    vae = AutoencoderKLLTXVideo(
        latent_channels=8, block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, False, False), decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_inject_noise=(True, True, False, False, False), upsample_residual=(False, False, False, False),
        upsample_factor=(1, 1, 1, 1), timestep_conditioning=timestep_conditioning, patch_size=1, patch_size_t=1,
        encoder_causal=True, decoder_causal=False,
    )
    for module in vae.decoder.modules():  # noise scales start at zero: make the injected noise count
        for name in ("per_channel_scale1", "per_channel_scale2"):
            if getattr(module, name, None) is not None:
                getattr(module, name).data.fill_(0.3)
    # Non-trivial latent statistics, so that (de)normalisation with the VAE's buffers is exercised.
    vae.latents_mean.copy_(torch.linspace(-0.3, 0.3, 8))
    vae.latents_std.copy_(torch.linspace(0.5, 1.5, 8))
    # LTX-Video 0.9.1's scheduler settings (resolution-dependent shift), with sequence lengths scaled to tiny sizes.
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=1.0, use_dynamic_shifting=dynamic_shift, base_image_seq_len=64, max_image_seq_len=1024,
        base_shift=0.95, max_shift=2.05, shift_terminal=0.1 if dynamic_shift else None,
        time_shift_type="exponential",
    )
    return {"transformer": transformer.eval(), "vae": vae.eval(), "scheduler": scheduler,
            "text_encoder": tiny_t5(len(tokenizer)), "tokenizer": tokenizer}


def save_tiny_ltx(folder: Path, i2v: bool = False, **kwargs) -> Path:
    from diffusers import LTXImageToVideoPipeline, LTXPipeline

    cls = LTXImageToVideoPipeline if i2v else LTXPipeline
    cls(**tiny_ltx_components(**kwargs)).save_pretrained(folder, safe_serialization=True)
    return folder
