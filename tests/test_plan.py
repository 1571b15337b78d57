"""`videogen plan`: predicted memory per stage and offload mode, checked against real runs of the same components."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_helpers import run_cli
from tiny import save_components, word_tokenizer

FRAMES, HEIGHT, WIDTH = 17, 64, 96


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A small Wan-shaped model, big enough that activations dominate the allocator's rounding."""
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(0)
    tok = word_tokenizer(max_length=256)
    te = UMT5EncoderModel(UMT5Config(vocab_size=len(tok), d_model=128, d_kv=32, d_ff=256, num_layers=3, num_heads=4,
                                     relative_attention_num_buckets=8, relative_attention_max_distance=16))
    tr = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=4, attention_head_dim=16, in_channels=16,
                               out_channels=16, text_dim=128, freq_dim=256, ffn_dim=256, num_layers=3,
                               cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=64)
    vae = AutoencoderKLWan(base_dim=8, z_dim=16, dim_mult=[1, 2, 2, 2], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    sched = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    parts = {"text_encoder": te.eval(), "transformer": tr.eval(), "vae": vae.eval(), "scheduler": sched,
             "tokenizer": tok}
    return save_components(tmp_path_factory.mktemp("plan") / "model", "WanPipeline", parts,
                           boundary_ratio=None, expand_timesteps=False)


def real_peak(fn) -> int:
    """Peak bytes of the storages `fn` allocates on real CPU tensors (the counter's real-tensor twin)."""
    from videogen.plan.trace import peak_bytes

    return peak_bytes(fn)


def within(predicted: float, measured: float, tol: float = 0.15) -> bool:
    return abs(predicted - measured) <= tol * measured


def test_prediction_matches_a_real_cpu_run(model_dir):
    """Each stage's prediction (two traced blocks, fake tensors, frames extrapolated) within 15% of a real run
    of the full components at the same size, counted on real tensors."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import UMT5EncoderModel

    from videogen.plan.cards import card_from_folder
    from videogen.plan.planner import Settings, plan

    card = card_from_folder(model_dir)
    s = Settings(frames=FRAMES, height=HEIGHT, width=WIDTH, dtype=torch.float32, guidance=5.0, batch_cfg=True)
    p = plan(card, s)
    tokens = card.data["text_tokens"]["text_encoder"]

    te = UMT5EncoderModel.from_pretrained(model_dir / "text_encoder").eval()
    tr = WanTransformer3DModel.from_pretrained(model_dir / "transformer").eval()
    vae = AutoencoderKLWan.from_pretrained(model_dir / "vae").eval()
    gib = 2**30

    ids = torch.zeros(1, tokens, dtype=torch.long)
    te(input_ids=ids)  # a first call may build lazy caches: measure a steady one
    te_real = real_peak(lambda: te(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state)
    assert within(p["stages"]["text_encoder"]["activations_gib"]["text_encoder"] * gib, te_real)

    f, h, w = (FRAMES - 1) // 4 + 1, HEIGHT // 8, WIDTH // 8

    def step():  # a guided step as one batch of two, the way --batch-cfg runs it
        x = torch.randn(1, 16, f, h, w)
        out = tr(hidden_states=torch.randn(2, 16, f, h, w), timestep=torch.tensor([999.0, 999.0]),
                 encoder_hidden_states=torch.randn(2, tokens, 128), return_dict=False)[0]
        cond, uncond = out.chunk(2)
        return x + 0.01 * (uncond + 5.0 * (cond - uncond))

    assert within(p["stages"]["denoise"]["activations_gib"] * gib, real_peak(step))
    dec_real = real_peak(lambda: vae.decode(torch.randn(1, 16, f, h, w), return_dict=False)[0])
    dec = p["stages"]["decode"]
    assert within((dec["peak_gib_untiled"] - dec["weights_gib"]) * gib, dec_real, tol=0.15)

    weights = sum(p.numel() * p.element_size() for m in (te, tr, vae) for p in m.parameters())
    predicted_weights = sum(st["weights_gib"] for st in p["stages"].values()) * gib
    assert within(predicted_weights, weights, tol=0.01)


def test_tiled_decode_prediction_matches_a_real_run(model_dir):
    """The tiled decode is traced on a smaller canvas and extrapolated: within 15% of the real tiled decode."""
    from diffusers import AutoencoderKLWan

    from videogen.plan.cards import card_from_folder
    from videogen.plan.planner import Settings, trace_decode

    card = card_from_folder(model_dir)
    s = Settings(frames=5, height=384, width=576, dtype=torch.float32)  # 2x3 tiles, extrapolated from 1x2, 1x3
    predicted = trace_decode(card, card.component("vae"), s, tiled=True)
    vae = AutoencoderKLWan.from_pretrained(model_dir / "vae").eval()
    vae.enable_tiling()
    real = real_peak(lambda: vae.decode(torch.randn(1, 16, 2, 48, 72), return_dict=False)[0])
    assert within(predicted, real)


def test_plan_json_shape_for_a_local_folder(model_dir):
    r = run_cli("plan", "-m", str(model_dir), "--frames", str(FRAMES), "--height", str(HEIGHT), "--width",
                str(WIDTH), "--gpu-memory", "1GiB", "--json")
    assert r.code == 0, r.err
    assert r.err == ""
    p = json.loads(r.out)
    assert set(p["stages"]) == {"text_encoder", "denoise", "decode"}
    for stage in p["stages"].values():
        assert stage["peak_gib"] >= stage["weights_gib"] > 0
    assert set(p["offload"]) == {"none", "model", "group", "sequential"}
    for row in p["offload"].values():
        assert row["gpu_peak_gib"] > 0 and row["cpu_ram_gib"] > 0
    # offloading never needs more GPU memory than keeping everything on it
    peaks = [p["offload"][m]["gpu_peak_gib"] for m in ("none", "model", "sequential")]
    assert peaks == sorted(peaks, reverse=True)
    assert p["recommended"] == {"offload": "none", "vae_tiling": False, "fits": True}
    assert p["settings"]["frames"] == FRAMES and p["settings"]["gpu_memory_gib"] == 1.0


def test_plan_of_a_preset_uses_its_card_at_full_size():
    """Full-size Wan 1.3B components (from the card) traced at a small size: the weights are the card's."""
    r = run_cli("plan", "-p", "wan2.1-t2v-1.3b", "--frames", "5", "--height", "64", "--width", "64",
                "--gpu-memory", "8GiB", "--json")
    assert r.code == 0, r.err
    p = json.loads(r.out)
    card = json.loads((Path(__file__).parent.parent / "videogen/presets/cards/wan2.1-t2v-1.3b.json").read_text())
    tr = card["components"]["transformer"]["weights"]["parameters"]
    assert p["stages"]["denoise"]["weights_gib"] == pytest.approx(tr * 2 / 2**30, abs=0.001)  # bfloat16
    assert p["model"] == "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
    # the text encoder (10.6 GiB in bf16) does not fit 8 GiB next to the rest: no "none"
    assert p["offload"]["none"]["fits"] is False
    assert p["recommended"]["offload"] != "none"
    text = run_cli("plan", "-p", "wan2.1-t2v-1.3b", "--frames", "5", "--height", "64", "--width", "64")
    assert text.code == 0 and text.err == ""
    assert "recommended: --offload" in text.out and "two blocks" in text.out


@pytest.mark.parametrize("value", ["lots", "-3GiB", "0"])
def test_bad_gpu_memory_is_one_line(value):
    r = run_cli("plan", "-p", "wan2.1-t2v-1.3b", "--gpu-memory", value)
    assert r.code == 2
    assert r.err.count("\n") == 1 and "--gpu-memory" in r.err and "Traceback" not in r.err


def test_plan_of_a_model_without_card_or_folder_is_refused():
    r = run_cli("plan", "-m", "someone/unknown-model")
    assert r.code == 2 and "no model card" in r.err and r.err.count("\n") == 1


def synthetic(peaks: dict[str, tuple[float, float]]) -> dict:
    return {"settings": {"vae_tiling": False},
            "offload": {m: {"gpu_peak_gib_untiled": u, "gpu_peak_gib_tiled": t} for m, (u, t) in peaks.items()}}


def test_choose_offload_takes_the_fastest_mode_that_fits():
    from videogen.plan.auto import choose_offload

    plan = synthetic({"none": (30, 25), "model": (20, 12), "group": (10, 4), "sequential": (9, 3)})
    gib = 2**30
    assert choose_offload(plan, 80 * gib) == ("none", False)
    assert choose_offload(plan, 29 * gib) == ("none", True)  # tiling only because untiled does not fit
    assert choose_offload(plan, 24 * gib) == ("model", False)
    assert choose_offload(plan, 14 * gib) == ("model", True)
    assert choose_offload(plan, 6 * gib) == ("group", True)
    assert choose_offload(plan, 2 * gib) == ("sequential", True)  # nothing fits: the smallest peak
    # the margin: a peak exactly equal to the free memory does not fit
    assert choose_offload(plan, 30 * gib) == ("none", True)


def test_choose_offload_keeps_a_tiling_the_user_chose():
    from videogen.plan.auto import choose_offload

    plan = synthetic({"none": (30, 25), "model": (20, 12), "group": (10, 4), "sequential": (9, 3)})
    gib = 2**30
    assert choose_offload(plan, 29 * gib, tiling=False) == ("model", False)  # --no-vae-tiling: no tiled "none"
    assert choose_offload(plan, 80 * gib, tiling=True) == ("none", True)  # --vae-tiling on a big card
    assert choose_offload(plan, 2 * gib, tiling=False) == ("sequential", False)


@pytest.fixture(scope="module")
def ltx_dir(tmp_path_factory) -> Path:
    """A small LTX-Video-shaped model: a second family for the CPU check (patchified VAE, token-layout latents)."""
    from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXVideoTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    tok = word_tokenizer(max_length=128)
    te = T5EncoderModel(T5Config(vocab_size=len(tok), d_model=128, d_kv=32, d_ff=256, num_layers=3, num_heads=4,
                                 relative_attention_num_buckets=8, relative_attention_max_distance=16))
    tr = LTXVideoTransformer3DModel(in_channels=8, out_channels=8, patch_size=1, patch_size_t=1,
                                    num_attention_heads=4, attention_head_dim=16, cross_attention_dim=64,
                                    num_layers=3, caption_channels=128)
    vae = AutoencoderKLLTXVideo(
        latent_channels=8, block_out_channels=(32, 32, 32, 32), decoder_block_out_channels=(32, 32, 32, 32),
        layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, False, False), decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_inject_noise=(False, False, False, False, False), upsample_residual=(False, False, False, False),
        upsample_factor=(1, 1, 1, 1), timestep_conditioning=True, patch_size=1, patch_size_t=1,
        encoder_causal=True, decoder_causal=False)
    parts = {"text_encoder": te.eval(), "transformer": tr.eval(), "vae": vae.eval(),
             "scheduler": FlowMatchEulerDiscreteScheduler(), "tokenizer": tok}
    return save_components(tmp_path_factory.mktemp("plan_ltx") / "model", "LTXPipeline", parts)


