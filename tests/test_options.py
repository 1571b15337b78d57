"""Engine options on tiny Wan models: what must not change the frames does not, and each step cache reports
its drift against the uncached render. GPU-only options are refused in one line on a CPU."""

from __future__ import annotations

import math

import pytest
import torch
from cli_helpers import run_cli, run_here, run_inprocess
from tiny import without_weights

from videogen import options
from videogen.engine import Engine
from videogen.options import psnr
from videogen.spec import RenderSpec

TOL = 1e-4  # on the 0..1 scale, as the parity tests


def base_spec(model, **kw) -> RenderSpec:
    fields = dict(prompt="a red cat runs on the beach", model=str(model), frames=1, height=16, width=16,
                  steps=6, seed=3, guidance=5.0, device="cpu")
    return RenderSpec(**(fields | kw))


@pytest.fixture(scope="module")
def reference(tiny_wan) -> torch.Tensor:
    frames = Engine.load(base_spec(tiny_wan)).render(base_spec(tiny_wan)).frames_float
    assert frames.std() > 0.01  # not a constant picture, so the comparisons below can fail
    return frames


@pytest.mark.parametrize("changes", [{"batch_cfg": True}, {"attention": "sdpa"}, {"attention": "_native_math"}],
                         ids=["batch-cfg", "sdpa", "math-attention"])
def test_options_that_keep_the_frames(tiny_wan, reference, changes):
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry

    before = _AttentionBackendRegistry._active_backend
    spec = base_spec(tiny_wan, **changes)
    result = Engine.load(spec).render(spec)
    assert _AttentionBackendRegistry._active_backend == before  # other engines in the process keep their default
    assert (result.frames_float - reference).abs().max() <= TOL
    assert result.record["spec"] | changes == result.record["spec"]


@pytest.mark.parametrize("mode", ["model", "sequential", "group"])
def test_offload_hooks_keep_the_frames(tiny_wan, reference, mode):
    """The offload hooks, with the CPU standing in for the GPU (the CLI refuses offload without CUDA): weights
    are moved by diffusers' group-offloading hooks or by ours, inputs follow, and the frames do not change."""
    engine = Engine.load(base_spec(tiny_wan))
    options.offload(engine.model.modules(), mode, torch.device("cpu"))
    from diffusers.hooks import HookRegistry

    hooks = HookRegistry.check_if_exists_or_initialize(engine.model.transformer).hooks
    assert hooks, "no offload hook was registered"
    frames = engine.render(base_spec(tiny_wan)).frames_float
    assert (frames - reference).abs().max() <= TOL


def test_compile_keeps_the_frames(tiny_wan, reference, monkeypatch):
    # Inductor's first compile takes most of a minute on two CPU cores; the "eager" backend still captures every
    # block's graph with dynamo (what can break), without generating code. The benchmark runs inductor.
    monkeypatch.setattr(options, "COMPILE_BACKEND", "eager")
    spec = base_spec(tiny_wan, compile=True)
    engine = Engine.load(spec)
    blocks = engine.model.transformer.blocks
    assert all(b._compiled_call_impl is not None for b in blocks)
    result = engine.render(spec)
    assert (result.frames_float - reference).abs().max() <= TOL
    assert result.record["engine_options"]["compile"].startswith("eager")


def test_vae_tiling(tiny_wan):
    """Tiles larger than the video change nothing; real tiles blend overlaps, so they drift a little (diffusers'
    tiled decode is not exact) but stay close."""
    spec = base_spec(tiny_wan, height=32, width=32, steps=2)
    plain = Engine.load(spec).render(spec).frames_float
    tiled_spec = spec.replace(vae_tiling=True)
    engine = Engine.load(tiled_spec)
    vae = engine.model.vae
    assert vae.use_tiling and engine.render(tiled_spec).record["engine_options"]["vae_tiling"] is True
    assert (engine.render(tiled_spec).frames_float - plain).abs().max() <= TOL  # default 256 px tiles: one tile
    vae.enable_tiling(tile_sample_min_height=24, tile_sample_min_width=24, tile_sample_stride_height=16,
                      tile_sample_stride_width=16)
    tiled = engine.render(tiled_spec).frames_float
    assert (tiled - plain).abs().max() > 0  # four tiles really were decoded
    assert psnr(tiled, plain) > 25


