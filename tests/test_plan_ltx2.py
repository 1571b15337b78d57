"""`videogen plan` for LTX-2: each stage's prediction (text encoder and connectors, the batched guidance step on
video and sound tokens, the VAE decode, the sound decode) against a real CPU run of the same components."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_plan import real_peak, within

FRAMES, HEIGHT, WIDTH, FPS = 17, 64, 96, 24


@pytest.fixture(scope="module")
def ltx2_dir(tmp_path_factory) -> Path:
    """A small LTX-2 (Gemma 3 text model, connectors, audio-video transformer, both VAEs, vocoder), big enough that
    activations dominate what the counter sees."""
    from diffusers import (
        AutoencoderKLLTX2Audio,
        AutoencoderKLLTX2Video,
        FlowMatchEulerDiscreteScheduler,
        LTX2Pipeline,
        LTX2VideoTransformer3DModel,
    )
    from diffusers.pipelines.ltx2 import LTX2TextConnectors
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder
    from tiny_ltx2 import gemma_tokenizer
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3TextConfig,
        SiglipVisionConfig,
    )

    torch.manual_seed(0)
    tok = gemma_tokenizer()
    vocab = 4096  # more rows than the tokenizer's words: the head's logits over all tokens are what dominates
    text = Gemma3TextConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                            num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=64,
                            max_position_embeddings=2048)
    vision = SiglipVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                image_size=28, patch_size=14)
    te = Gemma3ForConditionalGeneration(Gemma3Config(
        text_config=text.to_dict(), vision_config=vision.to_dict(), mm_tokens_per_image=4,
        boi_token_index=vocab - 1, eoi_token_index=vocab - 1, image_token_index=vocab - 1))
    connectors = LTX2TextConnectors(
        caption_channels=64, text_proj_in_factor=4, video_connector_num_attention_heads=4,
        video_connector_attention_head_dim=16, video_connector_num_layers=2,
        video_connector_num_learnable_registers=16, audio_connector_num_attention_heads=4,
        audio_connector_attention_head_dim=16, audio_connector_num_layers=2,
        audio_connector_num_learnable_registers=16, connector_rope_base_seq_len=64, rope_theta=10000.0,
        rope_double_precision=False, causal_temporal_positioning=False, rope_type="split")
    tr = LTX2VideoTransformer3DModel(
        in_channels=8, out_channels=8, patch_size=1, patch_size_t=1, num_attention_heads=4, attention_head_dim=16,
        cross_attention_dim=64, audio_in_channels=16, audio_out_channels=16, audio_num_attention_heads=2,
        audio_attention_head_dim=16, audio_cross_attention_dim=32, num_layers=3, qk_norm="rms_norm_across_heads",
        caption_channels=64, rope_double_precision=False, rope_type="split", perturbed_attn=True)
    vae = AutoencoderKLLTX2Video(
        in_channels=3, out_channels=3, latent_channels=8, block_out_channels=(16, 32),
        decoder_block_out_channels=(16, 32), layers_per_block=(1, 1), decoder_layers_per_block=(1, 1, 1),
        spatio_temporal_scaling=(True, True), decoder_spatio_temporal_scaling=(True, True),
        decoder_inject_noise=(False, False, False), downsample_type=("spatial", "spatial"),
        upsample_residual=(False, False), upsample_factor=(1, 1), timestep_conditioning=False, patch_size=2,
        patch_size_t=1, encoder_causal=True, decoder_causal=False)
    audio_vae = AutoencoderKLLTX2Audio(
        base_channels=16, output_channels=2, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=None, in_channels=2,
        resolution=32, latent_channels=4, norm_type="pixel", causality_axis="height", dropout=0.0,
        mid_block_add_attention=False, sample_rate=16000, mel_hop_length=160, is_causal=True, mel_bins=16)
    vocoder = LTX2Vocoder(in_channels=32, hidden_channels=64, out_channels=2, upsample_kernel_sizes=[8, 8, 20],
                          upsample_factors=[4, 4, 10], resnet_kernel_sizes=[3], resnet_dilations=[[1, 3, 5]],
                          leaky_relu_negative_slope=0.1, output_sampling_rate=16000)
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, shift_terminal=0.1)
    pipe = LTX2Pipeline(transformer=tr.eval(), vae=vae.eval(), audio_vae=audio_vae.eval(), scheduler=scheduler,
                        text_encoder=te.eval(), tokenizer=tok, connectors=connectors.eval(), vocoder=vocoder.eval())
    folder = tmp_path_factory.mktemp("plan_ltx2") / "model"
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def test_ltx2_prediction_matches_a_real_cpu_run(ltx2_dir):
    """Every stage within 15% of the real components run at that size, counted on real tensors, as LTX-2's
    adapter runs them: Gemma with its head over all tokens, the connectors on every layer's states stacked, the
    prompt and the negative as one batch of video and sound tokens, the decoders."""
    from diffusers import AutoencoderKLLTX2Audio, AutoencoderKLLTX2Video, LTX2VideoTransformer3DModel
    from diffusers.pipelines.ltx2 import LTX2TextConnectors
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder
    from transformers import Gemma3ForConditionalGeneration

    from videogen.plan.cards import card_from_folder
    from videogen.plan.planner import Settings, latent_shape, plan

    card = card_from_folder(ltx2_dir)
    assert card.data["guidance"] == "cfg-batched" and card.data["audio_guidance"] == 7.0
    # guidance 1 on the video: the sound's default guidance still runs the negative prompt, batched
    s = Settings(frames=FRAMES, height=HEIGHT, width=WIDTH, dtype=torch.float32, guidance=1.0, fps=FPS)
    p = plan(card, s)
    assert (p["stages"]["denoise"]["guidance_batch"], p["stages"]["denoise"]["forwards_per_step"]) == (2, 1)
    tokens = card.data["text_tokens"]["text_encoder"]
    gib = 2**30
    act = p["stages"]["text_encoder"]["activations_gib"]

    te = Gemma3ForConditionalGeneration.from_pretrained(ltx2_dir / "text_encoder").eval()
    ids = torch.zeros(1, tokens, dtype=torch.long)
    mask = torch.ones_like(ids)
    te(input_ids=ids, attention_mask=mask, output_hidden_states=True)  # a first call may build lazy caches
    te_real = real_peak(lambda: te(input_ids=ids, attention_mask=mask, output_hidden_states=True))
    assert within(act["text_encoder"] * gib, te_real), (act["text_encoder"] * gib, te_real)

    connectors = LTX2TextConnectors.from_pretrained(ltx2_dir / "connectors").eval()
    width = te.config.text_config.hidden_size * (te.config.text_config.num_hidden_layers + 1)
    con_real = real_peak(lambda: connectors(torch.randn(1, tokens, width), mask, padding_side="left"))
    assert within(act["connectors"] * gib, con_real), (act["connectors"] * gib, con_real)

    tr = LTX2VideoTransformer3DModel.from_pretrained(ltx2_dir / "transformer").eval()
    c, f, h, w = latent_shape(card, s)
    assert (c, f, h, w) == (8, 5, 8, 12)
    audio = round(FRAMES / FPS * 16000 / 160 / 4)

    def step():  # the guidance pair as one batch of video and sound tokens, as the LTX-2 adapter runs it
        x = torch.randn(1, f * h * w, c)
        out_v, _ = tr(hidden_states=torch.randn(2, f * h * w, c), audio_hidden_states=torch.randn(2, audio, 16),
                      encoder_hidden_states=torch.randn(2, tokens, 64),
                      audio_encoder_hidden_states=torch.randn(2, tokens, 64), timestep=torch.full((2,), 999.0),
                      sigma=torch.full((2,), 999.0), encoder_attention_mask=torch.ones(2, tokens, dtype=torch.long),
                      audio_encoder_attention_mask=torch.ones(2, tokens, dtype=torch.long), num_frames=f, height=h,
                      width=w, fps=float(FPS), audio_num_frames=audio, use_cross_timestep=True, return_dict=False)
        cond, uncond = out_v.float().chunk(2)
        return x + 0.01 * (uncond + 3.0 * (cond - uncond))

    step()
    dn_real = real_peak(step)
    assert within(p["stages"]["denoise"]["activations_gib"] * gib, dn_real), (
        p["stages"]["denoise"]["activations_gib"] * gib, dn_real)

    vae = AutoencoderKLLTX2Video.from_pretrained(ltx2_dir / "vae").eval()
    dec_real = real_peak(lambda: vae.decode(torch.randn(1, c, f, h, w), return_dict=False)[0])
    dec = p["stages"]["decode"]
    assert within((dec["peak_gib_untiled"] - dec["weights_gib"]) * gib, dec_real)

    audio_vae = AutoencoderKLLTX2Audio.from_pretrained(ltx2_dir / "audio_vae").eval()
    vocoder = LTX2Vocoder.from_pretrained(ltx2_dir / "vocoder").eval()
    z = torch.randn(1, 4, audio, 4)
    mel = audio_vae.decode(z, return_dict=False)[0]
    sound = p["stages"]["sound"]["activations_gib"]
    assert within(sound["audio_vae"] * gib, real_peak(lambda: audio_vae.decode(z, return_dict=False)[0]))
    assert within(sound["vocoder"] * gib, real_peak(lambda: vocoder(mel)))


def test_plan_command_on_an_ltx2_folder(ltx2_dir, capsys):
    """`videogen plan` on an LTX-2 folder: the sound decode is a stage of the table, and the guidance pair is one
    forward of a batch of two while only the sound is guided (one of one when nothing is)."""
    import dataclasses

    from cli_helpers import run_inprocess

    from videogen.plan.cards import card_from_folder
    from videogen.plan.planner import Settings, guidance_batch

    size = ("--frames", str(FRAMES), "--height", str(HEIGHT), "--width", str(WIDTH), "--dtype", "float32")
    table = run_inprocess(capsys, "plan", "-m", str(ltx2_dir), *size, "--guidance", "1")
    assert table.code == 0, table.err
    assert "1 forward(s) per step of batch 2" in table.out and "sound decode" in table.out
    card = card_from_folder(ltx2_dir)
    off = Settings(frames=FRAMES, height=HEIGHT, width=WIDTH, dtype=torch.float32, guidance=1.0, audio_guidance=1.0)
    assert guidance_batch(card, off) == 1 and guidance_batch(card, dataclasses.replace(off, audio_guidance=2.0)) == 2