def test_ltx_prediction_matches_a_real_cpu_run(ltx_dir):
    """The same check for a second family: LTX-Video's text encoder, one guided step on its token-layout latents
    and its timestep-conditioned decode, each within 15% of the real components run at that size."""
    from diffusers import AutoencoderKLLTXVideo, LTXVideoTransformer3DModel
    from transformers import T5EncoderModel

    from videogen.plan.cards import card_from_folder
    from videogen.plan.planner import Settings, latent_shape, plan

    card = card_from_folder(ltx_dir)
    s = Settings(frames=FRAMES, height=HEIGHT, width=WIDTH, dtype=torch.float32, guidance=3.0, batch_cfg=True,
                 fps=24)
    p = plan(card, s)
    tokens = card.data["text_tokens"]["text_encoder"]
    te = T5EncoderModel.from_pretrained(ltx_dir / "text_encoder").eval()
    tr = LTXVideoTransformer3DModel.from_pretrained(ltx_dir / "transformer").eval()
    vae = AutoencoderKLLTXVideo.from_pretrained(ltx_dir / "vae").eval()
    gib = 2**30

    ids = torch.zeros(1, tokens, dtype=torch.long)
    te(input_ids=ids)
    te_real = real_peak(lambda: te(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state)
    assert within(p["stages"]["text_encoder"]["activations_gib"]["text_encoder"] * gib, te_real)

    c, f, h, w = latent_shape(card, s)
    assert (c, f, h, w) == (8, 5, 16, 24)

    def step():  # one guided step on packed tokens, as the LTX adapter calls the transformer
        x = torch.randn(1, f * h * w, c)
        out = tr(hidden_states=torch.randn(2, f * h * w, c), encoder_hidden_states=torch.randn(2, tokens, 128),
                 timestep=torch.tensor([999.0, 999.0]), encoder_attention_mask=torch.ones(2, tokens, dtype=torch.long),
                 num_frames=f, height=h, width=w, rope_interpolation_scale=(8 / 24, 4, 4), return_dict=False)[0]
        cond, uncond = out.float().chunk(2)
        return x + 0.01 * (uncond + 3.0 * (cond - uncond))

    assert within(p["stages"]["denoise"]["activations_gib"] * gib, real_peak(step))
    temb = torch.tensor([0.05])
    dec_real = real_peak(lambda: vae.decode(torch.randn(1, c, f, h, w), temb, return_dict=False)[0])
    dec = p["stages"]["decode"]
    assert within((dec["peak_gib_untiled"] - dec["weights_gib"]) * gib, dec_real)


def test_auto_offload_on_a_gpu_takes_the_fastest_mode_that_fits(model_dir, monkeypatch):
    """The CUDA path of --offload auto without a GPU: free memory is what torch.cuda.mem_get_info reports; the
    mode and tiling chosen are the plan's fastest that fit, and the user's own --vae-tiling is kept."""
    from videogen.engine import inspect_model
    from videogen.plan import auto
    from videogen.spec import RenderSpec

    info = inspect_model(str(model_dir))
    spec = RenderSpec(prompt="a", model=str(model_dir), frames=FRAMES, height=HEIGHT, width=WIDTH, guidance=5.0,
                      batch_cfg=True, extras={"where": {}})
    free = {"bytes": 80 * 2**30}
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free["bytes"], 80 * 2**30))
    cuda = torch.device("cuda")
    resolved, memory = auto.resolve(spec, info, cuda, torch.float32)
    assert (resolved.offload, resolved.vae_tiling) == ("none", False) and memory.planning
    plan = next(iter(memory.plans.values()))
    rows = plan["offload"]
    # just below what "none" needs untiled, but above its tiled peak: tiling, not offloading
    need = {m: {t: rows[m][f"gpu_peak_gib_{t}"] * 2**30 * (1 + auto.MARGIN) + auto.RESERVE_BYTES
                for t in ("untiled", "tiled")} for m in rows}
    assert need["none"]["tiled"] < need["none"]["untiled"]
    free["bytes"] = int(need["none"]["untiled"]) - 1
    resolved, memory = auto.resolve(spec, info, cuda, torch.float32)
    assert (resolved.offload, resolved.vae_tiling) == ("none", True)
    # the user said --no-vae-tiling: the next mode that fits untiled
    said = spec.replace(extras={"where": {"vae_tiling": "--vae-tiling"}})
    resolved, memory = auto.resolve(said, info, cuda, torch.float32)
    assert resolved.vae_tiling is False and resolved.offload == auto.choose_offload(plan, free["bytes"], False)[0]
    assert resolved.offload != "none"
    # an explicit mode is never replaced
    resolved, memory = auto.resolve(spec.replace(offload="group", extras={"where": {"offload": "--offload"}}), info,
                                    cuda, torch.float32)
    assert resolved.offload == "group" and memory.chosen_by == "--offload"