@pytest.mark.parametrize("cache,threshold", [("fbc", 1.0), ("mag", None), ("taylorseer", None), ("pab", None)])
def test_each_cache_records_its_drift(tiny_wan, reference, cache, threshold):
    # fbc's default threshold never skips on a random tiny model, whose blocks change a lot from step to step
    spec = base_spec(tiny_wan, cache=cache, cache_threshold=threshold, cache_drift=True)
    engine = Engine.load(spec)
    result = engine.render(spec)
    entry = result.record["engine_options"]["cache"]
    assert entry["mode"] == cache
    drift = entry["drift_psnr_db"]
    assert isinstance(drift, float) and math.isfinite(drift)  # the cache skipped work: frames changed a little
    assert drift > 30
    assert drift == pytest.approx(psnr(result.frames_float, reference), abs=1e-3)  # measured against uncached
    # The next render starts from fresh cache state (same frames), and without --cache-drift renders once.
    again = engine.render(spec.replace(cache_drift=False))
    assert torch.equal(again.frames_float, result.frames_float)
    assert again.record["engine_options"]["cache"]["drift_psnr_db"] is None
    assert "uncached_reference" not in again.record["timings"]


def test_fp8_weights(tiny_wan, reference):
    spec = base_spec(tiny_wan, quantize="fp8")
    engine = Engine.load(spec)
    linear = engine.model.transformer.blocks[0].ffn.net[0].proj
    assert linear.weight.dtype == torch.float8_e4m3fn
    frames = engine.render(spec).frames_float
    assert 30 < psnr(frames, reference) < math.inf


@pytest.mark.parametrize("flags,words", [
    (["--attention", "flash"], "not installed"),
    (["--attention", "fastest"], "unknown --attention"),
    (["--offload", "group"], "CUDA"),
    (["--offload", "model"], "CUDA"),
    (["--cache", "taylorseer", "--cache-threshold", "0.1"], "--cache-threshold applies to"),
    (["--cache-drift"], "add --cache"),
])
def test_refused_options_are_one_line_exit_2(tiny_wan, tmp_path, capsys, flags, words):
    if "--offload" in flags and torch.cuda.is_available():
        flags = [*flags, "--device", "cpu"]
    out = tmp_path / "x.mp4"
    run = run_inprocess(capsys, "generate", "a cat", "-m", str(tiny_wan), "--frames", "5", "--height", "16",
                        "--width", "16", "--steps", "1", "-o", str(out), "-q", *flags)
    assert run.code == 2, run.err
    assert words in run.err and len(run.err.strip().splitlines()) == 1, run.err
    assert not out.exists()


def test_negative_prompt_is_encoded_once_per_engine(tiny_wan):
    """Work that does not change between renders is done once: the negative prompt's embedding is reused."""
    spec = base_spec(tiny_wan, steps=1, negative_prompt="gray")
    engine = Engine.load(spec)
    calls = []
    engine.model.text_encoder.register_forward_hook(lambda _m, args, _out: calls.append(args))
    engine.render(spec)
    engine.render(spec.replace(prompt="a blue dog moving left", seed=4))
    assert len(calls) == 3  # prompt, negative prompt, second prompt
    engine.render(spec.replace(negative_prompt="black"))
    assert len(calls) == 5  # a new negative prompt is encoded again


def test_first_block_cache_on_a_one_block_model_is_refused_before_loading(tiny_wan, tmp_path):
    """FirstBlockCache needs blocks after the first; a one-block model is refused from its config (this copy has
    no weights, so a refusal after loading could not happen), where it once crashed with IndexError."""
    bare = without_weights(tiny_wan, tmp_path / "one-block", num_layers=1)
    args = ["generate", "a cat", "-m", str(bare), "--frames", "5", "--height", "16", "--width", "16", "-q",
            "-o", str(tmp_path / "x.mp4")]
    refused = run_cli(*args, "--cache", "fbc")
    assert refused.code == 2, refused.err
    assert "--cache fbc" in refused.err and "has 1 block" in refused.err and "Traceback" not in refused.err
    other = run_here(*args, "--cache", "taylorseer")  # other caches go on to loading (and fail there)
    assert other.code == 2 and "its weight files lack" in other.err and "--cache" not in other.err, other.err
