"""Tiny random LTX-2 components (configs after diffusers' own LTX-2 tests), saved with save_pretrained.

A word-level Gemma tokenizer and a two-layer Gemma 3 (with a one-layer SigLIP tower, as the real checkpoint's
class carries one) stand in for Gemma 3 12B. The transformer has 29 blocks so that the pipeline's default
spatio-temporal guidance block (28) exists, and its attention takes the STG perturbation (`perturbed_attn`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from tiny import WORDS


def gemma_tokenizer():
    """A word-level tokenizer with Gemma's special tokens (<bos> in front). A plain fast tokenizer: saved as a
    GemmaTokenizer, transformers 5 would rebuild it as Gemma's BPE and lose the words."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3}
    for w in WORDS:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>",
                              unk_token="<unk>", model_max_length=1024)


def tiny_gemma3(vocab_size: int, hidden: int = 32):
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3TextConfig,
        SiglipVisionConfig,
    )

    text = Gemma3TextConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=2, num_key_value_heads=1, head_dim=16, sliding_window=8,
                            max_position_embeddings=2048)
    vision = SiglipVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                image_size=28, patch_size=14)
    cfg = Gemma3Config(text_config=text.to_dict(), vision_config=vision.to_dict(), mm_tokens_per_image=4,
                       boi_token_index=vocab_size - 1, eoi_token_index=vocab_size - 1,
                       image_token_index=vocab_size - 1)
    return Gemma3ForConditionalGeneration(cfg).eval()


