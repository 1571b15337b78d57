"""Write videogen/presets/cards/<preset>.json: full-size component configs (with their sources), weights
counted on the meta device, and the expected files with sizes (estimated from parameters x on-disk dtype).

Run: PYTHONPATH=. python tools/make_cards.py   (no network; the configs below are transcribed from the sources
named in each entry)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from videogen.families import FAMILIES  # noqa: E402
from videogen.plan.cards import CARDS_DIR, latent_geometry  # noqa: E402
from videogen.plan.components import Component, weight_stats  # noqa: E402

DIFF = "huggingface/diffusers scripts/"
WAN_SRC = DIFF + "convert_wan_to_diffusers.py get_transformer_config"
# The XXL encoder shape that T5 v1.1 and UMT5 share; they differ in vocabulary.
T5_XXL = dict(d_model=4096, d_ff=10240, d_kv=64, num_heads=64, num_layers=24, feed_forward_proj="gated-gelu",
              relative_attention_num_buckets=32, relative_attention_max_distance=128, layer_norm_epsilon=1e-6,
              tie_word_embeddings=False, dropout_rate=0.0)
UMT5 = dict(library="transformers", cls="UMT5EncoderModel", repeat=["num_layers"], disk="bfloat16",
            disk_src=DIFF + "convert_wan_to_diffusers.py loads google/umt5-xxl with torch_dtype=torch.bfloat16",
            src="google/umt5-xxl config.json (the encoder convert_wan_to_diffusers.py takes)",
            config=dict(T5_XXL, model_type="umt5", vocab_size=256384))
T5 = dict(library="transformers", cls="T5EncoderModel", repeat=["num_layers"],
          src="google/t5-v1_1-xxl config.json (the encoder the LTX, CogVideoX and Mochi conversion scripts take)",
          config=dict(T5_XXL, model_type="t5", vocab_size=32128))
CLIP_VISION = dict(library="transformers", cls="CLIPVisionModelWithProjection", repeat=["num_hidden_layers"],
                   disk="bfloat16", disk_src=DIFF + "convert_wan_to_diffusers.py loads it with torch_dtype=bfloat16",
                   src="laion/CLIP-ViT-H-14-laion2B-s32B-b79K vision config (convert_wan_to_diffusers.py)",
                   config=dict(model_type="clip_vision_model", hidden_size=1280, intermediate_size=5120,
                               num_hidden_layers=32, num_attention_heads=16, patch_size=14, image_size=224,
                               projection_dim=1024, hidden_act="gelu", layer_norm_eps=1e-5))
WAN_VAE = dict(library="diffusers", cls="AutoencoderKLWan", runs_in="float32", disk="float32",
               disk_src=DIFF + "convert_wan_to_diffusers.py builds the VAE in float32",
               src=DIFF + "convert_wan_to_diffusers.py convert_vae: AutoencoderKLWan() defaults",
               config=dict(base_dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                           temperal_downsample=[False, True, True]))
WAN22_VAE = dict(WAN_VAE, src=DIFF + "convert_wan_to_diffusers.py vae22_diffusers_config",
                 config=dict(base_dim=160, z_dim=48, is_residual=True, in_channels=12, out_channels=12,
                             decoder_base_dim=256, scale_factor_temporal=4, scale_factor_spatial=16, patch_size=2,
                             dim_mult=[1, 2, 4, 4], num_res_blocks=2, temperal_downsample=[False, True, True]))


def wan_tr(model_type: str, **cfg: object) -> dict:
    base = dict(added_kv_proj_dim=None, attention_head_dim=128, cross_attn_norm=True, eps=1e-6, freq_dim=256,
                in_channels=16, out_channels=16, patch_size=[1, 2, 2], qk_norm="rms_norm_across_heads",
                text_dim=4096)
    base.update(cfg)
    return dict(library="diffusers", cls="WanTransformer3DModel", repeat=["num_layers"], config=base,
                src=f"{WAN_SRC} ('{model_type}')", disk="float32",
                disk_src=DIFF + "convert_wan_to_diffusers.py --dtype default fp32")


W14 = dict(ffn_dim=13824, num_attention_heads=40, num_layers=40)
W14_I2V = dict(W14, image_dim=1280, added_kv_proj_dim=5120, in_channels=36)
HUNYUAN_TR = dict(library="diffusers", cls="HunyuanVideoTransformer3DModel",
                  repeat=["num_layers", "num_single_layers"], disk="bfloat16",
                  disk_src=DIFF + "convert_hunyuan_video_to_diffusers.py --dtype default bf16",
                  src=DIFF + "convert_hunyuan_video_to_diffusers.py TRANSFORMER_CONFIGS['HYVideo-T/2-cfgdistill']",
                  config=dict(in_channels=16, out_channels=16, num_attention_heads=24, attention_head_dim=128,
                              num_layers=20, num_single_layers=40, num_refiner_layers=2, mlp_ratio=4.0,
                              patch_size=2, patch_size_t=1, qk_norm="rms_norm", guidance_embeds=True,
                              text_embed_dim=4096, pooled_projection_dim=768, rope_theta=256.0,
                              rope_axes_dim=[16, 56, 56]))
LLAMA = dict(library="transformers", cls="LlamaModel", repeat=["num_hidden_layers"], disk="float16",
             disk_src=DIFF + "convert_hunyuan_video_to_diffusers.py loads it with torch_dtype=torch.float16",
             src="the text model of xtuner/llava-llama-3-8b-v1_1-transformers (LLaMA-3-8B config with a 128320 "
                 "vocabulary), as HunyuanVideo's text encoder",
             config=dict(model_type="llama", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                         num_attention_heads=32, num_key_value_heads=8, head_dim=128, vocab_size=128320,
                         max_position_embeddings=8192, rms_norm_eps=1e-5, rope_theta=500000.0,
                         tie_word_embeddings=False))
CLIP_L = dict(library="transformers", cls="CLIPTextModel", repeat=["num_hidden_layers"], disk="float16",
              disk_src=DIFF + "convert_hunyuan_video_to_diffusers.py loads it with torch_dtype=torch.float16",
              src="openai/clip-vit-large-patch14 text config (HunyuanVideo's text_encoder_2)",
              config=dict(model_type="clip_text_model", hidden_size=768, intermediate_size=3072,
                          num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77,
                          vocab_size=49408, hidden_act="quick_gelu", projection_dim=768, layer_norm_eps=1e-5))
HUNYUAN_VAE = dict(library="diffusers", cls="AutoencoderKLHunyuanVideo", runs_in="float32", disk="float32",
                   disk_src="assumed: convert_hunyuan_video_to_diffusers.py builds the VAE in float32",
                   src=DIFF + "convert_hunyuan_video_to_diffusers.py convert_vae: AutoencoderKLHunyuanVideo() "
                             "defaults", config=dict(temporal_compression_ratio=4, spatial_compression_ratio=8))
LTX_TR = dict(library="diffusers", cls="LTXVideoTransformer3DModel", repeat=["num_layers"], disk="float32",
              disk_src=DIFF + "convert_ltx_to_diffusers.py --dtype default fp32",
              src=DIFF + "convert_ltx_to_diffusers.py get_transformer_config (versions before 0.9.7)",
              config=dict(in_channels=128, out_channels=128, patch_size=1, patch_size_t=1, num_attention_heads=32,
                          attention_head_dim=64, cross_attention_dim=2048, num_layers=28,
                          activation_fn="gelu-approximate", qk_norm="rms_norm_across_heads",
                          norm_elementwise_affine=False, norm_eps=1e-6, caption_channels=4096, attention_bias=True,
                          attention_out_bias=True))
LTX_COMMON = dict(in_channels=3, out_channels=3, latent_channels=128, decoder_block_out_channels=[256, 512, 1024],
                  decoder_spatio_temporal_scaling=[True, True, True], upsample_residual=[True, True, True],
                  upsample_factor=[2, 2, 2], timestep_conditioning=True, patch_size=4, patch_size_t=1,
                  resnet_norm_eps=1e-6, scaling_factor=1.0, encoder_causal=True, decoder_causal=False)
LTX091_VAE = dict(library="diffusers", cls="AutoencoderKLLTXVideo", disk="float32",
                  disk_src=DIFF + "convert_ltx_to_diffusers.py --dtype default fp32",
                  src=DIFF + "convert_ltx_to_diffusers.py get_vae_config('0.9.1')",
                  config=dict(LTX_COMMON, block_out_channels=[128, 256, 512, 512],
                              down_block_types=["LTXVideoDownBlock3D"] * 4, layers_per_block=[4, 3, 3, 3, 4],
                              decoder_layers_per_block=[5, 6, 7, 8], spatio_temporal_scaling=[True, True, True, False],
                              decoder_inject_noise=[True, True, True, False], downsample_type=["conv"] * 4))
LTX095_VAE = dict(LTX091_VAE, src=DIFF + "convert_ltx_to_diffusers.py get_vae_config('0.9.5')",
                  config=dict(LTX_COMMON, block_out_channels=[128, 256, 512, 1024, 2048],
                              down_block_types=["LTXVideo095DownBlock3D"] * 4, layers_per_block=[4, 6, 6, 2, 2],
                              decoder_layers_per_block=[5, 5, 5, 5], spatio_temporal_scaling=[True, True, True, True],
                              decoder_inject_noise=[False, False, False, False],
                              downsample_type=["spatial", "temporal", "spatiotemporal", "spatiotemporal"],
                              spatial_compression_ratio=32, temporal_compression_ratio=8))


# LTX-2 (2.0): diffusers' scripts/convert_ltx2_to_diffusers.py, version "2.0" configs; every component saved in
# bf16 (its --*_dtype defaults). The text encoder is Gemma 3 12B (--text_encoder_model_id
# google/gemma-3-12b-it-qat-q4_0-unquantized), whose 48 layers + embeddings are the connectors' 49 inputs.
LTX2_SRC = DIFF + "convert_ltx2_to_diffusers.py"
LTX2_DISK = dict(disk="bfloat16", disk_src=LTX2_SRC + " --*_dtype default bf16")
GEMMA3_12B = dict(library="transformers", cls="Gemma3ForConditionalGeneration", repeat=[], **LTX2_DISK,
                  src="google/gemma-3-12b-it config.json (text: 48 layers of 3840, 16 heads of 256, 8 KV heads; "
                      "vision: SigLIP so400m at 896 px)",
                  config=dict(model_type="gemma3", mm_tokens_per_image=256,
                              text_config=dict(model_type="gemma3_text", hidden_size=3840, intermediate_size=15360,
                                               num_hidden_layers=48, num_attention_heads=16, num_key_value_heads=8,
                                               head_dim=256, vocab_size=262208, sliding_window=1024,
                                               rope_theta=1000000.0, query_pre_attn_scalar=256),
                              vision_config=dict(model_type="siglip_vision_model", hidden_size=1152,
                                                 intermediate_size=4304, num_hidden_layers=27,
                                                 num_attention_heads=16, image_size=896, patch_size=14)))
LTX2_TR = dict(library="diffusers", cls="LTX2VideoTransformer3DModel", repeat=["num_layers"], **LTX2_DISK,
               src=LTX2_SRC + " get_ltx2_transformer_config('2.0')",
               config=dict(in_channels=128, out_channels=128, patch_size=1, patch_size_t=1, num_attention_heads=32,
                           attention_head_dim=128, cross_attention_dim=4096, vae_scale_factors=[8, 32, 32],
                           pos_embed_max_pos=20, base_height=2048, base_width=2048, audio_in_channels=128,
                           audio_out_channels=128, audio_patch_size=1, audio_patch_size_t=1,
                           audio_num_attention_heads=32, audio_attention_head_dim=64, audio_cross_attention_dim=2048,
                           audio_scale_factor=4, audio_pos_embed_max_pos=20, audio_sampling_rate=16000,
                           audio_hop_length=160, num_layers=48, activation_fn="gelu-approximate",
                           qk_norm="rms_norm_across_heads", norm_elementwise_affine=False, norm_eps=1e-6,
                           caption_channels=3840, attention_bias=True, attention_out_bias=True, rope_theta=10000.0,
                           rope_double_precision=True, causal_offset=1, timestep_scale_multiplier=1000,
                           cross_attn_timestep_scale_multiplier=1000, rope_type="split"))
LTX2_CONNECTORS = dict(library="ltx2", cls="LTX2TextConnectors", **LTX2_DISK,
                       src=LTX2_SRC + " get_ltx2_connectors_config('2.0')",
                       config=dict(caption_channels=3840, text_proj_in_factor=49, video_connector_num_attention_heads=30,
                                   video_connector_attention_head_dim=128, video_connector_num_layers=2,
                                   video_connector_num_learnable_registers=128, audio_connector_num_attention_heads=30,
                                   audio_connector_attention_head_dim=128, audio_connector_num_layers=2,
                                   audio_connector_num_learnable_registers=128, connector_rope_base_seq_len=4096,
                                   rope_theta=10000.0, rope_double_precision=True, causal_temporal_positioning=False,
                                   rope_type="split"))
LTX2_VAE = dict(library="diffusers", cls="AutoencoderKLLTX2Video", **LTX2_DISK,
                src=LTX2_SRC + " get_ltx2_video_vae_config('2.0') (timestep_conditioning off, the default)",
                config=dict(in_channels=3, out_channels=3, latent_channels=128, block_out_channels=[256, 512, 1024, 2048],
                            down_block_types=["LTX2VideoDownBlock3D"] * 4, decoder_block_out_channels=[256, 512, 1024],
                            layers_per_block=[4, 6, 6, 2, 2], decoder_layers_per_block=[5, 5, 5, 5],
                            spatio_temporal_scaling=[True] * 4, decoder_spatio_temporal_scaling=[True] * 3,
                            decoder_inject_noise=[False] * 4,
                            downsample_type=["spatial", "temporal", "spatiotemporal", "spatiotemporal"],
                            upsample_residual=[True] * 3, upsample_factor=[2, 2, 2], timestep_conditioning=False,
                            patch_size=4, patch_size_t=1, resnet_norm_eps=1e-6, encoder_causal=True,
                            decoder_causal=False, encoder_spatial_padding_mode="zeros",
                            decoder_spatial_padding_mode="reflect", spatial_compression_ratio=32,
                            temporal_compression_ratio=8))
LTX2_AUDIO_VAE = dict(library="diffusers", cls="AutoencoderKLLTX2Audio", **LTX2_DISK,
                      src=LTX2_SRC + " get_ltx2_audio_vae_config('2.0')",
                      config=dict(base_channels=128, output_channels=2, ch_mult=[1, 2, 4], num_res_blocks=2,
                                  attn_resolutions=None, in_channels=2, resolution=256, latent_channels=8,
                                  norm_type="pixel", causality_axis="height", dropout=0.0,
                                  mid_block_add_attention=False, sample_rate=16000, mel_hop_length=160,
                                  is_causal=True, mel_bins=64, double_z=True))
LTX2_VOCODER = dict(library="ltx2", cls="LTX2Vocoder", **LTX2_DISK, src=LTX2_SRC + " get_ltx2_vocoder_config('2.0')",
                    config=dict(in_channels=128, hidden_channels=1024, out_channels=2,
                                upsample_kernel_sizes=[16, 15, 8, 4, 4], upsample_factors=[6, 5, 2, 2, 2],
                                resnet_kernel_sizes=[3, 7, 11], resnet_dilations=[[1, 3, 5], [1, 3, 5], [1, 3, 5]],
                                leaky_relu_negative_slope=0.1, output_sampling_rate=24000))
LTX2_PARTS = {"text_encoder": GEMMA3_12B, "connectors": LTX2_CONNECTORS, "transformer": LTX2_TR, "vae": LTX2_VAE,
              "audio_vae": LTX2_AUDIO_VAE, "vocoder": LTX2_VOCODER}
# LTX-2.3: the same script's version "2.3" configs (get_ltx2_transformer_config, get_ltx2_connectors_config,
# get_ltx2_video_vae_config, get_ltx2_audio_vae_config, get_ltx2_vocoder_config; huggingface/diffusers main at
# 58eb52c). The text encoder is the same Gemma 3 12B; the audio VAE is 2.0's.
LTX23_TR = dict(LTX2_TR, src=LTX2_SRC + " get_ltx2_transformer_config('2.3')",
                config=dict(LTX2_TR["config"], gated_attn=True, cross_attn_mod=True, audio_gated_attn=True,
                            audio_cross_attn_mod=True, use_prompt_embeddings=False, perturbed_attn=True))
LTX23_CONNECTORS = dict(LTX2_CONNECTORS, src=LTX2_SRC + " get_ltx2_connectors_config('2.3')",
                        config=dict(caption_channels=3840, text_proj_in_factor=49,
                                    video_connector_num_attention_heads=32, video_connector_attention_head_dim=128,
                                    video_connector_num_layers=8, video_connector_num_learnable_registers=128,
                                    video_gated_attn=True, audio_connector_num_attention_heads=32,
                                    audio_connector_attention_head_dim=64, audio_connector_num_layers=8,
                                    audio_connector_num_learnable_registers=128, audio_gated_attn=True,
                                    connector_rope_base_seq_len=4096, rope_theta=10000.0, rope_double_precision=True,
                                    causal_temporal_positioning=False, rope_type="split",
                                    per_modality_projections=True, video_hidden_dim=4096, audio_hidden_dim=2048,
                                    proj_bias=True))
LTX23_VAE = dict(LTX2_VAE, src=LTX2_SRC + " get_ltx2_video_vae_config('2.3') (timestep_conditioning off, the "
                                          "script's default: assumed for the published folder)",
                 config=dict(in_channels=3, out_channels=3, latent_channels=128, block_out_channels=[256, 512, 1024, 1024],
                             down_block_types=["LTX2VideoDownBlock3D"] * 4, decoder_block_out_channels=[256, 512, 512, 1024],
                             layers_per_block=[4, 6, 4, 2, 2], decoder_layers_per_block=[4, 6, 4, 2, 2],
                             spatio_temporal_scaling=[True] * 4, decoder_spatio_temporal_scaling=[True] * 4,
                             decoder_inject_noise=[False] * 5,
                             downsample_type=["spatial", "temporal", "spatiotemporal", "spatiotemporal"],
                             upsample_type=["spatiotemporal", "spatiotemporal", "temporal", "spatial"],
                             upsample_residual=[False] * 4, upsample_factor=[2, 2, 1, 2], timestep_conditioning=False,
                             patch_size=4, patch_size_t=1, resnet_norm_eps=1e-6, encoder_causal=True,
                             decoder_causal=False, encoder_spatial_padding_mode="zeros",
                             decoder_spatial_padding_mode="zeros", spatial_compression_ratio=32,
                             temporal_compression_ratio=8))
LTX23_AUDIO_VAE = dict(LTX2_AUDIO_VAE, src=LTX2_SRC + " get_ltx2_audio_vae_config('2.3') (2.0's)")
_RES = dict(resnet_kernel_sizes=[3, 7, 11], resnet_dilations=[[1, 3, 5]] * 3)
LTX23_VOCODER = dict(LTX2_VOCODER, cls="LTX2VocoderWithBWE", src=LTX2_SRC + " get_ltx2_vocoder_config('2.3')",
                     config=dict(in_channels=128, hidden_channels=1536, out_channels=2,
                                 upsample_kernel_sizes=[11, 4, 4, 4, 4, 4], upsample_factors=[5, 2, 2, 2, 2, 2], **_RES,
                                 act_fn="snakebeta", leaky_relu_negative_slope=0.1, antialias=True, antialias_ratio=2,
                                 antialias_kernel_size=12, final_act_fn=None, final_bias=False, bwe_in_channels=128,
                                 bwe_hidden_channels=512, bwe_out_channels=2, bwe_upsample_kernel_sizes=[12, 11, 4, 4, 4],
                                 bwe_upsample_factors=[6, 5, 2, 2, 2], bwe_resnet_kernel_sizes=[3, 7, 11],
                                 bwe_resnet_dilations=[[1, 3, 5]] * 3, bwe_act_fn="snakebeta",
                                 bwe_leaky_relu_negative_slope=0.1, bwe_antialias=True, bwe_antialias_ratio=2,
                                 bwe_antialias_kernel_size=12, bwe_final_act_fn=None, bwe_final_bias=False,
                                 filter_length=512, hop_length=80, window_length=512, num_mel_channels=64,
                                 input_sampling_rate=16000, output_sampling_rate=48000))
LTX23_PARTS = {"text_encoder": GEMMA3_12B, "connectors": LTX23_CONNECTORS, "transformer": LTX23_TR, "vae": LTX23_VAE,
               "audio_vae": LTX23_AUDIO_VAE, "vocoder": LTX23_VOCODER}


def cog_tr(version: str, layers: int, heads: int, rotary: bool, i2v: bool, disk: str) -> dict:
    v15 = version == "1.5"
    cfg = dict(num_layers=layers, num_attention_heads=heads, use_rotary_positional_embeddings=rotary,
               in_channels=32 if i2v else 16, patch_size=2, patch_size_t=2 if v15 else None, patch_bias=not v15,
               sample_height=300 if v15 else 60, sample_width=300 if v15 else 90, sample_frames=81 if v15 else 49,
               ofs_embed_dim=512 if (i2v and v15) else None, use_learned_positional_embeddings=i2v and not v15)
    return dict(library="diffusers", cls="CogVideoXTransformer3DModel", repeat=["num_layers"], config=cfg,
                src=DIFF + f"convert_cogvideox_to_diffusers.py (--version {version}, --num_layers {layers}, "
                           f"--num_attention_heads {heads}{', --use_rotary_positional_embeddings' if rotary else ''}"
                           f"{', --i2v' if i2v else ''})",
                disk=disk, disk_src=f"assumed: the {disk} the model card recommends for this model")


def cog_vae(v15: bool) -> dict:
    return dict(library="diffusers", cls="AutoencoderKLCogVideoX", disk="bfloat16",
                disk_src="assumed: saved with the transformer's dtype",
                src=DIFF + "convert_cogvideox_to_diffusers.py convert_vae: AutoencoderKLCogVideoX defaults",
                config=dict(scaling_factor=0.7 if v15 else 1.15258426, invert_scale_latents=v15))


MOCHI_TR = dict(library="diffusers", cls="MochiTransformer3DModel", repeat=["num_layers"], disk="float32",
                disk_src="assumed: convert_mochi_to_diffusers.py keeps the loaded dtype without --dtype",
                src=DIFF + "convert_mochi_to_diffusers.py: MochiTransformer3DModel() defaults", config={})
MOCHI_VAE = dict(library="diffusers", cls="AutoencoderKLMochi", runs_in="float32", disk="float32",
                 disk_src="assumed, as the transformer",
                 src=DIFF + "convert_mochi_to_diffusers.py: AutoencoderKLMochi(latent_channels=12, out_channels=3)",
                 config=dict(latent_channels=12, out_channels=3))

T5_F32 = dict(T5, disk="float32", disk_src="assumed: the conversion scripts save google/t5-v1_1-xxl as loaded "
                                            "(float32) unless --typecast_text_encoder")
T5_BF16 = dict(T5, disk="bfloat16", disk_src="assumed: saved with the transformer's dtype")

WAN_TOK = {"text_encoder": 512}
PRESETS: dict[str, tuple[dict, dict, str]] = {
    "wan2.1-t2v-1.3b": ({"text_encoder": UMT5, "transformer": wan_tr("Wan-T2V-1.3B", ffn_dim=8960,
                         num_attention_heads=12, num_layers=30), "vae": WAN_VAE}, WAN_TOK, "cfg"),
    "wan2.1-t2v-14b-480p": ({"text_encoder": UMT5, "transformer": wan_tr("Wan-T2V-14B", **W14), "vae": WAN_VAE},
                            WAN_TOK, "cfg"),
    "wan2.1-i2v-14b-480p": ({"text_encoder": UMT5, "image_encoder": CLIP_VISION,
                             "transformer": wan_tr("Wan-I2V-14B-480p", **W14_I2V), "vae": WAN_VAE}, WAN_TOK, "cfg"),
    "wan2.1-flf2v-14b-720p": ({"text_encoder": UMT5, "image_encoder": CLIP_VISION,
                               "transformer": wan_tr("Wan-FLF2V-14B-720P", **W14_I2V, rope_max_seq_len=1024,
                                                     pos_embed_seq_len=514), "vae": WAN_VAE}, WAN_TOK, "cfg"),
    "wan2.2-t2v-a14b": ({"text_encoder": UMT5, "transformer": wan_tr("Wan2.2-T2V-A14B", **W14),
                         "transformer_2": wan_tr("Wan2.2-T2V-A14B", **W14), "vae": WAN_VAE}, WAN_TOK, "cfg"),
    "wan2.2-i2v-a14b": ({"text_encoder": UMT5, "transformer": wan_tr("Wan2.2-I2V-14B-720p", **W14, in_channels=36),
                         "transformer_2": wan_tr("Wan2.2-I2V-14B-720p", **W14, in_channels=36), "vae": WAN_VAE},
                        WAN_TOK, "cfg"),
    "wan2.2-ti2v-5b": ({"text_encoder": UMT5, "transformer": wan_tr("Wan2.2-TI2V-5B", ffn_dim=14336,
                        num_attention_heads=24, num_layers=30, in_channels=48, out_channels=48), "vae": WAN22_VAE},
                       WAN_TOK, "cfg"),
    "hunyuanvideo": ({"text_encoder": LLAMA, "text_encoder_2": CLIP_L, "transformer": HUNYUAN_TR,
                      "vae": HUNYUAN_VAE}, {"text_encoder": 351, "text_encoder_2": 77}, "embedded"),
    "ltx-video-0.9.1": ({"text_encoder": T5_F32, "transformer": LTX_TR, "vae": LTX091_VAE},
                        {"text_encoder": 128}, "cfg"),
    "ltx-video-0.9.5": ({"text_encoder": T5_F32, "transformer": LTX_TR, "vae": LTX095_VAE},
                        {"text_encoder": 128}, "cfg"),
    "cogvideox-2b": ({"text_encoder": T5_BF16, "transformer": cog_tr("1.0", 30, 30, False, False, "float16"),
                      "vae": cog_vae(False)}, {"text_encoder": 226}, "cfg"),
    "cogvideox-5b": ({"text_encoder": T5_BF16, "transformer": cog_tr("1.0", 42, 48, True, False, "bfloat16"),
                      "vae": cog_vae(False)}, {"text_encoder": 226}, "cfg"),
    "cogvideox-5b-i2v": ({"text_encoder": T5_BF16, "transformer": cog_tr("1.0", 42, 48, True, True, "bfloat16"),
                          "vae": cog_vae(False)}, {"text_encoder": 226}, "cfg"),
    "cogvideox1.5-5b": ({"text_encoder": T5_BF16, "transformer": cog_tr("1.5", 42, 48, True, False, "bfloat16"),
                         "vae": cog_vae(True)}, {"text_encoder": 224}, "cfg"),
    "cogvideox1.5-5b-i2v": ({"text_encoder": T5_BF16, "transformer": cog_tr("1.5", 42, 48, True, True, "bfloat16"),
                             "vae": cog_vae(True)}, {"text_encoder": 224}, "cfg"),
    "mochi-1-preview": ({"text_encoder": T5_F32, "transformer": MOCHI_TR, "vae": MOCHI_VAE},
                        {"text_encoder": 256}, "cfg"),
    "ltx2": (LTX2_PARTS, {"text_encoder": 1024}, "cfg"),
}
# The distilled checkpoint has the same architecture (another transformer's weights).
PRESETS["ltx2-distilled"] = PRESETS["ltx2"]
PRESETS["ltx2.3"] = (LTX23_PARTS, {"text_encoder": 1024}, "cfg")
PRESETS["ltx2.3-distilled"] = PRESETS["ltx2.3"]
# The same files as wan2.1-t2v-14b / i2v-14b-480p under another Hub id.
PRESETS["wan2.1-t2v-14b-720p"] = PRESETS["wan2.1-t2v-14b-480p"]
PRESETS["wan2.1-i2v-14b-720p"] = ({**PRESETS["wan2.1-i2v-14b-480p"][0],
                                   "transformer": wan_tr("Wan-I2V-14B-720p", **W14_I2V)}, WAN_TOK, "cfg")
# VACE: the Wan transformer plus VACE blocks fed by a 96-channel control (convert_wan_to_diffusers.py's
# 'Wan-VACE-1.3B' and 'Wan-VACE-14B' configs); video-to-video runs the plain text-to-video files.
def _vace(model_type: str, layers: list[int], **cfg: object) -> dict:
    tr = wan_tr(model_type, **cfg, vace_layers=layers, vace_in_channels=96)
    return dict(tr, cls="WanVACETransformer3DModel")


PRESETS["wan2.1-vace-1.3b"] = ({"text_encoder": UMT5, "vae": WAN_VAE, "transformer": _vace(
    "Wan-VACE-1.3B", list(range(0, 30, 2)), ffn_dim=8960, num_attention_heads=12, num_layers=30)}, WAN_TOK, "cfg")
PRESETS["wan2.1-vace-14b"] = ({"text_encoder": UMT5, "vae": WAN_VAE, "transformer": _vace(
    "Wan-VACE-14B", list(range(0, 40, 5)), **W14)}, WAN_TOK, "cfg")
PRESETS["wan2.1-v2v-1.3b"] = PRESETS["wan2.1-t2v-1.3b"]
# The lightx2v presets run their base model's files (the LoRA is the user's own file, not in the card).
for _alias, _base in (("wan2.1-t2v-14b-lightx2v-4step", "wan2.1-t2v-14b-480p"),
                      ("wan2.2-t2v-a14b-lightx2v-4step", "wan2.2-t2v-a14b"),
                      ("wan2.2-i2v-a14b-lightx2v-4step", "wan2.2-i2v-a14b")):
    PRESETS[_alias] = PRESETS[_base]
# HunyuanVideo 1.5: convert_hunyuan_video1_5_to_diffusers.py (TRANSFORMER_CONFIGS, convert_vae, load_mllm,
# load_byt5); the transformer is built empty and takes the original weights as they are stored (assign=True).
HV15_SRC = DIFF + "convert_hunyuan_video1_5_to_diffusers.py"


def hv15_tr(kind: str, target: int, task: str, meanflow: bool = False) -> dict:
    cfg = dict(in_channels=65, out_channels=32, num_attention_heads=16, attention_head_dim=128, num_layers=54,
               num_refiner_layers=2, mlp_ratio=4.0, patch_size=1, patch_size_t=1, qk_norm="rms_norm",
               text_embed_dim=3584, text_embed_2_dim=1472, image_embed_dim=1152, rope_theta=256.0,
               rope_axes_dim=[16, 56, 56], use_meanflow=meanflow, target_size=target, task_type=task)
    src = f"{HV15_SRC} TRANSFORMER_CONFIGS['{kind}']"
    if kind == "480p_i2v_step_distilled":
        src = (f"{HV15_SRC} TRANSFORMER_CONFIGS['480p_i2v'] (no entry of its own there), with use_meanflow: "
               "assumed, as HunyuanVideo15ImageToVideoPipeline feeds a mean-flow transformer the next timestep")
    elif kind == "720p_i2v_distilled":
        src = (f"{HV15_SRC} TRANSFORMER_CONFIGS['480p_i2v'] with target_size 960 (the 720p entries are empty "
               "there; 720p_t2v differs from 480p_t2v only in target_size)")
    return dict(library="diffusers", cls="HunyuanVideo15Transformer3DModel", repeat=["num_layers"], config=cfg,
                src=src, disk="bfloat16", disk_src="assumed: the original checkpoint's dtype, kept by assign=True")


HV15_VAE = dict(library="diffusers", cls="AutoencoderKLHunyuanVideo15", disk="float32",
                disk_src="assumed: the original VAE file's dtype, kept by assign=True",
                src=HV15_SRC + " convert_vae: AutoencoderKLHunyuanVideo15() defaults", config={})
QWEN25_VL = dict(library="transformers", cls="Qwen2_5_VLTextModel", repeat=["num_hidden_layers"], disk="bfloat16",
                 disk_src=HV15_SRC + " load_mllm: torch_dtype=torch.bfloat16",
                 src="the language model of Qwen/Qwen2.5-VL-7B-Instruct (config.json), as load_mllm takes it",
                 config=dict(model_type="qwen2_5_vl_text", hidden_size=3584, intermediate_size=18944,
                             num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4, vocab_size=152064,
                             max_position_embeddings=128000, rms_norm_eps=1e-6, rope_theta=1000000.0,
                             tie_word_embeddings=False,
                             rope_scaling={"type": "mrope", "rope_type": "default", "mrope_section": [16, 24, 24]}))
BYT5 = dict(library="transformers", cls="T5EncoderModel", repeat=["num_layers"], disk="float32",
            disk_src=HV15_SRC + " load_byt5: T5EncoderModel.from_pretrained('google/byt5-small'), no dtype given",
            src="google/byt5-small config.json; load_byt5 then adds Glyph-SDXL-v2's color and font tokens to the "
                "vocabulary (their count is not in the script; a few hundred rows of 1472, not counted here)",
            config=dict(model_type="t5", d_model=1472, d_ff=3584, d_kv=64, num_heads=6, num_layers=12,
                        feed_forward_proj="gated-gelu", vocab_size=384, relative_attention_num_buckets=32,
                        relative_attention_max_distance=128, layer_norm_epsilon=1e-6, tie_word_embeddings=False,
                        dropout_rate=0.0))
SIGLIP = dict(library="transformers", cls="SiglipVisionModel", repeat=["num_hidden_layers"], disk="bfloat16",
              disk_src="assumed: saved in the pipeline's bfloat16",
              src="google/siglip-so400m-patch14-384 vision config (the SigLIP of black-forest-labs/FLUX.1-Redux-dev "
                  "that HunyuanVideo 1.5 uses: 1152 wide, 729 tokens, the transformer's image_embed_dim)",
              config=dict(model_type="siglip_vision_model", hidden_size=1152, intermediate_size=4304,
                          num_hidden_layers=27, num_attention_heads=16, image_size=384, patch_size=14,
                          hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6))
HV15_TOK = {"text_encoder": 1108, "text_encoder_2": 256}  # 1000 Qwen tokens after the 108 of the template
for _preset, _kind, _target, _task, _mf in (
        ("hunyuanvideo1.5-480p-t2v", "480p_t2v", 640, "t2v", False),
        ("hunyuanvideo1.5-720p-t2v", "720p_t2v", 960, "t2v", False),
        ("hunyuanvideo1.5-480p-i2v", "480p_i2v", 640, "i2v", False),
        ("hunyuanvideo1.5-720p-i2v-distilled", "720p_i2v_distilled", 960, "i2v", False),
        ("hunyuanvideo1.5-480p-i2v-step-distilled", "480p_i2v_step_distilled", 640, "i2v", True)):
    _comps = {"text_encoder": QWEN25_VL, "text_encoder_2": BYT5, "transformer": hv15_tr(_kind, _target, _task, _mf),
              "vae": HV15_VAE}
    PRESETS[_preset] = ({**_comps, "image_encoder": SIGLIP} if _task == "i2v" else _comps, HV15_TOK, "cfg")
# Mochi's VAE config does not state its compression: 6x in time, 8x in space (genmo's model card).
# LTX's 0.9.1 VAE config leaves its ratios to the class (patch 4 x three 2x stages in space, 8x in time).
LATENT = {"mochi-1-preview": {"channels": 12, "temporal": 6, "spatial": 8},
          "ltx-video-0.9.1": {"channels": 128, "temporal": 8, "spatial": 32},
          "ltx-video-0.9.5": {"channels": 128, "temporal": 8, "spatial": 32}}
# What the planner needs of a family beyond the configs (LTX-2: its guidance pair always batched, the sound's
# default guidance): each family's own declaration, which replaces the "guidance" above.
FACTS = {f.name: f.plan_facts for f in FAMILIES}
ONLY_IF_ARGS = set(PRESETS)  # with preset names as arguments, only those are rewritten
BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def entry(name: str, d: dict) -> dict:
    comp = Component(name, d["library"], d["cls"], d["config"], d.get("repeat", []), d.get("runs_in", "model"))
    if d["library"] != "transformers":  # the full config, defaults filled in as diffusers does
        import torch

        from videogen.plan.components import instantiate

        with torch.device("meta"):
            comp.config = {k: v for k, v in dict(instantiate(comp).config).items() if not k.startswith("_")}
    stats = weight_stats(comp)
    size = stats.parameters * BYTES[d["disk"]]
    weights_file = "model*.safetensors" if d["library"] == "transformers" else "diffusion_pytorch_model*.safetensors"
    return {"library": d["library"], "class": d["cls"], "config": comp.config, "config_source": d["src"],
            "repeat": comp.repeat, "runs_in": comp.runs_in, "weights": stats.__dict__,
            "weights_source": "parameters counted by building the module from this config on the meta device",
            "disk_dtype": d["disk"], "disk_dtype_source": d["disk_src"],
            "files": [{"path": f"{name}/{weights_file}", "bytes": size, "estimated": True,
                       "basis": f"{stats.parameters} parameters x {BYTES[d['disk']]} bytes ({d['disk']})"},
                      {"path": f"{name}/config.json", "bytes": 2048, "estimated": True, "basis": "typical size"}]}


def safetensors_dtypes(path: Path) -> set[str]:
    """The dtypes stored in a safetensors file, from its JSON header (no tensor is read)."""
    with path.open("rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    return {v["dtype"] for k, v in header.items() if k != "__metadata__"}


SAFETENSORS_DTYPES = {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}


def mini_card() -> dict:
    """The built-in model's card, from its shipped folder: real file sizes and dtypes."""
    from videogen.loading import builtin_model_path
    from videogen.plan.cards import card_from_folder

    folder = builtin_model_path()
    data = card_from_folder(folder).data
    files = [{"path": str(p.relative_to(folder)), "bytes": p.stat().st_size, "estimated": False}
             for p in sorted(folder.rglob("*")) if p.is_file()]
    for name, c in data["components"].items():
        weights = sorted((folder / name).glob("*.safetensors"))
        dtypes = {SAFETENSORS_DTYPES.get(t, t) for w in weights for t in safetensors_dtypes(w)}
        c["config_source"] = f"videogen/mini/model/{name}/config.json"
        c["weights_source"] = "parameters counted by building the module from this config on the meta device"
        c["disk_dtype"] = ",".join(sorted(dtypes))
        c["disk_dtype_source"] = "read from the safetensors headers"
        c["files"] = [f for f in files if f["path"].startswith(f"{name}/")]
    return {"preset": "mini", "repo": "builtin:mini", "family": "wan",
            "note": "The built-in model ships with videogen: nothing to download; sizes are the files' own.",
            **{k: v for k, v in data.items() if k not in ("repo",)}, "files": files,
            "download_bytes": 0, "installed_bytes": sum(f["bytes"] for f in files), "download_estimated": False}