def test_offload_auto_on_cpu_renders_and_records_the_choice_and_prediction(tmp_path):
    """The user's path: `--offload auto` on a CPU renders without offload, says so on stderr, and the record holds
    the choice, the prediction of each stage for the render's settings, and why nothing was measured."""
    from videogen.loading import builtin_model_path
    from videogen.plan.auto import NOT_ON_CPU
    from videogen.plan.cards import card_from_folder
    from videogen.plan.planner import Settings, plan

    out = tmp_path / "a.mp4"
    r = run_cli("generate", "a red circle", "--seed", "1", "--steps", "2", "--offload", "auto",
                "-o", str(out), "--json", "-q", cwd=tmp_path)
    assert r.code == 0, r.err
    assert "--offload auto: --offload none" in r.err
    record = json.loads(r.out)
    memory = record["memory"]
    assert (memory["offload"], memory["vae_tiling"]) == ("none", False)
    assert memory["chosen_by"].startswith("auto") and record["spec"]["offload"] == "none"
    assert memory["measured_gpu_gib"] == NOT_ON_CPU
    spec = record["spec"]
    expected = plan(card_from_folder(builtin_model_path()),
                    Settings(frames=spec["frames"], height=spec["height"], width=spec["width"], dtype=torch.float32,
                             guidance=spec["guidance"], batch_cfg=bool(spec["batch_cfg"]), fps=spec["fps"]))
    stages = expected["offload"]["none"]["stages_gib"]["untiled"]
    predicted = memory["predicted_gpu_gib"]
    assert {k: predicted[k] for k in stages} == stages and predicted["peak"] == max(stages.values())
    assert json.loads(out.with_name("a.mp4.json").read_text())["memory"] == memory  # the record on disk too
