"""Mochi 1: frames equal diffusers' MochiPipeline's (with and without guidance), its schedule, and the CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from cli_helpers import run_cli
from hypothesis import given
from properties import FEW, Case, cases
from tiny import assert_refused_before_loading
from tiny_mochi import save_tiny_mochi

from videogen.engine import Engine
from videogen.families.mochi import linear_quadratic_sigmas
from videogen.spec import RenderSpec
from videogen.video import read_frames

TOL = 1e-4
PROMPT = "a red cat runs on the beach"


@pytest.fixture(scope="module")
def tiny_mochi(tmp_path_factory) -> Path:
    return save_tiny_mochi(tmp_path_factory.mktemp("models") / "tiny-mochi")


@pytest.fixture(scope="module")
def engine(tiny_mochi) -> Engine:
    return Engine.load(RenderSpec(prompt=PROMPT, model=str(tiny_mochi), device="cpu", dtype="float32"))


@pytest.fixture(scope="module")
def pipe(tiny_mochi):
    from diffusers import MochiPipeline

    p = MochiPipeline.from_pretrained(tiny_mochi)
    p.set_progress_bar_config(disable=True)
    return p


@pytest.fixture(scope="module")
def unguided(engine) -> torch.Tensor:
    return render(engine, guidance=1.0)


def render(engine: Engine, **fields) -> torch.Tensor:
    spec = RenderSpec(**{"prompt": PROMPT, "model": engine.info.source.ref, "frames": 7, "height": 16, "width": 16,
                         "steps": 3, "seed": 2, "device": "cpu", "dtype": "float32", **fields})
    return engine.render(spec).frames_float


def reference(pipe, guidance: float, negative: str | None) -> torch.Tensor:
    out = pipe(prompt=PROMPT, negative_prompt=negative, num_frames=7, height=16, width=16, num_inference_steps=3,
               guidance_scale=guidance, generator=torch.Generator("cpu").manual_seed(2), output_type="pt")
    return out.frames[0].permute(0, 2, 3, 1).float()  # [F,3,H,W] -> [F,H,W,3]


@pytest.mark.parametrize("guidance,negative", [
    (1.0, None),  # no guidance: one forward per step
    (4.5, None),  # guidance against the empty prompt, whose ids and mask are zeroed
    (4.5, "blue dog"),
])
def test_matches_pipeline(engine, pipe, unguided, guidance, negative):
    ours = render(engine, guidance=guidance, negative_prompt=negative)
    ref = reference(pipe, guidance, negative)
    assert ours.shape == ref.shape == (7, 16, 16, 3)
    assert ours.std() > 0.02  # not a constant picture, so the comparison can fail
    assert (ours - ref).abs().max().item() <= TOL
    if guidance > 1:
        assert (ours - unguided).abs().max() > 1e-4  # guidance changed the video


def test_sigma_schedule_is_genmos():
    from diffusers.pipelines.mochi.pipeline_mochi import linear_quadratic_schedule

    for steps in (2, 3, 10, 64, 101):
        assert linear_quadratic_sigmas(steps) == linear_quadratic_schedule(steps, 0.025)


def test_cli_writes_mp4(tiny_mochi, tmp_path):
    out = tmp_path / "clip.mp4"
    proc = run_cli("generate", PROMPT, "-m", str(tiny_mochi), "--frames", "7", "--height", "16",
                           "--width", "32", "--steps", "2", "--seed", "1", "--max-sequence-length", "32", "-o", str(out), "-q")
    assert proc.code == 0, proc.err
    assert proc.out.strip() == str(out)
    frames, fps = read_frames(out)
    assert frames.shape == (7, 16, 32, 3) and fps == 30  # Mochi's default fps
    record = json.loads(Path(f"{out}.json").read_text())
    assert record["family"] == "mochi" and record["guidance"] == 4.5


@pytest.mark.parametrize("flags,expected", [
    (["--frames", "9"], "--frames 9 is not 6k+1: use 7 or 13"),
    (["--steps", "1"], "Mochi needs --steps 2 or more"),
    (["--true-guidance", "3"], "--true-guidance is for guidance-distilled models"),
])
def test_cli_refuses_what_the_model_cannot_take(tiny_mochi, capsys, monkeypatch, flags, expected):
    from videogen.cli.main import main

    base = {"--frames": "7", "--height": "16", "--width": "16", "--steps": "2"}
    base.update(dict(zip(flags[::2], flags[1::2], strict=True)))
    args = [a for kv in base.items() for a in kv]
    monkeypatch.setattr(sys, "argv", ["videogen", "generate", PROMPT, "-m", str(tiny_mochi), *args, "-q"])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 2
    assert expected in capsys.readouterr().err


@pytest.fixture(scope="module")
def scaled_mochi(tmp_path_factory) -> Path:
    return save_tiny_mochi(tmp_path_factory.mktemp("models") / "tiny-mochi-scaled", scaling_factor=0.7)


@pytest.fixture(scope="module")
def scaled(scaled_mochi):
    from diffusers import MochiPipeline

    pipe = MochiPipeline.from_pretrained(scaled_mochi)
    pipe.set_progress_bar_config(disable=True)
    return Engine.load(RenderSpec(prompt=PROMPT, model=str(scaled_mochi), device="cpu", dtype="float32")), pipe


@given(case=cases(frames=[1, 7, 13], sizes=[16, 32], steps=(2, 3)))
@FEW
def test_parity_property(scaled, case: Case):
    """Any prompt, negative prompt, frames, size, steps, guidance and seed: MochiPipeline's frames, on a VAE whose
    scaling factor is not 1 (MochiPipeline divides by it after the per-channel statistics)."""
    engine, pipe = scaled
    spec = case.spec(engine.info.source.ref, device="cpu", dtype="float32")
    ours = engine.render(spec).frames_float
    ref = pipe(prompt=case.prompt, negative_prompt=case.negative, num_frames=case.frames, height=case.height,
               width=case.width, num_inference_steps=case.steps, guidance_scale=case.guidance,
               generator=torch.Generator("cpu").manual_seed(case.seed), output_type="pt").frames[0]
    ref = ref.permute(0, 2, 3, 1).float()
    assert ours.shape == ref.shape == (case.frames, case.height, case.width, 3)
    assert (ours - ref).abs().max().item() <= TOL, f"{case}: max diff {(ours - ref).abs().max().item() * 255:.1f}/255"


@pytest.mark.parametrize("flags,expected", [
    (["--guidance-2", "3"], "--guidance-2 is for two-expert models (Wan 2.2 A14B); this mochi model does not take it"),
    (["--scheduler", "unipc"], "Mochi samples with its own scheduler only (--scheduler euler), not --scheduler unipc"),
    (["--steps", "1"], "Mochi needs --steps 2 or more"),
])
def test_refused_before_loading(tiny_mochi, tmp_path, flags, expected):
    """Fields Mochi does not take are refused from its configs alone: the folder here has no weights at all."""
    assert_refused_before_loading(tiny_mochi, tmp_path, ["--frames", "7", "--height", "16", "--width", "16"], flags, expected)


def test_diffusers_format_lora_matches_diffusers_loader(tiny_mochi, engine, pipe, tmp_path):
    """A LoRA in diffusers' PEFT names on every attention and feed-forward layer (the prompt stream's too), at
    weight 0.7: videogen's merge against MochiPipeline's own `load_lora_weights` + `set_adapters`."""
    from tiny_lora import model_shapes, random_lora, write_diffusers

    layers = [k.removesuffix(".weight") for k, v in model_shapes(tiny_mochi).items()
              if len(v) == 2 and k.startswith("transformer_blocks.") and ".norm" not in k]
    path = write_diffusers(random_lora(tiny_mochi, seed=3, modules=layers), tmp_path / "lora.safetensors")
    ours = render(engine, guidance=4.0, loras=(f"{path}:0.7",))
    pipe.load_lora_weights(str(path), adapter_name="a")
    pipe.set_adapters(["a"], [0.7])
    try:
        ref = reference(pipe, 4.0, None)
    finally:
        pipe.unload_lora_weights()
    assert float((ours - render(engine, guidance=4.0)).abs().max()) > 0.01  # the LoRA changes the frames
    assert float((ours - ref).abs().max()) <= TOL