def main() -> None:
    import yaml

    if not sys.argv[1:] or "mini" in sys.argv[1:]:
        (CARDS_DIR / "mini.json").write_text(json.dumps(mini_card(), indent=1) + "\n", encoding="utf-8")

    CARDS_DIR.mkdir(parents=True, exist_ok=True)
    presets_dir = ROOT / "videogen" / "presets"
    for preset, (comps, tokens, guidance) in sorted(PRESETS.items()):
        if preset in ONLY_IF_ARGS and sys.argv[1:] and preset not in sys.argv[1:]:
            continue
        meta = yaml.safe_load((presets_dir / f"{preset}.yaml").read_text(encoding="utf-8"))
        components = {n: entry(n, d) for n, d in comps.items()}
        tok_files = [{"path": f"{n.replace('text_encoder', 'tokenizer')}/", "bytes": 20 * 2**20 if n == "text_encoder"
                      else 2 * 2**20, "estimated": True, "basis": "typical tokenizer folder"} for n in tokens]
        files = [f for c in components.values() for f in c["files"]] + tok_files + [
            {"path": "model_index.json", "bytes": 1024, "estimated": True, "basis": "typical size"},
            {"path": "scheduler/scheduler_config.json", "bytes": 1024, "estimated": True, "basis": "typical size"}]
        card = {"preset": preset, "repo": meta["model"], "family": meta.get("family"),
                "note": "Configs are the published full-size ones (sources per component). No file here was read "
                        "from the Hub: every size is estimated from the parameter count and the on-disk dtype.",
                "latent": LATENT.get(preset) or latent_geometry(components["vae"]["config"], components[
                    next(n for n in components if n.startswith("transformer"))]["config"]),
                "text_tokens": tokens, "guidance": guidance, **FACTS.get(meta.get("family"), {}),
                "components": components, "files": files,
                "download_bytes": sum(f["bytes"] for f in files), "download_estimated": True}
        (CARDS_DIR / f"{preset}.json").write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
        print(preset, round(card["download_bytes"] / 2**30, 1), "GiB")


if __name__ == "__main__":
    main()
