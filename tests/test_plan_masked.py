"""`videogen plan` for denoisers that gather their valid text tokens with masks, which the meta device cannot
evaluate: HunyuanVideo 1.5 (boolean indexing, a full attention mask) and Mochi (`torch.nonzero`). Each denoise
step's prediction against a real CPU run of the same transformer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_helpers import run_cli
from test_plan import real_peak, within

FRAMES, HEIGHT, WIDTH = 17, 128, 192


@pytest.fixture(scope="module")
def hunyuan15_dir(tmp_path_factory) -> Path:
    """The tiny HunyuanVideo 1.5 with a transformer wide enough that its activations are what the counter sees."""
    from diffusers import HunyuanVideo15Pipeline, HunyuanVideo15Transformer3DModel
    from tiny_hunyuan15 import CHANNELS, TARGET_SIZE, tiny_hunyuan15_components

    parts = tiny_hunyuan15_components()
    torch.manual_seed(0)
    parts["transformer"] = HunyuanVideo15Transformer3DModel(
        in_channels=2 * CHANNELS + 1, out_channels=CHANNELS, num_attention_heads=4, attention_head_dim=16,
        num_layers=3, num_refiner_layers=1, mlp_ratio=4.0, text_embed_dim=16, text_embed_2_dim=32,
        image_embed_dim=12, rope_axes_dim=(4, 6, 6), target_size=TARGET_SIZE).eval()
    folder = tmp_path_factory.mktemp("plan-hy15") / "model"
    HunyuanVideo15Pipeline(**parts).save_pretrained(folder, safe_serialization=True)
    return folder


def test_hunyuan15_denoise_prediction_matches_a_real_cpu_run(hunyuan15_dir):
    """Two blocks traced on the meta device, the masks' values followed through the token gathering: the step's
    activations within 15% of the full transformer run on real tensors with the same inputs."""
    from diffusers import HunyuanVideo15Transformer3DModel

    from videogen.families.hunyuan15 import GLYPH_TOKENS, IMAGE_TOKENS
    from videogen.plan.cards import card_from_folder
    from videogen.plan.planner import Settings, plan

    card = card_from_folder(hunyuan15_dir)
    p = plan(card, Settings(frames=FRAMES, height=HEIGHT, width=WIDTH, dtype=torch.float32, guidance=6.0,
                            batch_cfg=True))
    tr = HunyuanVideo15Transformer3DModel.from_pretrained(hunyuan15_dir / "transformer").eval()
    cfg, tokens = tr.config, max(card.data["text_tokens"].values())
    f, h, w = (FRAMES - 1) // 4 + 1, HEIGHT // 16, WIDTH // 16

    def step():  # the guided step as one batch of two
        x = torch.randn(1, cfg.out_channels, f, h, w)
        ones = lambda n: torch.ones(2, n, dtype=torch.long)  # noqa: E731
        out = tr(hidden_states=torch.randn(2, cfg.in_channels, f, h, w), timestep=torch.tensor([999.0, 999.0]),
                 encoder_hidden_states=torch.randn(2, tokens, cfg.text_embed_dim), encoder_attention_mask=ones(tokens),
                 encoder_hidden_states_2=torch.randn(2, GLYPH_TOKENS, cfg.text_embed_2_dim),
                 encoder_attention_mask_2=ones(GLYPH_TOKENS),
                 image_embeds=torch.randn(2, IMAGE_TOKENS, cfg.image_embed_dim), return_dict=False)[0]
        cond, uncond = out.chunk(2)
        return x + 0.01 * (uncond + 6.0 * (cond - uncond))

    with torch.no_grad():
        step()  # a first call may build lazy caches: measure a steady one
        real = real_peak(step)
    assert within(p["stages"]["denoise"]["activations_gib"] * 2**30, real)


def test_plan_of_a_hunyuan15_preset_at_full_size():
    """The user's path: `videogen plan` of a HunyuanVideo 1.5 preset answers with every stage, weights from the card."""
    r = run_cli("plan", "-p", "hunyuanvideo1.5-480p-t2v", "--frames", "9", "--height", "256", "--width", "256",
                "--json")
    assert r.code == 0, r.err
    p = json.loads(r.out)
    assert set(p["stages"]) == {"text_encoder", "denoise", "decode"}
    card = json.loads((Path(__file__).parent.parent / "videogen/presets/cards/hunyuanvideo1.5-480p-t2v.json").read_text())
    params = card["components"]["transformer"]["weights"]["parameters"]
    assert p["stages"]["denoise"]["weights_gib"] == pytest.approx(params * 2 / 2**30, abs=0.001)  # bfloat16
    assert p["stages"]["denoise"]["activations_gib"] > 0
    for stage in p["stages"].values():  # Qwen, ByT5: a stage of two encoders peaks above both their weights
        assert stage["peak_gib"] > stage["weights_gib"] > 0


@pytest.fixture(scope="module")
def mochi_dir(tmp_path_factory) -> Path:
    from diffusers import MochiPipeline, MochiTransformer3DModel
    from tiny_mochi import tiny_mochi_components

    parts = tiny_mochi_components()
    torch.manual_seed(0)
    parts["transformer"] = MochiTransformer3DModel(
        patch_size=2, num_attention_heads=4, attention_head_dim=16, num_layers=3, pooled_projection_dim=16,
        in_channels=12, out_channels=None, qk_norm="rms_norm", text_embed_dim=32, time_embed_dim=4,
        activation_fn="swiglu", max_sequence_length=256).eval()
    folder = tmp_path_factory.mktemp("plan-mochi") / "model"
    MochiPipeline(**parts).save_pretrained(folder, safe_serialization=True)
    return folder


def test_mochi_denoise_prediction_matches_a_real_cpu_run(mochi_dir):
    """Mochi traces on fake tensors (autocast refuses meta) and picks its valid prompt tokens with torch.nonzero:
    within 15% of the real step."""
    from diffusers import MochiTransformer3DModel

    from videogen.plan.cards import card_from_folder
    from videogen.plan.planner import Settings, plan

    frames = 19  # Mochi's VAE: 6x in time, 8x in space
    card = card_from_folder(mochi_dir)
    p = plan(card, Settings(frames=frames, height=HEIGHT, width=WIDTH, dtype=torch.float32, guidance=4.5,
                            batch_cfg=True))
    tr = MochiTransformer3DModel.from_pretrained(mochi_dir / "transformer").eval()
    tokens, c = max(card.data["text_tokens"].values()), tr.config.in_channels
    f, h, w = (frames - 1) // 6 + 1, HEIGHT // 8, WIDTH // 8

    def step():
        x = torch.randn(1, c, f, h, w)
        out = tr(hidden_states=torch.randn(2, c, f, h, w), timestep=torch.tensor([999.0, 999.0]),
                 encoder_hidden_states=torch.randn(2, tokens, tr.config.text_embed_dim),
                 encoder_attention_mask=torch.ones(2, tokens, dtype=torch.bool), return_dict=False)[0]
        cond, uncond = out.chunk(2)
        return x + 0.01 * (uncond + 4.5 * (cond - uncond))

    with torch.no_grad():
        step()
        real = real_peak(step)
    assert within(p["stages"]["denoise"]["activations_gib"] * 2**30, real)


def test_plan_of_the_mochi_preset_answers():
    r = run_cli("plan", "-p", "mochi-1-preview", "--frames", "13", "--height", "128", "--width", "128", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["stages"]["denoise"]["activations_gib"] > 0