def tiny_ltx2_components(seed: int = 0, layers: int = 29, version: str = "2.0") -> dict:
    """`version` "2.3": LTX-2.3's layout (per-modality text projections straight to the cross-attention widths,
    gated attention, prompt modulation by sigma, no caption projection, a vocoder with bandwidth extension)."""
    from diffusers import (
        AutoencoderKLLTX2Audio,
        AutoencoderKLLTX2Video,
        FlowMatchEulerDiscreteScheduler,
        LTX2VideoTransformer3DModel,
    )
    from diffusers.pipelines.ltx2 import LTX2TextConnectors
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder, LTX2VocoderWithBWE

    torch.manual_seed(seed)
    tokenizer = gemma_tokenizer()
    text_encoder = tiny_gemma3(len(tokenizer))
    hidden = text_encoder.config.text_config.hidden_size
    v23 = version == "2.3"
    new = dict(gated_attn=True, cross_attn_mod=True, audio_gated_attn=True, audio_cross_attn_mod=True,
               use_prompt_embeddings=False) if v23 else {}
    transformer = LTX2VideoTransformer3DModel(
        in_channels=4, out_channels=4, patch_size=1, patch_size_t=1, num_attention_heads=2, attention_head_dim=8,
        cross_attention_dim=16, audio_in_channels=4, audio_out_channels=4, audio_num_attention_heads=2,
        audio_attention_head_dim=4, audio_cross_attention_dim=8, num_layers=layers, qk_norm="rms_norm_across_heads",
        caption_channels=hidden, rope_double_precision=False, rope_type="split", perturbed_attn=True, **new,
    )
    # 2.0: one projection to the caption width for both streams; 2.3: one per stream, at its cross-attention width
    heads = dict(video_connector_num_attention_heads=2, video_connector_attention_head_dim=8,
                 audio_connector_num_attention_heads=2, audio_connector_attention_head_dim=4,
                 per_modality_projections=True, video_hidden_dim=16, audio_hidden_dim=8, video_gated_attn=True,
                 audio_gated_attn=True) if v23 else dict(
        video_connector_num_attention_heads=4, video_connector_attention_head_dim=8,
        audio_connector_num_attention_heads=4, audio_connector_attention_head_dim=8)
    connectors = LTX2TextConnectors(
        caption_channels=hidden, text_proj_in_factor=text_encoder.config.text_config.num_hidden_layers + 1,
        video_connector_num_layers=1, video_connector_num_learnable_registers=None, audio_connector_num_layers=1,
        audio_connector_num_learnable_registers=None, connector_rope_base_seq_len=32, rope_theta=10000.0,
        rope_double_precision=False, causal_temporal_positioning=False, rope_type="split", **heads,
    )
    # Spatial compression 8 (patch 2, two scaling stages), temporal 4: 9 frames of 32x32 are 3x4x4 tokens.
    vae = AutoencoderKLLTX2Video(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8), decoder_block_out_channels=(8, 8),
        layers_per_block=(1, 1), decoder_layers_per_block=(1, 1, 1), spatio_temporal_scaling=(True, True),
        decoder_spatio_temporal_scaling=(True, True), decoder_inject_noise=(False, False, False),
        downsample_type=("spatial", "spatial"), upsample_residual=(False, False), upsample_factor=(1, 1),
        timestep_conditioning=False, patch_size=2, patch_size_t=1, encoder_causal=True, decoder_causal=False,
    )
    audio_vae = AutoencoderKLLTX2Audio(
        base_channels=4, output_channels=2, ch_mult=(1,), num_res_blocks=1, attn_resolutions=None, in_channels=2,
        resolution=32, latent_channels=2, norm_type="pixel", causality_axis="height", dropout=0.0,
        mid_block_add_attention=False, sample_rate=16000, mel_hop_length=160, is_causal=True, mel_bins=8,
    )
    # 160 samples per mel frame, the audio VAE's hop: the waveform lasts as long as the video, as LTX-2's does.
    vocoder = LTX2Vocoder(
        in_channels=audio_vae.config.output_channels * audio_vae.config.mel_bins, hidden_channels=32,
        out_channels=2, upsample_kernel_sizes=[8, 8, 20], upsample_factors=[4, 4, 10], resnet_kernel_sizes=[3],
        resnet_dilations=[[1, 3, 5]], leaky_relu_negative_slope=0.1, output_sampling_rate=16000,
    )
    if v23:  # 16 kHz from the mel, then bandwidth extension to 32 kHz (LTX-2.3: 48 kHz)
        size = dict(hidden_channels=32, upsample_kernel_sizes=[8, 8, 20], upsample_factors=[4, 4, 10],
                    resnet_kernel_sizes=[3], resnet_dilations=[[1, 3, 5]])
        vocoder = LTX2VocoderWithBWE(
            in_channels=16, out_channels=2, bwe_in_channels=16, bwe_hidden_channels=32, bwe_out_channels=2,
            bwe_upsample_kernel_sizes=[8, 8, 20], bwe_upsample_factors=[4, 4, 10], bwe_resnet_kernel_sizes=[3],
            bwe_resnet_dilations=[[1, 3, 5]], filter_length=128, hop_length=80, window_length=128,
            num_mel_channels=8, input_sampling_rate=16000, output_sampling_rate=32000, **size)
        for name in ("mel_stft.mel_basis", "mel_stft.stft_fn.forward_basis"):  # zeros in a fresh module
            buffer = vocoder.get_buffer(name)
            buffer.copy_(torch.randn_like(buffer) * 0.1)
    # Non-trivial latent statistics, so that (de)normalisation with the VAEs' buffers is exercised.
    vae.latents_mean.copy_(torch.linspace(-0.3, 0.3, 4))
    vae.latents_std.copy_(torch.linspace(0.5, 1.5, 4))
    audio_vae.latents_mean.copy_(torch.linspace(-0.2, 0.2, 4))
    audio_vae.latents_std.copy_(torch.linspace(0.6, 1.4, 4))
    # LTX-2's scheduler: resolution-dependent shift, sequence lengths scaled down to tiny sizes.
    scheduler = FlowMatchEulerDiscreteScheduler(
        use_dynamic_shifting=True, base_image_seq_len=64, max_image_seq_len=1024, base_shift=0.95, max_shift=2.05,
        shift_terminal=0.1, time_shift_type="exponential",
    )
    return {"transformer": transformer.eval(), "vae": vae.eval(), "audio_vae": audio_vae.eval(),
            "scheduler": scheduler, "text_encoder": text_encoder, "tokenizer": tokenizer,
            "connectors": connectors.eval(), "vocoder": vocoder.eval()}


def save_tiny_ltx2(folder: Path, **kwargs) -> Path:
    from diffusers import LTX2Pipeline

    LTX2Pipeline(**tiny_ltx2_components(**kwargs)).save_pretrained(folder, safe_serialization=True)
    return folder
